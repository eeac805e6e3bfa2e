"""What a command left running, seen through /proc: its process tree, and whether each is gone.

``irisflow up`` promises that Ctrl-C stops every process it started. Its log names the roles it
started, but not Prometheus, not the broker's JVM and not what a role starts in turn; only the
process tree shows all of them. A pid is remembered with its start time, so a pid the kernel
hands to a new process after the old one exited is not mistaken for the old one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Process", "descendants", "wait_gone"]

_PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    pid: int
    start_time: int
    """Clock ticks after boot (field 22 of /proc/<pid>/stat): with the pid, one process."""
    args: tuple[str, ...]

    def alive(self) -> bool:
        """Running (a zombie has exited: only its parent's bookkeeping is left)."""
        stat = _stat(self.pid)
        return stat is not None and stat[0] != "Z" and int(stat[19]) == self.start_time

    @property
    def role(self) -> str:
        """``worker``/``gateway``/``trainer``, ``broker``, ``prometheus``, or its program name."""
        if "kafka.Kafka" in self.args:
            return "broker"
        if self.args and self.args[0].startswith("[Faust:Worker]"):
            return "worker"  # Faust renames its process ("[Faust:Worker] -init- <app> …")
        if "irisflow.cli" in self.args and self.args[-1] in ("worker", "gateway", "trainer"):
            return self.args[-1]
        return Path(self.args[0]).name if self.args else "?"

    def __str__(self) -> str:
        return f"{self.role} (pid {self.pid}: {' '.join(self.args)[:160]})"


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses


def _args(pid: int) -> tuple[str, ...]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ()
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def descendants(root: int) -> list[Process]:
    """Every living process below ``root`` (children, their children…), as of now."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    found: list[Process] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            continue
        found.append(Process(pid, int(stat[19]), _args(pid)))
        todo.extend(children.get(pid, []))
    return found


def wait_gone(processes: list[Process], timeout: float) -> list[Process]:
    """Wait until none of ``processes`` runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in processes if p.alive()]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
