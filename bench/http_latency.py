"""HTTP latency of ``POST /v1/predict`` through Kafka, side by side with an in-process app.

What a client sees, measured with an established open-loop load generator (vegeta): requests
leave at a constant rate whether or not earlier ones were answered, so queueing shows in the
tail instead of slowing the generator down. In one run, on the same machine:

* **irisflow**: an embedded Kafka broker, one scoring worker and one gateway (``irisflow
  worker`` and ``irisflow gateway`` processes with the repository's ``params.yaml``, fresh
  topics, a logistic-regression model published as version 1);
* **in-process**: ``bench/inprocess.py``, one FastAPI process that loads the same skops artifact
  and calls ``predict_proba`` per request (the design irisflow replaces).

Each rate runs ``--duration`` seconds against each target after a short warm-up; then the
sweep goes on upwards to find each target's highest rate with p99 <= 100 ms and every answer
200. The failover scenario starts a second worker, sends ``--failover-rate`` requests/s and
``kill -9``s the worker that owns most partitions a third of the way in; it reports non-200
answers and the slowest answer. Resident memory of the gateway and worker is sampled during
the 200 rps run.

    .venv/bin/python bench/http_latency.py                 # the whole run (about 10 minutes)
    .venv/bin/python bench/http_latency.py --quick         # a smoke run: short, fewer rates
    .venv/bin/python bench/http_latency.py --json          # one JSON document instead of tables

vegeta is installed into ``.irisflow/tools/bin`` with ``go install`` on first use (pass
``--vegeta PATH`` to use another copy). Results and their conditions go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sklearn.datasets import load_iris

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import FEATURES, MODELS, embedded_broker, model_update  # noqa: E402

from irisflow.kafka.admin import ensure_topics  # noqa: E402
from irisflow.kafka.model_topic import publish_update  # noqa: E402
from irisflow.local.broker.runtime import EmbeddedKafka, free_port  # noqa: E402
from irisflow.settings import load_settings  # noqa: E402

VEGETA = "github.com/tsenart/vegeta/v12@v12.13.0"
P99_BUDGET_MS = 100.0


@dataclass
class Result:
    """One vegeta attack: what its report says, in milliseconds."""

    target: str
    rate: int
    requests: int
    success: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_codes: dict[str, int]
    errors: list[str] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    """CPU time (user + system) each process spent per request sent during the attack."""

    @property
    def within_budget(self) -> bool:
        return self.success == 1.0 and self.p99_ms <= P99_BUDGET_MS


def ensure_vegeta(explicit: str | None) -> Path:
    """A vegeta binary: ``--vegeta``, PATH, or one built with ``go install`` once."""
    if explicit:
        return Path(explicit)
    found = shutil.which("vegeta")
    if found:
        return Path(found)
    tools = ROOT / ".irisflow" / "tools" / "bin"
    binary = tools / "vegeta"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise SystemExit(
            "vegeta is not installed and there is no Go toolchain to build it: install Go "
            "(https://go.dev/doc/install) or vegeta, or pass --vegeta PATH"
        )
    print(f"building vegeta into {tools} (go install {VEGETA}, about a minute, once)", flush=True)
    tools.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(tools)}
    subprocess.run([go, "install", VEGETA], check=True, env=env)
    return binary


def _targets(folder: Path, url: str) -> Path:
    """One vegeta JSON target per Iris row, cycled in order; no request id (each is new)."""
    lines = []
    for row in load_iris().data.tolist():
        body = json.dumps({"features": dict(zip(FEATURES, row, strict=True))}).encode()
        lines.append(
            json.dumps(
                {
                    "method": "POST",
                    "url": url,
                    "body": base64.b64encode(body).decode(),
                    "header": {"Content-Type": ["application/json"]},
                }
            )
        )
    path = folder / f"targets-{uuid.uuid4().hex[:6]}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def attack(
    vegeta: Path, targets: Path, *, rate: int, seconds: float, timeout: float = 30.0
) -> dict[str, Any]:
    """Run one open-loop attack and return vegeta's JSON report."""
    attacker = subprocess.Popen(
        [
            str(vegeta),
            "attack",
            "-format=json",
            f"-targets={targets}",
            f"-rate={rate}/s",
            f"-duration={seconds}s",
            f"-timeout={timeout}s",
            "-max-workers=2000",
        ],
        stdout=subprocess.PIPE,
    )
    report = subprocess.run(
        [str(vegeta), "report", "-type=json"],
        stdin=attacker.stdout,
        capture_output=True,
        check=True,
    )
    attacker.wait()
    parsed: dict[str, Any] = json.loads(report.stdout)
    return parsed


