"""The trainer's window takes each labeled record once, however often it is read."""

from __future__ import annotations

from irisflow.schemas import LabeledSample
from irisflow.topics import Incoming
from tests.factories import SETOSA
from trainer.inputs import Labeled, Window


def _at(offset: int, partition: int = 0, rid: str | None = None) -> Labeled:
    sample = LabeledSample(request_id=rid or f"r{offset}", features=SETOSA, true_label="setosa")
    return Labeled(sample, Incoming(b"", None, partition, offset, "labeled"))


def test_a_record_read_again_after_a_rebalance_is_not_taken_twice() -> None:
    window = Window(100)
    assert [window.add(_at(o)) for o in range(3)] == [True, True, True]
    assert [window.add(_at(o)) for o in range(3)] == [False, False, False]
    assert (len(window), window.pending) == (3, 3)


def test_the_same_offset_of_another_partition_is_another_record() -> None:
    window = Window(100)
    assert window.add(_at(0, partition=0))
    assert window.add(_at(0, partition=1))
    assert window.pending == 2


def test_a_record_let_go_by_the_window_can_be_taken_again() -> None:
    """Evicted (the window is full), dropped, or given up with a failed retraining: the window
    no longer holds it, so reading it again is a fresh sample, as before."""
    window = Window(2)
    for offset in range(3):
        window.add(_at(offset))
    assert window.add(_at(0))  # evicted by offset 2
    dropped = _at(9)
    window.add(dropped)
    window.drop([dropped])
    assert window.add(_at(9))
    window.drop_pending()
    assert window.add(_at(9))


def test_records_without_a_position_are_always_taken() -> None:
    window = Window(10)
    entry = Labeled(
        LabeledSample(request_id="r", features=SETOSA, true_label="setosa"), Incoming(b"")
    )
    assert window.add(entry)
    assert window.add(entry)
    assert window.pending == 2
