"""``irisflow up``: the whole system on one machine, each role in its own process (broker,
worker, gateway, retraining service), kept running.

Roles run as child processes (``irisflow worker``, ``irisflow gateway``, ``irisflow trainer``)
exactly as they would on separate hosts, so what works here works when they are spread out.

A role that exits on its own is restarted after a pause that doubles with each exit (1 s, 2 s,
4 s…, at most 30 s): one bad moment must not cost the whole stack, and a role that keeps failing
must not spin. A role that exits five times within five minutes is broken rather than unlucky:
then the last lines it wrote to stderr are shown (each child's stderr still reaches the terminal;
a bounded tail is kept) and everything stops. Ctrl-C (or SIGTERM) stops the children first,
then Prometheus and the broker if this command started them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import httpx

from irisflow.errors import IrisflowError
from irisflow.kafka.admin import ensure_topics
from irisflow.kafka.model_topic import read_live_update
from irisflow.local.prometheus import local_prometheus
from irisflow.settings import Settings

__all__ = ["RestartPolicy", "Role", "Supervisor", "run_local_stack"]

log = logging.getLogger(__name__)

_CURL = (
    "curl -s -XPOST {url}/v1/predict -H 'content-type: application/json' "
    '-d \'{{"features":{{"sepal_length":5.1,"sepal_width":3.5,'
    '"petal_length":1.4,"petal_width":0.2}}}}\''
)

TAIL_LINES = 30
"""Lines of each child's stderr kept to show when it is given up on."""
_TAIL_LINE_CHARS = 2000