def _result(target: str, rate: int, report: dict[str, Any]) -> Result:
    latencies = report["latencies"]
    return Result(
        target=target,
        rate=rate,
        requests=int(report["requests"]),
        success=float(report["success"]),
        p50_ms=latencies["50th"] / 1e6,
        p90_ms=latencies["90th"] / 1e6,
        p99_ms=latencies["99th"] / 1e6,
        max_ms=latencies["max"] / 1e6,
        status_codes={str(k): int(v) for k, v in report.get("status_codes", {}).items()},
        errors=[str(e) for e in report.get("errors") or []][:10],
    )


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def cpu_used(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    """CPU seconds each of ``pids`` spends inside the block (filled in when it ends)."""
    start = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    used: dict[str, float] = {}
    try:
        yield used
    finally:
        used.update({name: _cpu_seconds(pid) - start[name] for name, pid in pids.items()})


@contextmanager
def peak_rss(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    """Sample the resident memory of ``pids`` twice a second; the dict holds each one's peak."""
    peaks = {name: _rss_mb(pid) for name, pid in pids.items()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            for name, pid in pids.items():
                peaks[name] = max(peaks[name], _rss_mb(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


class Irisflow:
    """An embedded broker, workers and a gateway on fresh topics, serving version 1."""

    def __init__(self, folder: Path, broker: EmbeddedKafka, model: str = "logistic") -> None:
        self.folder = folder
        self.model = model
        folder.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["kafka"]["bootstrap"] = broker.bootstrap
        params["kafka"]["app_id"] = f"bench-http-{tag}"
        params["kafka"]["topics"] = {
            k: f"benchhttp{tag}.{v.removeprefix('irisflow.')}"
            for k, v in params["kafka"]["topics"].items()
        }
        params["home"] = str(folder / "home")
        params["log_level"] = "WARNING"
        params.setdefault("gateway", {})["port"] = free_port()
        self.params = folder / f"params-{tag}.yaml"
        self.params.write_text(yaml.safe_dump(params))
        self.settings = load_settings(self.params, environ={})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway.port}"

    def start(self, *, workers: int = 1) -> None:
        asyncio.run(ensure_topics(self.settings.kafka))
        asyncio.run(publish_update(self.settings.kafka, model_update(self.model)))
        for index in range(workers):
            self.start_worker(f"worker-{index + 1}")
        self._start("gateway", "gateway")
        self._wait(f"{self.url}/health/ready")
        for name, port in self.ports.items():
            self._wait(f"http://127.0.0.1:{port}/health", name)

    def start_worker(self, name: str) -> None:
        self.ports[name] = free_port()
        self._start(name, "worker", "--port", str(self.ports[name]))

    def _start(self, name: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
        log = (self.folder / f"{name}.log").open("ab")
        command = [sys.executable, "-m", "irisflow.cli", "--params", str(self.params), *args]
        self.processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )

    def _wait(self, url: str, name: str = "gateway", timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}; see {self.folder}")
            try:
                if httpx.get(url, timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{name} not ready after {timeout:.0f} s; see {self.folder}")

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items() if p.poll() is None}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


class Baseline:
    """``bench/inprocess.py`` serving the same artifact."""

    def __init__(self, folder: Path, model: str = "logistic") -> None:
        update = model_update(model)
        artifact = folder / f"model-{model}.skops"
        artifact.write_bytes(update.artifact)
        self.port = free_port()
        log = (folder / "inprocess.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "inprocess.py"),
                "--artifact",
                str(artifact),
                "--sha256",
                update.sha256,
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit(f"the in-process baseline did not start; see {folder / 'inprocess.log'}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def sweep(
    vegeta: Path,
    targets: dict[str, Path],
    pids: dict[str, dict[str, int]],
    *,
    rates: list[int],
    extra: list[int],
    seconds: float,
    cpu_pids: dict[str, dict[str, int]] | None = None,
) -> list[Result]:
    """Every rate of ``rates`` on both targets, then ``extra`` rates until a target fails.

    ``pids`` are sampled for peak memory, ``cpu_pids`` (``pids`` if not given) for CPU time:
    the broker's CPU belongs to irisflow's bill but its memory is the JVM's heap setting.
    """
    cpu_pids = cpu_pids if cpu_pids is not None else pids
    results: list[Result] = []
    failing: set[str] = set()
    for rate in [*rates, *extra]:
        for name, path in targets.items():
            if rate in extra and name in failing:
                continue
            attack(vegeta, path, rate=min(rate, 50), seconds=2)  # warm-up, not counted
            with peak_rss(pids.get(name, {})) as peaks, cpu_used(cpu_pids.get(name, {})) as cpu:
                report = attack(vegeta, path, rate=rate, seconds=seconds)
            result = _result(name, rate, report)
            result.rss_mb = dict(peaks)
            sent = max(1, result.requests)
            result.cpu_ms_per_request = {k: 1000 * v / sent for k, v in cpu.items()}
            results.append(result)
            print(_line(result), flush=True)
            if not result.within_budget:
                failing.add(name)
        if failing >= set(targets) and rate >= max(rates):
            break
    return results


def failover(
    vegeta: Path,
    folder: Path,
    broker: EmbeddedKafka,
    *,
    rate: int,
    seconds: float,
    model: str = "logistic",
) -> dict[str, Any]:
    """Two workers; ``kill -9`` one a third of the way into an attack; what clients saw."""
    stack = Irisflow(folder / "failover", broker, model)
    stack.start(workers=2)
    targets = _targets(folder, f"{stack.url}/v1/predict")
    try:
        attack(vegeta, targets, rate=50, seconds=3)
        victim = stack.processes["worker-1"]
        timer = threading.Timer(seconds / 3, lambda: os.kill(victim.pid, signal.SIGKILL))
        timer.start()
        report = attack(vegeta, targets, rate=rate, seconds=seconds)
        timer.join()
    finally:
        stack.stop()
    result = _result("irisflow, kill -9 of one of two workers", rate, report)
    print(_line(result), flush=True)
    return asdict(result)


def _line(result: Result) -> str:
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(result.status_codes.items()))
    memory = ", ".join(f"{k} {v:.0f} MB" for k, v in result.rss_mb.items() if v)
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_ms_per_request.items())
    errors = f"; errors: {'; '.join(result.errors)}" if result.errors else ""
    return (
        f"{result.target:>10} {result.rate:>5} rps: p50 {result.p50_ms:7.1f} ms, "
        f"p99 {result.p99_ms:7.1f} ms, max {result.max_ms:7.1f} ms, "
        f"success {result.success:.4f} ({codes}){'; ' + memory if memory else ''}"
        f"{'; CPU ms/request ' + cpu if cpu else ''}{errors}"
    )


def _cpu(ours: Result | None, base: Result | None) -> str:
    """``total (broker + gateway + workers) / baseline`` CPU ms per request, as far as known."""
    cells = []
    for result in (ours, base):
        parts = result.cpu_ms_per_request if result else {}
        if not parts:
            cells.append("-")
        elif len(parts) == 1:
            cells.append(f"{sum(parts.values()):.2f}")
        else:
            order = sorted(parts, key=lambda k: (k != "broker", k != "gateway", k))
            detail = " + ".join(f"{parts[k]:.2f}" for k in order)
            cells.append(f"{sum(parts.values()):.2f} ({detail})")
    return " / ".join(cells)


def table(results: list[Result]) -> str:
    """One markdown row per rate: irisflow and the baseline side by side, with the ratios."""
    by_rate: dict[int, dict[str, Result]] = {}
    for result in results:
        by_rate.setdefault(result.rate, {})[result.target] = result
    rows = [
        "| rate | irisflow p50 / p99 ms | in-process p50 / p99 ms | ratio p50 / p99 "
        "| success irisflow / in-process | CPU ms per request: irisflow (broker + gateway + "
        "worker) / in-process |",
        "|---|---|---|---|---|---|",
    ]
    for rate, pair in sorted(by_rate.items()):
        ours, base = pair.get("irisflow"), pair.get("inprocess")
        cells = [f"{r.p50_ms:.1f} / {r.p99_ms:.1f}" if r else "-" for r in (ours, base)]
        ratio = (
            f"{ours.p50_ms / base.p50_ms:.1f}x / {ours.p99_ms / base.p99_ms:.1f}x"
            if ours and base
            else "-"
        )
        success = " / ".join(f"{r.success:.2%}" if r else "-" for r in (ours, base))
        rows.append(
            f"| {rate} | {cells[0]} | {cells[1]} | {ratio} | {success} | {_cpu(ours, base)} |"
        )
    for name in ("irisflow", "inprocess"):
        passing = [r.rate for r in results if r.target == name and r.within_budget]
        best = max(passing) if passing else 0
        rows.append(
            f"\nhighest rate with p99 <= {P99_BUDGET_MS:.0f} ms and 100% 200: {name} {best}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run from the repository root with the project's venv; see docs/benchmarks.md.",
    )
    parser.add_argument("--rates", default="10,50,100,200,300", help="rates every target runs")
    parser.add_argument(
        "--extra", default="400,500,600,800,1000", help="higher rates, run until a target fails"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--failover-rate", type=int, default=300)
    parser.add_argument("--failover-seconds", type=float, default=30.0)
    parser.add_argument("--no-failover", action="store_true")
    parser.add_argument("--quick", action="store_true", help="5 s per rate, no extra rates")
    parser.add_argument("--vegeta", help="path to a vegeta binary (default: build it once)")
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    parser.add_argument(
        "--model",
        choices=MODELS,
        default="logistic",
        help="what both targets serve: logistic (~0.1 ms a call: the transport dominates) or "
        "forest (200 trees, ~10 ms a call whatever its rows: what micro-batching is for)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack and broker too
    if args.quick:
        args.duration, args.extra, args.failover_seconds = 5.0, "", 15.0
    rates = [int(r) for r in args.rates.split(",") if r]
    extra = [int(r) for r in args.extra.split(",") if r]
    vegeta = ensure_vegeta(args.vegeta)
    folder = Path(tempfile.mkdtemp(prefix="irisflow-bench-http-"))
    broker = embedded_broker(folder)
    print(f"starting the embedded broker and the stack in {folder}", flush=True)
    broker.start()
    stack = Irisflow(folder, broker, args.model)
    baseline: Baseline | None = None
    document: dict[str, Any] = {"commit": _commit(), "conditions": _conditions(args)}
    try:
        stack.start()
        baseline = Baseline(folder, args.model)
        targets = {
            "irisflow": _targets(folder, f"{stack.url}/v1/predict"),
            "inprocess": _targets(folder, f"{baseline.url}/v1/predict"),
        }
        pids = {
            "irisflow": {n: p for n, p in stack.pids().items()},
            "inprocess": {"inprocess": baseline.process.pid},
        }
        broker_pid = broker.pid()
        cpu_pids = {
            "irisflow": {**({"broker": broker_pid} if broker_pid else {}), **pids["irisflow"]},
            "inprocess": pids["inprocess"],
        }
        results = sweep(
            vegeta,
            targets,
            pids,
            rates=rates,
            extra=extra,
            seconds=args.duration,
            cpu_pids=cpu_pids,
        )
        document["sweep"] = [asdict(r) for r in results]
        stack.stop()
        baseline.stop()
        baseline = None
        if not args.no_failover:
            document["failover"] = failover(
                vegeta,
                folder,
                broker,
                rate=args.failover_rate,
                seconds=args.failover_seconds,
                model=args.model,
            )
    finally:
        stack.stop()
        if baseline:
            baseline.stop()
        broker.stop()
    if args.json:
        print(json.dumps(document, indent=2))
        return
    print(f"\ncommit {document['commit']}; {document['conditions']}\n")
    print(table(results))
    if "failover" in document:
        f = document["failover"]
        print(
            f"\nfailover at {f['rate']} rps, kill -9 of one of two workers: "
            f"success {f['success']:.2%} {f['status_codes']}, p99 {f['p99_ms']:.0f} ms, "
            f"slowest answer {f['max_ms'] / 1000:.1f} s"
        )


def _commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT
    )
    return done.stdout.strip() or "unknown"


def _conditions(args: argparse.Namespace) -> str:
    return (
        f"{os.cpu_count()} cores, {args.duration:g} s per rate, vegeta open loop, "
        f"model {args.model}, "
        "embedded broker + 1 worker + 1 gateway vs bench/inprocess.py, all on this machine"
    )


if __name__ == "__main__":
    main()
