"""``irisflow up``'s restart schedule: back off exponentially, give up on a role that keeps
exiting, forgive exits that are old enough."""

from __future__ import annotations

from irisflow.local.supervisor import RestartPolicy


def test_each_exit_doubles_the_pause_before_the_restart() -> None:
    policy = RestartPolicy()
    assert [policy.after_exit(t) for t in (0.0, 2.0, 5.0, 10.0)] == [1.0, 2.0, 4.0, 8.0]


def test_the_fifth_exit_within_five_minutes_gives_up() -> None:
    policy = RestartPolicy()
    for t in (0.0, 60.0, 120.0, 180.0):
        assert policy.after_exit(t) is not None
    assert policy.after_exit(240.0) is None


def test_exits_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy()
    for t in (0.0, 10.0, 20.0, 30.0):
        policy.after_exit(t)
    assert policy.after_exit(331.0) == 1.0  # the four earlier exits are over five minutes old


def test_the_pause_is_capped() -> None:
    policy = RestartPolicy(limit=100)
    delays = [policy.after_exit(float(t)) for t in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
