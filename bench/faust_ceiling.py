"""Faust's own ceiling: drain a backlog with an agent that does nothing but count.

Every message a Faust stream delivers costs a few event-loop turns (a queue, ``wait_first``,
sensors), whatever the agent does with it. This measures that cost on this machine so the
worker's single-request numbers can be read against it. Run by ``bench/throughput.py``; alone:

    .venv/bin/python bench/faust_ceiling.py --bootstrap 127.0.0.1:9092 --messages 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

VALUE = b'{"request_id":"x","features":{"sepal_length":5.1,"sepal_width":3.5}}'


async def fill(bootstrap: str, topic: str, messages: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for index in range(messages):
            await producer.send(topic, key=str(index).encode(), value=VALUE)
        await producer.flush()
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--linger", type=float, default=0.005)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    topic = f"ceiling-{tag}"
    asyncio.run(fill(args.bootstrap, topic, args.messages))
    app = faust.App(
        f"ceiling-{tag}",
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        topic_partitions=4,
        consumer_auto_offset_reset="earliest",
        datadir=tempfile.mkdtemp(prefix="faust-ceiling-"),
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    state: dict[str, Any] = {"count": 0, "batches": 0, "started": None}

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for events in stream.take_events(args.batch_size, within=args.linger):
            state["started"] = state["started"] or time.perf_counter()
            state["count"] += len(events)
            state["batches"] += 1
            if state["count"] >= args.messages:
                seconds = time.perf_counter() - state["started"]
                result = {
                    "messages_per_s": state["count"] / seconds,
                    "mean_batch": state["count"] / state["batches"],
                }
                os.write(1, f"RESULT {json.dumps(result)}\n".encode())  # Faust redirects print
                os._exit(0)  # a measurement, not a service: skip Faust's shutdown

    faust.Worker(app, loglevel="error", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
