"""Why a role was given up on: the exception that ended it, not the noise logged after it."""

from __future__ import annotations

from collections import deque

from irisflow.local.supervisor import _last_error


def test_the_exception_that_ended_the_process_wins_over_shutdown_noise() -> None:
    tail = deque(
        [
            "Traceback (most recent call last):",
            '  File "gateway/run.py", line 40, in run_gateway',
            "OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000)",
            "ERROR asyncio: Unclosed AIOKafkaConnection",
            "connection: <AIOKafkaConnection host=127.0.0.1 port=9092>",
        ]
    )
    assert _last_error(tail).startswith("OSError: [Errno 98]")


def test_without_a_traceback_the_last_line_saying_error_is_shown() -> None:
    tail = deque(["starting", "ERROR irisflow: the broker refused the topic", "bye"])
    assert _last_error(tail) == "ERROR irisflow: the broker refused the topic"


def test_without_any_error_the_last_line_is_shown() -> None:
    assert _last_error(deque(["starting", "  stopping  ", ""])) == "stopping"
    assert _last_error(deque()) == "no output on stderr"


def test_an_exit_raised_by_the_process_counts_as_its_exception() -> None:
    tail = deque(["SystemExit: invalid settings: kafka.partitions", "ERROR asyncio: Unclosed"])
    assert _last_error(tail) == "SystemExit: invalid settings: kafka.partitions"


def test_a_logged_error_is_not_hidden_by_unclosed_resources_reported_at_exit() -> None:
    tail = deque(
        [
            "INFO:     Started server process [4242]",
            "ERROR:    [Errno 98] error while attempting to bind: address already in use",
            "INFO:     Waiting for application shutdown.",
            "2026-12-01 03:56:33,646 ERROR asyncio: Unclosed AIOKafkaConnection",
            "Task was destroyed but it is pending!",
        ]
    )
    assert "address already in use" in _last_error(tail)
