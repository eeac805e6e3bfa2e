"""Stopping a broker returns only once its process is gone, even one that ignores SIGTERM.

A broker whose controller quorum is gone can hang in its clean shutdown; ``stop`` then kills
it. Returning before the killed process is gone let a restart right after find the broker's
port still taken (seen in the whole-cluster restart drill).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from irisflow.local.broker.runtime import EmbeddedKafka

_IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_broker_that_ignores_sigterm_is_killed_and_gone_when_stop_returns(
    tmp_path: Path,
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    broker = EmbeddedKafka(libs=tmp_path, data_dir=tmp_path / "kafka")
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "broker.pid").write_text(str(process.pid))
    started = time.monotonic()

    assert broker.stop(timeout=0.5)

    process.poll()  # reap it, as its parent (the broker is our child here too)
    assert process.returncode is not None or _gone(process.pid)
    assert time.monotonic() - started < 10
    assert not (broker.data_dir / "broker.pid").exists()
