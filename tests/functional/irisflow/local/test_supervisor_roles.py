"""The supervisor behind ``irisflow up`` with tiny real child processes and a hand-moved clock:
restart after the pause, pass stderr through while keeping its tail, give up with the last
error, stop every child on request."""

from __future__ import annotations

import io
import signal
import sys
import time

import pytest

from irisflow.local.supervisor import Role, RoleGaveUp, Supervisor

CRASHER = "import sys, os; print(f'boom from {os.getpid()}', file=sys.stderr); sys.exit(3)"
SLEEPER = "import time; time.sleep(60)"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _exited(role: Role) -> None:
    assert role.process is not None
    role.process.wait(10)


def test_a_crashing_role_is_restarted_after_its_pause_then_given_up_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, terminal = Clock(), io.BytesIO()
    role = Role("worker", [sys.executable, "-c", CRASHER], stderr=terminal)
    supervisor = Supervisor([role], clock=clock)
    supervisor.start()
    pids = []
    with caplog.at_level("INFO", logger="irisflow.local"):
        for exit_number, pause in enumerate([1.0, 2.0, 4.0, 8.0], start=1):
            assert role.process is not None
            pids.append(role.process.pid)
            _exited(role)
            supervisor.tick()
            assert (
                f"worker exited with code 3; restarting in {pause:g} s (restart {exit_number})"
                in caplog.text
            )
            clock.now += pause - 0.01
            supervisor.tick()
            assert role.restarts == exit_number - 1  # not before the pause is over
            clock.now += 0.01
            supervisor.tick()
            assert role.restarts == exit_number
        assert role.process is not None
        pids.append(role.process.pid)
        _exited(role)
        with pytest.raises(RoleGaveUp, match=r"worker exited 5 times within 300 s .*boom from"):
            supervisor.tick()
    assert len(set(pids)) == 5
    assert f"boom from {pids[-1]}" in role.tail[-1]
    assert "its last lines of stderr" in caplog.text
    assert "restarts so far: worker 4" in caplog.text
    passed = terminal.getvalue().decode()
    assert all(f"boom from {pid}" in passed for pid in pids)


def test_stop_ends_every_child_and_cancels_pending_restarts() -> None:
    clock = Clock()
    sleeper = Role("gateway", [sys.executable, "-c", SLEEPER], stderr=io.BytesIO())
    crasher = Role("trainer", [sys.executable, "-c", CRASHER], stderr=io.BytesIO())
    supervisor = Supervisor([sleeper, crasher], clock=clock)
    supervisor.start()
    _exited(crasher)
    supervisor.tick()
    assert crasher.restart_at is not None

    started = time.monotonic()
    supervisor.stop()

    assert sleeper.process is not None
    assert sleeper.process.returncode == -signal.SIGTERM
    assert crasher.restart_at is None
    assert time.monotonic() - started < 10
    assert crasher.restarts == 0