@dataclass
class RestartPolicy:
    """When to restart a role that exited, and when to give up on it.

    Pure: the caller passes the clock, so the schedule is tested without waiting for it.
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    limit: int = 5
    window: float = 300.0
    exits: deque[float] = field(default_factory=deque)

    def after_exit(self, now: float) -> float | None:
        """Seconds to wait before the restart, or ``None``: ``limit`` exits within ``window``."""
        self.exits.append(now)
        while self.exits and self.exits[0] < now - self.window:
            self.exits.popleft()
        if len(self.exits) >= self.limit:
            return None
        return min(self.max_delay, self.first_delay * 2.0 ** (len(self.exits) - 1))


class Role:
    """One child process: started, passed through, restarted when it exits unasked."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        policy: RestartPolicy | None = None,
        env: dict[str, str] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.policy = policy or RestartPolicy()
        self.env = env
        self.restarts = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.process: subprocess.Popen[bytes] | None = None
        self.restart_at: float | None = None
        self._stderr = stderr or sys.stderr.buffer
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        self.tail.clear()  # what matters when it is given up on is how its last run ended
        self.process = subprocess.Popen(self.command, env=self.env, stderr=subprocess.PIPE)
        self._pump = threading.Thread(
            target=self._pass_through,
            args=(self.process.stderr,),
            name=f"{self.name}-stderr",
            daemon=True,
        )
        self._pump.start()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def _pass_through(self, pipe: IO[bytes]) -> None:
        """Copy the child's stderr to ours line by line, keeping the last lines."""
        for line in iter(pipe.readline, b""):
            with contextlib.suppress(OSError, ValueError):
                self._stderr.write(line)
                self._stderr.flush()
            self.tail.append(line.decode("utf-8", errors="replace").rstrip()[:_TAIL_LINE_CHARS])
        pipe.close()

    def check(self, now: float) -> None:
        """Restart the child if it exited; :class:`RoleGaveUp` once it exits too often."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                self.restarts += 1
                self.start()
            return
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return
        self._drain()
        delay = self.policy.after_exit(now)
        if delay is None:
            raise RoleGaveUp(self, code)
        log.warning(
            "%s exited with code %d; restarting in %g s (restart %d)",
            self.name,
            code,
            delay,
            self.restarts + 1,
        )
        self.restart_at = now + delay

    def _drain(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=2)

    def stop(self, deadline: float) -> None:
        process = self.process
        self.restart_at = None
        if process is None:
            return
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", self.name)
            process.kill()
            process.wait()
        self._drain()


def _last_error(lines: deque[str]) -> str:
    """The last line that says "error" (a traceback ends with one), else the last line."""
    written = [line.strip() for line in lines if line.strip()]
    errors = [line for line in written if "error" in line.lower()]
    return (errors or written or ["no output on stderr"])[-1]


class RoleGaveUp(IrisflowError):
    """A role exited too often in too short a time: broken, not unlucky."""

    def __init__(self, role: Role, code: int) -> None:
        policy = role.policy
        last = _last_error(role.tail)
        super().__init__(
            f"{role.name} exited {policy.limit} times within {policy.window:g} s (last exit code "
            f"{code}; last error: {last}); stopped the stack"
        )
        self.role = role


class Supervisor:
    """Keeps every role running until asked to stop, or until one of them is given up on."""

    def __init__(self, roles: list[Role], clock: Callable[[], float] = time.monotonic) -> None:
        self.roles = roles
        self._clock = clock

    def start(self) -> None:
        for role in self.roles:
            role.start()

    def tick(self) -> None:
        restarted = False
        for role in self.roles:
            before = role.restarts
            try:
                role.check(self._clock())
            except RoleGaveUp:
                lines = "\n".join(f"  {line}" for line in role.tail) or "  (nothing)"
                log.error("%s keeps exiting; its last lines of stderr:\n%s", role.name, lines)
                raise
            restarted |= role.restarts != before
        if restarted:
            log.info("restarts so far: %s", self.status())

    def status(self) -> str:
        return ", ".join(f"{role.name} {role.restarts}" for role in self.roles)

    def stop(self) -> None:
        for role in self.roles:
            if role.process is not None and role.process.poll() is None:
                role.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for role in self.roles:
            role.stop(deadline)


_NO_PROMETHEUS = "no local Prometheus (apt-get install prometheus)"
_ROLES = ("worker", "gateway", "trainer")


def _irisflow(settings: Settings, *args: str) -> list[str]:
    return [sys.executable, "-m", "irisflow.cli", "--params", str(settings.params_path), *args]


@contextlib.contextmanager
def _broker(settings: Settings) -> Iterator[None]:
    """Start the embedded broker unless one runs (or an external cluster is configured)."""
    if not settings.kafka.embedded:
        log.info("using the Kafka cluster at %s", settings.kafka.bootstrap)
        yield
        return
    from irisflow.local.broker.embedded import embedded_broker

    broker = embedded_broker(settings)
    started_here = not broker.status().running
    if started_here:
        log.info("starting the embedded Kafka broker (first run downloads its jars)…")
    broker.start()
    try:
        yield
    finally:
        if started_here:
            log.info("stopping the embedded Kafka broker")
            broker.stop()


def _wait_ready(
    urls: list[str],
    supervisor: Supervisor,
    stopping: Callable[[], bool],
    timeout: float = 120.0,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        supervisor.tick()
        if all(_answers(url) for url in urls):
            return
        time.sleep(0.5)
    if stopping():
        return
    raise IrisflowError(f"{' and '.join(urls)} did not report ready within {timeout:.0f}s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _banner(settings: Settings, prometheus_url: str | None) -> str:
    url = f"http://{settings.gateway.host}:{settings.gateway.port}"
    return (
        f"\nirisflow is up.\n  dashboard {url}/\n"
        f"  gateway   {url}  (API docs {url}/docs)\n"
        f"  metrics   {prometheus_url or _NO_PROMETHEUS}\n"
        f"  worker    http://{settings.worker.host}:{settings.worker.port}/metrics\n"
        f"  trainer   http://{settings.retraining.host}:{settings.retraining.port}/metrics"
        " (retrains on feedback, drift, `irisflow retrain`)\n"
        f"  try       {_CURL.format(url=url)}\n"
        "  restarts  a role that exits is restarted (1 s, 2 s, 4 s… at most 30 s); five exits "
        "within five minutes stop the stack\n  stop      Ctrl-C\n"
    )


def run_local_stack(settings: Settings) -> None:
    stop_requested = False

    def _request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    with _broker(settings), local_prometheus(settings) as prometheus_url:
        asyncio.run(ensure_topics(settings.kafka))
        if asyncio.run(read_live_update(settings.kafka, settings.model_name)) is None:
            log.info("no model is live yet: training the first one")
            subprocess.run(_irisflow(settings, "train", "--trigger", "bootstrap"), check=True)
        env = dict(os.environ)
        supervisor = Supervisor([Role(name, _irisflow(settings, name), env=env) for name in _ROLES])
        previous = signal.signal(signal.SIGTERM, _request_stop)
        previous_int = signal.signal(signal.SIGINT, _request_stop)
        try:
            supervisor.start()
            url = f"http://{settings.gateway.host}:{settings.gateway.port}"
            worker_url = f"http://{settings.worker.host}:{settings.worker.port}"
            _wait_ready(
                [f"{url}/health/ready", f"{worker_url}/health"],
                supervisor,
                lambda: stop_requested,
            )
            if not stop_requested:
                print(_banner(settings, prometheus_url), flush=True)
            while not stop_requested:
                supervisor.tick()
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
            log.info("stopping %s (restarts: %s)", ", ".join(_ROLES), supervisor.status())
            supervisor.stop()
