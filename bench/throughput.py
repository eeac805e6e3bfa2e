"""Throughput and latency of ONE scoring worker, through a real Kafka broker.

Starts an embedded broker on free ports, publishes a logistic-regression model, and for each
scenario runs a fresh ``irisflow worker`` process on fresh topics:

* throughput: a backlog of requests is produced first, then the worker drains it; the rate is
  measured between the first and the last answer's Kafka timestamps (set by the worker), so
  worker start-up is not counted;
* latency: requests are produced at a fixed rate while the worker runs; latency is from each
  request's ``sent_at`` to its answer arriving at a consumer in this process.

    .venv/bin/python bench/throughput.py             # every scenario once
    .venv/bin/python bench/throughput.py --repeat 3  # report the spread
    .venv/bin/python bench/throughput.py --quick     # smaller backlogs, for a smoke run

Results are printed as a markdown table (docs/benchmarks.md keeps the last ones).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import yaml
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from irisflow.kafka.admin import ensure_topics  # noqa: E402
from irisflow.kafka.clients import assign_all, make_consumer, make_producer  # noqa: E402
from irisflow.kafka.model_topic import publish_update  # noqa: E402
from irisflow.kafka.rollout_topic import publish_state  # noqa: E402
from irisflow.local.broker.runtime import EmbeddedKafka, ensure_kafka_jars, free_port  # noqa: E402
from irisflow.registry import serialize_model, sha256_hex  # noqa: E402
from irisflow.schemas import (  # noqa: E402
    FeatureStats,
    ModelUpdate,
    RolloutStage,
    RolloutState,
    RolloutStep,
)
from irisflow.settings import Settings, load_settings  # noqa: E402

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True)
class Scenario:
    name: str
    batch_size: int
    messages: int
    instances: int = 0  # 0: single-request messages; n: BatchPredictionRequest with n rows
    rate: float | None = None  # messages/s for a latency run; None: drain a backlog
    linger: float = 0.005  # only the Faust agent lingers; the lane scores what each fetch holds
    consumer: str = "lane"  # scoring.consumer
    ceiling: bool = False  # Faust alone (bench/faust_ceiling.py), no irisflow worker
    rollout: str | None = None  # "shadow" | "canary": a rollout of a second version is active
    share: float = 1.0  # of requests the rollout pairs (shadow) or the candidate answers


def scenarios(quick: bool) -> list[Scenario]:
    n = 5 if quick else 1
    single = "single-request messages"
    agent = "Faust agent (`scoring.consumer: agent`)"
    return [
        Scenario("Faust alone: an agent that only counts", 500, 50_000 // n, ceiling=True),
        Scenario(f"{single}, scoring lane (default)", 500, 100_000 // n),
        Scenario(f"{single}, {agent}, linger 5 ms", 500, 50_000 // n, consumer="agent"),
        Scenario(
            f"{single}, {agent}, linger 20 ms", 500, 50_000 // n, linger=0.02, consumer="agent"
        ),
        Scenario(f"{single}, scoring lane, one row per call", 1, 20_000 // n),
        Scenario("batched messages (100 rows), scoring lane", 500, 10_000 // n, 100),
        Scenario("batched messages (1,000 rows), scoring lane", 500, 2_000 // n, 1000),
        Scenario("latency at 250 msg/s, scoring lane", 500, 5_000 // n, rate=250),
        Scenario("latency at 1,000 msg/s, scoring lane", 500, 20_000 // n, rate=1000),
        Scenario("latency at 5,000 msg/s, scoring lane", 500, 50_000 // n, rate=5000),
        Scenario(f"latency at 1,000 msg/s, {agent}", 500, 20_000 // n, rate=1000, consumer="agent"),
        Scenario(
            f"{single}, scoring lane, shadow rollout 100%", 500, 100_000 // n, rollout="shadow"
        ),
        Scenario(
            f"{single}, scoring lane, canary rollout 30%",
            500,
            100_000 // n,
            rollout="canary",
            share=0.3,
        ),
        Scenario(
            "latency at 1,000 msg/s, scoring lane, shadow rollout 100%",
            500,
            20_000 // n,
            rate=1000,
            rollout="shadow",
        ),
    ]


def embedded_broker(folder: Path) -> EmbeddedKafka:
    """A broker of its own for a benchmark run (free ports, data under ``folder``, 1 GB heap)."""
    cache = Path(os.environ.get("IRISFLOW_CACHE_DIR", Path.home() / ".cache" / "irisflow"))
    return EmbeddedKafka(
        libs=ensure_kafka_jars(cache),
        data_dir=folder / "kafka",
        port=free_port(),
        controller_port=free_port(),
        heap="1g",
    )


MODELS = ("logistic", "forest")
"""What a benchmark can serve: a logistic regression (scoring one row costs ~0.1 ms, so the
transport dominates) or a 200-tree random forest (~10 ms a call, whatever its rows: what
micro-batching is for)."""


def model_update(kind: str = "logistic", version: int = 1) -> ModelUpdate:
    iris = load_iris()
    x, y = iris.data, np.asarray(iris.target_names)[iris.target]
    if kind not in MODELS:
        raise ValueError(f"model {kind!r}: choose one of {', '.join(MODELS)}")
    estimator: Any = (
        LogisticRegression(max_iter=500)
        if kind == "logistic"
        else RandomForestClassifier(n_estimators=200, random_state=0)
    )
    model = make_pipeline(StandardScaler(), estimator).fit(x, y)
    data = serialize_model(model)
    stats = {
        name: FeatureStats(
            mean=float(c.mean()),
            std=float(c.std()),
            min=float(c.min()),
            max=float(c.max()),
            quantiles=[float(q) for q in np.quantile(c, np.linspace(0.1, 0.9, 9))],
        )
        for name, c in zip(FEATURES, x.T, strict=True)
    }
    labels, counts = np.unique(y, return_counts=True)
    return ModelUpdate(
        model_name="iris",
        version=version,
        algorithm="logistic_regression" if kind == "logistic" else "random_forest",
        feature_names=FEATURES,
        class_labels=[str(c) for c in model.classes_],
        reference_stats=stats,
        class_prior={str(c): float(n / counts.sum()) for c, n in zip(labels, counts, strict=True)},
        sha256=sha256_hex(data),
        artifact=data,
        trigger="bench",
    )


class Run:
    """One scenario: its params file, its topics, its worker process."""

    def __init__(self, folder: Path, bootstrap: str, scenario: Scenario, profile: bool) -> None:
        self.scenario = scenario
        self.folder = folder
        self.port = free_port()
        tag = uuid.uuid4().hex[:8]
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["kafka"]["bootstrap"] = bootstrap
        params["kafka"]["app_id"] = f"bench-{tag}"
        params["kafka"]["topics"] = {
            k: f"bench{tag}.{v.removeprefix('irisflow.')}"
            for k, v in params["kafka"]["topics"].items()
        }
        params["scoring"]["batch_size"] = scenario.batch_size
        params["scoring"]["batch_linger_seconds"] = scenario.linger
        params["scoring"]["consumer"] = scenario.consumer
        params["home"] = str(folder / "home")
        params["log_level"] = "WARNING"
        self.params = folder / f"params-{tag}.yaml"
        self.params.write_text(yaml.safe_dump(params))
        self.settings: Settings = load_settings(self.params, environ={})
        self.profile = folder / f"worker-{tag}.prof" if profile else None
        self.process: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
        prefix = [sys.executable]
        if self.profile:
            prefix += ["-m", "cProfile", "-o", str(self.profile)]
        command = [*prefix, "-m", "irisflow.cli", "--params", str(self.params)]
        log = (self.folder / "worker.log").open("ab")
        self.process = subprocess.Popen(
            [*command, "worker", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready; see {self.folder / 'worker.log'}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _message(
    scenario: Scenario, rows: list[list[float]], index: int, now: float
) -> tuple[bytes, bytes]:
    rid = f"{index:09d}-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {"request_id": rid, "sent_at": now}
    if scenario.instances:
        picked = [rows[(index + i) % len(rows)] for i in range(scenario.instances)]
        body["instances"] = [dict(zip(FEATURES, r, strict=True)) for r in picked]
    else:
        body["features"] = dict(zip(FEATURES, rows[index % len(rows)], strict=True))
    return rid.encode(), orjson.dumps(body)


async def produce(run: Run, *, rate: float | None) -> None:
    scenario, topic = run.scenario, run.settings.kafka.topics.requests
    rows = load_iris().data[np.random.default_rng(0).permutation(150)].tolist()
    producer = make_producer(run.settings.kafka, linger_ms=5, max_batch_size=262144)
    await producer.start()
    started = time.perf_counter()
    try:
        for index in range(scenario.messages):
            if rate and index % 50 == 0:
                ahead = index / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            key, value = _message(scenario, rows, index, time.time())
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def collect(
    run: Run, *, on_record: Callable[[Any, float], None], timeout: float = 600.0
) -> int:
    """Read answers until every request has one; return how many distinct ones arrived."""
    consumer = make_consumer(
        run.settings.kafka, run.settings.kafka.topics.predictions, group_id=None
    )
    await consumer.start()
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < run.scenario.messages and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            arrived = time.time()
            for records in batches.values():
                for record in records:
                    if record.key not in seen:
                        seen.add(record.key)
                        on_record(record, arrived)
    finally:
        await consumer.stop()
    return len(seen)


async def throughput(run: Run) -> dict[str, float]:
    await produce(run, rate=None)
    run.start_worker()
    stamps: list[int] = []
    count = await collect(run, on_record=lambda record, _: stamps.append(record.timestamp))
    seconds = (max(stamps) - min(stamps)) / 1000
    messages = count / seconds
    rows = messages * (run.scenario.instances or 1)
    return {"messages_per_s": messages, "rows_per_s": rows, "answered": count}


async def latency(run: Run) -> dict[str, float]:
    run.start_worker()
    await asyncio.to_thread(run.wait_ready)
    latencies: list[float] = []

    def keep(record: Any, arrived: float) -> None:
        latencies.append(arrived - _sent(record))

    reader = asyncio.create_task(collect(run, on_record=keep))
    await produce(run, rate=run.scenario.rate)
    count = await reader
    values = np.asarray(latencies) * 1000
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p95_ms": float(np.percentile(values, 95)),
        "p99_ms": float(np.percentile(values, 99)),
        "answered": count,
    }


def _sent(record: Any) -> float:
    """sent_at of the request, recovered from the answer (scored_at - latency_seconds)."""
    answer = orjson.loads(record.value)
    return float(answer["scored_at"]) - float(answer["latency_seconds"])


async def start_rollout(run: Run, mode: str, share: float) -> None:
    """Publish the state the rollout controller would: version 2 (another logistic regression,
    so the scoring cost is the same and what is measured is the rollout's own work) in
    ``mode`` at ``share``, not automatic (no controller runs in a benchmark)."""
    candidate = model_update(version=2)
    now = time.time()
    rollout_id = f"iris-v2-{uuid.uuid4().hex[:8]}"
    state = RolloutState(
        model_name="iris",
        rollout_id=rollout_id,
        stage=RolloutStage(mode),
        candidate_version=2,
        champion_version=1,
        share=share,
        automatic=False,
        started_at=now,
        steps=[
            RolloutStep(
                at=now,
                rollout_id=rollout_id,
                version=2,
                champion_version=1,
                stage=RolloutStage(mode),
                share=share,
                decided_by="bench",
                reason=f"{mode} at {share:.0%} for a benchmark",
            )
        ],
        candidate=candidate,
    )
    producer = make_producer(run.settings.kafka)
    await producer.start()
    try:
        await publish_state(producer, run.settings.kafka, state)
    finally:
        await producer.stop()


async def shadow_records(run: Run) -> float:
    """How many shadow predictions the worker wrote (a rollout that paired nothing would make
    its scenario measure the baseline again)."""
    topic = run.settings.kafka.topics.shadow_predictions
    consumer = make_consumer(run.settings.kafka, group_id=None)
    await consumer.start()
    try:
        tps = await assign_all(consumer, topic, start="beginning")
        ends = await consumer.end_offsets(tps)
        return float(sum(ends.values()))
    finally:
        await consumer.stop()


def ceiling(bootstrap: str, scenario: Scenario) -> dict[str, float]:
    script = ROOT / "bench" / "faust_ceiling.py"
    command = [sys.executable, str(script), "--bootstrap", bootstrap]
    command += ["--messages", str(scenario.messages)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    line = next(x for x in done.stdout.splitlines() if "RESULT " in x)  # after tty codes
    result: dict[str, float] = orjson.loads(line.split("RESULT ", 1)[1])
    return {"messages_per_s": result["messages_per_s"], "rows_per_s": result["messages_per_s"]}


def run_scenario(
    folder: Path, bootstrap: str, scenario: Scenario, profile: bool
) -> dict[str, float]:
    if scenario.ceiling:
        return ceiling(bootstrap, scenario)
    run = Run(folder, bootstrap, scenario, profile)
    asyncio.run(ensure_topics(run.settings.kafka))
    asyncio.run(publish_update(run.settings.kafka, model_update()))
    if scenario.rollout:
        asyncio.run(start_rollout(run, scenario.rollout, scenario.share))
    try:
        measure = latency if scenario.rate else throughput
        result = asyncio.run(measure(run))
        if scenario.rollout:
            result["shadow_records"] = asyncio.run(shadow_records(run))
    finally:
        run.stop()
    if run.profile:
        print(f"  profile: {run.profile} (python -m pstats {run.profile})")
    return result


def _cell(values: list[float], digits: int = 0) -> str:
    if len(values) == 1:
        return f"{values[0]:,.{digits}f}"
    return (
        f"{statistics.median(values):,.{digits}f} "
        f"({min(values):,.{digits}f} to {max(values):,.{digits}f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true", help="run each worker under cProfile")
    parser.add_argument(
        "--only",
        action="append",
        help="run scenarios whose name contains this text (repeat for several)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="irisflow-bench-"))
    broker = embedded_broker(folder)
    broker.start()
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for _ in range(args.repeat):
            for scenario in scenarios(args.quick):
                if args.only and not any(text in scenario.name for text in args.only):
                    continue
                result = run_scenario(folder, broker.bootstrap, scenario, args.profile)
                print(f"{scenario.name}: {result}", flush=True)
                results.setdefault(scenario.name, []).append(result)
    finally:
        broker.stop()
        if not args.profile:
            shutil.rmtree(folder, ignore_errors=True)
    print("\n| scenario | messages/s | predictions/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        if "messages_per_s" in runs[0]:
            print(
                f"| {name} | {_cell([r['messages_per_s'] for r in runs])} | "
                f"{_cell([r['rows_per_s'] for r in runs])} | | | |"
            )
        else:
            p50, p95, p99 = (_cell([r[k] for r in runs], 1) for k in ("p50_ms", "p95_ms", "p99_ms"))
            print(f"| {name} | | | {p50} | {p95} | {p99} |")


if __name__ == "__main__":
    main()
