"""Keeping ``irisflow up``'s roles alive: each role a child process, restarted with backoff.

A role that exits on its own is restarted after a pause that doubles with each exit (1 s, 2 s,
4 s…, at most 30 s): one bad moment must not cost the whole stack, and a role that keeps failing
must not spin. A role that exits five times within five minutes is broken rather than unlucky:
then the last lines it wrote to stderr are shown (each child's stderr still reaches the terminal;
a bounded tail is kept) and the caller stops everything.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from irisflow.errors import IrisflowError

__all__ = ["TAIL_LINES", "RestartPolicy", "Role", "RoleGaveUp", "Supervisor"]

log = logging.getLogger(__name__)

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


_SHUTDOWN_NOISE = re.compile(
    r"\bUnclosed\b|Task was destroyed but it is pending|Exception ignored in|unclosed transport"
)


def _last_error(lines: deque[str]) -> str:
    """The last line that says "error" (a traceback ends with one), else the last line. What a
    dying process logs about resources it did not close (asyncio's "Unclosed connection" at
    shutdown) must not hide why it died."""
    written = [line.strip() for line in lines if line.strip() and not _SHUTDOWN_NOISE.search(line)]
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
