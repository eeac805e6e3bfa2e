"""The floor under irisflow's idle latency: a bare request-reply over Kafka between two processes.

A requester produces a record (``acks=all``, idempotent, no linger: irisflow's producer policy)
and waits for the reply a responder process produces on another topic after reading it with
``getmany``, on an embedded broker of its own. No HTTP, no scoring, no checks: what two
acknowledged Kafka hops between processes cost on this machine, for comparison with
``bench/http_latency.py``'s idle rate.

    .venv/bin/python bench/kafka_request_reply.py            # 300 round trips, 20 ms apart
    .venv/bin/python bench/kafka_request_reply.py -n 1000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import embedded_broker


def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )


async def respond(bootstrap: str, requests: str, replies: str) -> None:
    """Answer every request with its own bytes, for ever (the parent kills this process)."""
    producer = _producer(bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(
        requests,
        bootstrap_servers=bootstrap,
        group_id=f"responder-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    print("ready", flush=True)
    while True:
        fetched = await consumer.getmany(timeout_ms=100, max_records=500)
        for batch in fetched.values():
            for record in batch:
                await producer.send(replies, record.value, key=record.key)


async def request(bootstrap: str, requests: str, replies: str, n: int, gap: float) -> list[float]:
    """``n`` round trips, one at a time, ``gap`` seconds apart; milliseconds each."""
    producer = _producer(bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(replies, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    await consumer.start()
    await consumer.getmany(timeout_ms=1000)  # positions resolved before the first request
    waiting: dict[bytes, asyncio.Future[float]] = {}

    async def read() -> None:
        while True:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    future = waiting.pop(record.key or b"", None)
                    if future is not None and not future.done():
                        future.set_result(time.perf_counter())

    reader = asyncio.create_task(read())
    times: list[float] = []
    try:
        for _ in range(n):
            key = uuid.uuid4().hex.encode()
            future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            waiting[key] = future
            started = time.perf_counter()
            await producer.send_and_wait(requests, b"x" * 200, key=key)
            times.append((await asyncio.wait_for(future, 10) - started) * 1000)
            await asyncio.sleep(gap)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return times


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 4, 1) for name in names])
    finally:
        await admin.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="round trips")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between round trips")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--respond", nargs=3, metavar=("BOOTSTRAP", "REQUESTS", "REPLIES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.respond:
        asyncio.run(respond(*args.respond))
        return
    folder = Path(tempfile.mkdtemp(prefix="irisflow-bench-rr-"))
    broker = embedded_broker(folder)
    broker.start()
    tag = uuid.uuid4().hex[:6]
    requests, replies = f"rr{tag}.requests", f"rr{tag}.replies"
    responder = None
    try:
        asyncio.run(_topics(broker.bootstrap, requests, replies))
        responder = subprocess.Popen(
            [sys.executable, __file__, "--respond", broker.bootstrap, requests, replies],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert responder.stdout is not None
        responder.stdout.readline()  # "ready"
        time.sleep(2)  # its group has its partitions
        times = asyncio.run(request(broker.bootstrap, requests, replies, args.n, args.gap))
    finally:
        if responder is not None:
            responder.kill()
        broker.stop()
    result = {
        "round_trips": len(times),
        "p50_ms": _percentile(times, 0.5),
        "p90_ms": _percentile(times, 0.9),
        "p99_ms": _percentile(times, 0.99),
        "conditions": f"{os.cpu_count()} cores, two processes, acks=all, idempotent, no linger",
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['round_trips']} round trips: p50 {result['p50_ms']:.2f} ms, "
            f"p90 {result['p90_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms ({result['conditions']})"
        )


if __name__ == "__main__":
    main()
