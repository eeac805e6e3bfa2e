"""Batch throughput over HTTP: 1,000-row calls through ``/v1/predict/batch`` and the Open
Inference Protocol, side by side with an in-process app.

The harness of ``bench/http_latency.py`` (vegeta open loop, the same stack of an embedded
broker, one ``irisflow worker`` and one ``irisflow gateway``, and ``bench/inprocess.py`` as the
baseline), with batches: every call carries ``--rows`` rows (1,000 by default: the most
``gateway.max_batch_instances`` allows), cycled through ``--bodies`` different bodies of Iris
rows moved by seeded noise (so answers are not replayed from memory: no request id is sent).
Calls leave at a constant rate whether or not earlier ones were answered. Targets:

* ``v1``: ``POST /v1/predict/batch`` with ``{"instances": [{feature: value, …}, …]}``;
* ``oip``: ``POST /v2/models/iris/infer`` with one ``[rows, 4]`` FP32 tensor as JSON numbers;
* ``oip-binary``: the same tensor as Triton's binary tensor data (tritonclient's default);
* ``inprocess``: ``bench/inprocess.py``'s ``/v1/predict/batch`` (one ``predict_proba`` per call).

Each reports calls/s answered, rows/s answered, p50/p99 latency, success, the peak resident
memory of the gateway (and worker) and CPU per call. The aim of issue 15: at least 50k rows/s
(50 calls/s of 1,000 rows) with p99 <= 500 ms and the gateway under 300 MB.

    .venv/bin/python bench/http_batch.py                  # 10, 25, 50, 75 calls/s, 20 s each
    .venv/bin/python bench/http_batch.py --quick          # a smoke run: 5 s per rate
    .venv/bin/python bench/http_batch.py --rates 50 --targets v1,oip --json

Results and their conditions go in docs/benchmarks.md (the machine is shared: say what ran).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from http_latency import (  # noqa: E402
    Baseline,
    Irisflow,
    _commit,
    _result,
    attack,
    cpu_used,
    ensure_vegeta,
    peak_rss,
)
from throughput import FEATURES, embedded_broker  # noqa: E402

P99_BUDGET_MS = 500.0
RSS_BUDGET_MB = 300.0
TARGETS = ("v1", "oip", "oip-binary", "inprocess")


@dataclass
class BatchResult:
    """One attack at ``rate`` calls/s of ``rows`` rows each."""

    target: str
    rate: int
    rows: int
    calls: int
    success: float
    calls_per_second: float
    rows_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    status_codes: dict[str, int]
    errors: list[str] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)

    @property
    def within_aim(self) -> bool:
        gateway = self.rss_mb.get("gateway", self.rss_mb.get("inprocess", 0.0))
        return self.success == 1.0 and self.p99_ms <= P99_BUDGET_MS and gateway <= RSS_BUDGET_MB


def _rows(count: int, seed: int) -> np.ndarray:
    data = load_iris().data
    noise = np.random.default_rng(seed).normal(0.0, 0.05, size=(count, data.shape[1]))
    return (data[np.arange(count) % len(data)] + noise).astype(np.float32)


def _body(target: str, rows: np.ndarray) -> tuple[bytes, dict[str, list[str]]]:
    json_type = {"Content-Type": ["application/json"]}
    if target in ("v1", "inprocess"):
        instances = [dict(zip(FEATURES, map(float, row), strict=True)) for row in rows]
        return json.dumps({"instances": instances}).encode(), json_type
    tensor: dict[str, Any] = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP32"}
    if target == "oip":
        tensor["data"] = [float(v) for v in rows.ravel()]
        return json.dumps({"inputs": [tensor]}).encode(), json_type
    raw = rows.astype("<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor]}).encode()
    headers = {**json_type, "Inference-Header-Content-Length": [str(len(header))]}
    return header + raw, headers


def _targets(folder: Path, target: str, url: str, *, rows: int, bodies: int) -> Path:
    """``bodies`` vegeta targets of ``rows`` rows each, cycled in order."""
    lines = []
    for seed in range(bodies):
        body, headers = _body(target, _rows(rows, seed))
        lines.append(
            json.dumps(
                {
                    "method": "POST",
                    "url": url,
                    "body": base64.b64encode(body).decode(),
                    "header": headers,
                }
            )
        )
    path = folder / f"batch-{target}-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _url(target: str, stack: Irisflow, baseline: Baseline | None) -> str:
    if target == "inprocess":
        assert baseline is not None
        return f"{baseline.url}/v1/predict/batch"
    if target == "v1":
        return f"{stack.url}/v1/predict/batch"
    return f"{stack.url}/v2/models/iris/infer"


def run(
    vegeta: Path,
    targets: dict[str, Path],
    pids: dict[str, dict[str, int]],
    *,
    rates: list[int],
    rows: int,
    seconds: float,
) -> list[BatchResult]:
    results = []
    for rate in rates:
        for name, path in targets.items():
            attack(vegeta, path, rate=min(rate, 10), seconds=2)  # warm-up, not counted
            with peak_rss(pids[name]) as peaks, cpu_used(pids[name]) as cpu:
                report = attack(vegeta, path, rate=rate, seconds=seconds)
            base = _result(name, rate, report)
            answered = float(report.get("throughput", 0.0))
            result = BatchResult(
                target=name,
                rate=rate,
                rows=rows,
                calls=base.requests,
                success=base.success,
                calls_per_second=answered,
                rows_per_second=answered * rows,
                p50_ms=base.p50_ms,
                p99_ms=base.p99_ms,
                max_ms=base.max_ms,
                status_codes=base.status_codes,
                errors=base.errors,
                rss_mb=dict(peaks),
                cpu_ms_per_call={
                    k: 1000 * v / max(base.requests, 1) for k, v in cpu.items() if v > 0
                },
            )
            results.append(result)
            print(_line(result), flush=True)
    return results


def _line(r: BatchResult) -> str:
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.status_codes.items()))
    memory = ", ".join(f"{k} {v:.0f} MB" for k, v in r.rss_mb.items() if v)
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_ms_per_call.items())
    return (
        f"{r.target:>10} {r.rate:>4} calls/s x {r.rows}: {r.calls_per_second:6.1f} calls/s, "
        f"{r.rows_per_second:9,.0f} rows/s, p50 {r.p50_ms:7.1f} ms, p99 {r.p99_ms:7.1f} ms, "
        f"success {r.success:.4f} ({codes}); {memory}; CPU ms/call: {cpu}"
        + (f"; errors: {r.errors[:2]}" if r.errors else "")
    )


def table(results: list[BatchResult]) -> str:
    """One markdown row per target and rate."""
    rows = [
        "| target | calls/s sent | calls/s answered | rows/s | p50 / p99 ms | success "
        "| gateway (or in-process) peak RSS MB | worker RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r.rate, TARGETS.index(r.target))):
        gateway = r.rss_mb.get("gateway", r.rss_mb.get("inprocess", 0.0))
        worker = r.rss_mb.get("worker-1")
        rows.append(
            f"| {r.target} | {r.rate} | {r.calls_per_second:.1f} | {r.rows_per_second:,.0f} "
            f"| {r.p50_ms:.0f} / {r.p99_ms:.0f} | {r.success:.2%} | {gateway:.0f} "
            f"| {f'{worker:.0f}' if worker else '-'} |"
        )
    for name in dict.fromkeys(r.target for r in results):
        passing = [r.rows_per_second for r in results if r.target == name and r.within_aim]
        rows.append(
            f"\n{name}: most rows/s with p99 <= {P99_BUDGET_MS:.0f} ms, every call 200 and the "
            f"gateway <= {RSS_BUDGET_MB:.0f} MB: {max(passing, default=0):,.0f}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run from the repository root with the project's venv; see docs/benchmarks.md.",
    )
    parser.add_argument("--rates", default="10,25,50,75", help="calls per second, in order")
    parser.add_argument("--rows", type=int, default=1000, help="rows per call")
    parser.add_argument("--bodies", type=int, default=20, help="distinct bodies, cycled")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--targets", default=",".join(TARGETS), help="among " + ", ".join(TARGETS))
    parser.add_argument("--quick", action="store_true", help="5 s per rate")
    parser.add_argument("--vegeta", help="path to a vegeta binary (default: build it once)")
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack and broker too
    if args.quick:
        args.duration = 5.0
    rates = [int(r) for r in args.rates.split(",") if r]
    chosen = [t for t in args.targets.split(",") if t]
    unknown = set(chosen) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose among {', '.join(TARGETS)}")
    vegeta = ensure_vegeta(args.vegeta)
    folder = Path(tempfile.mkdtemp(prefix="irisflow-bench-batch-"))
    broker = embedded_broker(folder)
    print(f"starting the embedded broker and the stack in {folder}", flush=True)
    broker.start()
    stack = Irisflow(folder, broker)
    baseline: Baseline | None = None
    document: dict[str, Any] = {"commit": _commit(), "conditions": _conditions(args)}
    try:
        stack.start()
        if "inprocess" in chosen:
            baseline = Baseline(folder)
        targets = {
            name: _targets(
                folder, name, _url(name, stack, baseline), rows=args.rows, bodies=args.bodies
            )
            for name in chosen
        }
        ours = stack.pids()
        pids = {name: dict(ours) for name in chosen}
        if baseline is not None:
            pids["inprocess"] = {"inprocess": baseline.process.pid}
        results = run(vegeta, targets, pids, rates=rates, rows=args.rows, seconds=args.duration)
        document["results"] = [asdict(r) for r in results]
    finally:
        stack.stop()
        if baseline is not None:
            baseline.stop()
        broker.stop()
        shutil.rmtree(folder / "kafka", ignore_errors=True)  # gigabytes of batches; logs stay
    if args.json:
        print(json.dumps(document, indent=2))
        return
    print(f"\ncommit {document['commit']}; {document['conditions']}\n")
    print(table(results))


def _conditions(args: argparse.Namespace) -> str:
    return (
        f"{os.cpu_count()} cores, {args.duration:g} s per rate, {args.rows} rows per call, "
        f"{args.bodies} distinct bodies, vegeta open loop, embedded broker + 1 worker + "
        "1 gateway (params.yaml defaults) vs bench/inprocess.py, all on this machine"
    )


if __name__ == "__main__":
    main()
