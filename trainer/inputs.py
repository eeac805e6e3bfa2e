"""What the trainer reads, decoded and checked in one place, so a bad record costs one letter.

Every record on the trainer's three topics goes through its topic's codec (value and key); a
labeled sample must also fit the model it would retrain: the champion's feature names, value
domain and classes, or, before any champion, the base data set's. A sample the model could not
compute with (``sepal_length: 1e39`` is infinity in float32) or a label no model knows
(``"banana"``) would otherwise enter the training window and fail the retraining that uses it,
taking every other pending label down with it.

The samples that passed wait in a :class:`Window`; :func:`unlearnable` finds, before training,
the ones whose class the training data would still hold too few rows of (possible only when the
champion knows a class the base data set lacks), so they alone are dropped.

Pure: no Kafka client, no framework.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from irisflow.features import FeatureSchema
from irisflow.schemas import DriftEvent, LabeledSample, ModelUpdate, RetrainRequest
from irisflow.topics import Incoming, Reason, Refused, Topics
from trainer.data import Dataset
from trainer.training import reference_statistics

__all__ = ["Labeled", "TrainerInput", "TrainerMessage", "Window", "unlearnable", "why_unlearnable"]

TrainerMessage = LabeledSample | RetrainRequest | DriftEvent

Split = Callable[[int], tuple[np.ndarray, np.ndarray]]
"""Indices of ``count`` recent samples for training and for the gate's holdout."""


class TrainerInput:
    """Turns one record of ``labeled``, ``drift-events`` or ``retrain-requests`` into a message.

    :meth:`decode` returns the message or raises :class:`~irisflow.topics.Refused` with the
    reason its dead letter carries.
    """

    def __init__(
        self, topics: Topics, base: Dataset, *, max_reference_std: float | None = None
    ) -> None:
        self._topics = topics
        self._limit = max_reference_std
        self.schema = FeatureSchema(
            base.feature_names, reference_statistics(base), max_reference_std=max_reference_std
        )
        self.classes: tuple[str, ...] = base.class_labels

    def follow(self, champion: ModelUpdate) -> None:
        """Check later samples against the model they would replace."""
        schema = FeatureSchema(
            champion.feature_names, champion.reference_stats, max_reference_std=self._limit
        )
        self.schema, self.classes = schema, tuple(champion.class_labels)

    def decode(self, record: Incoming) -> TrainerMessage:
        topics = self._topics
        if record.topic == topics.labeled.name:
            return self._sample(topics.labeled.decode(record.value, record.key))
        if record.topic == topics.retrain_requests.name:
            return topics.retrain_requests.decode(record.value, record.key)
        if record.topic == topics.drift_events.name:
            return topics.drift_events.decode(record.value, record.key)
        raise Refused(Reason.PROCESSING_FAILED, f"the trainer does not read {record.topic}")

    def _sample(self, sample: LabeledSample) -> LabeledSample:
        if sample.true_label not in self.classes:
            raise Refused(
                Reason.SCHEMA_MISMATCH,
                f"LabeledSample {sample.request_id}: true_label {sample.true_label!r} is not one "
                f"of the model's classes ({', '.join(self.classes)})",
            )
        problems = self.schema.problems(sample.features, "features")
        if not problems:
            return sample
        names_wrong = any(problem.kind != "domain" for problem in problems)
        raise Refused(
            Reason.SCHEMA_MISMATCH if names_wrong else Reason.OUT_OF_DOMAIN,
            f"LabeledSample {sample.request_id}: {self.schema.describe(problems)}",
        )


@dataclass(frozen=True, eq=False)
class Labeled:
    """A sample in the window, with the record it came from (its dead letter needs the bytes)."""

    sample: LabeledSample
    record: Incoming


Position = tuple[str, int, int]
"""Where a record is: topic, partition, offset."""


def _position(entry: Labeled) -> Position | None:
    record = entry.record
    if record.partition is None or record.offset is None:
        return None
    return record.topic, record.partition, record.offset


class Window:
    """The newest ``size`` labeled samples, oldest first; ``pending`` counts the newest ones no
    retraining decision has used yet (a failed retraining dead-letters exactly those).

    A record the window already holds (same topic, partition and offset) is not taken again:
    the trainer commits only with a decision, so a rebalance of its group makes its consumer
    read the uncommitted labels a second time, and counted twice they would bring the next
    retraining forward and weigh those samples double in it.
    """

    def __init__(self, size: int) -> None:
        self._entries: deque[Labeled] = deque(maxlen=size)
        self._pending = 0
        self._held: set[Position] = set()

    @property
    def pending(self) -> int:
        return min(self._pending, len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Labeled]:
        return iter(self._entries)

    def add(self, entry: Labeled) -> bool:
        """Take ``entry``; ``False`` (nothing changes) if its record is held already."""
        position = _position(entry)
        if position is not None and position in self._held:
            return False
        if len(self._entries) == self._entries.maxlen:
            self._forget([self._entries[0]])
        self._entries.append(entry)
        if position is not None:
            self._held.add(position)
        self._pending += 1
        return True

    def _forget(self, entries: list[Labeled]) -> None:
        for entry in entries:
            position = _position(entry)
            if position is not None:
                self._held.discard(position)

    def decided(self) -> None:
        """Every sample in the window has been part of a decision now."""
        self._pending = 0

    def drop(self, dropped: list[Labeled]) -> None:
        """Forget these samples (pending ones stop being pending)."""
        gone = {id(entry) for entry in dropped}
        fresh = list(self._entries)[len(self._entries) - self.pending :]
        self._pending = self.pending - sum(id(entry) in gone for entry in fresh)
        kept = [entry for entry in self._entries if id(entry) not in gone]
        self._forget(dropped)
        self._entries.clear()
        self._entries.extend(kept)

    def drop_pending(self) -> list[Labeled]:
        """Remove and return the pending samples, oldest first."""
        pending = [self._entries.pop() for _ in range(self.pending)]
        self._forget(pending)
        self._pending = 0
        return pending[::-1]

    def arrays(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Features (float64, in ``names`` order) and labels of every sample, oldest first."""
        samples = [entry.sample for entry in self._entries]
        x = np.array([[s.features[n] for n in names] for s in samples], dtype=np.float64)
        return x.reshape(-1, len(names)), np.array([s.true_label for s in samples], dtype=str)


def unlearnable(
    window: Window, base: Dataset, *, minimum: int, split: Split
) -> dict[str, list[Labeled]]:
    """The samples, by class, that training could not use: their class would have fewer than
    ``minimum`` rows in base data plus the training part of the window.

    Removing them changes the split, so the check repeats until it finds none (each round drops
    at least one sample, so it ends).
    """
    base_counts = Counter(str(label) for label in base.y)
    entries = list(window)
    found: dict[str, list[Labeled]] = {}
    while entries:
        train, _ = split(len(entries))
        counts = base_counts + Counter(entries[i].sample.true_label for i in train)
        short = {entry.sample.true_label for entry in entries} - {
            label for label, n in counts.items() if n >= minimum
        }
        if not short:
            break
        for entry in entries:
            if entry.sample.true_label in short:
                found.setdefault(entry.sample.true_label, []).append(entry)
        entries = [entry for entry in entries if entry.sample.true_label not in short]
    return found


def why_unlearnable(label: str, base: Dataset, *, minimum: int) -> str:
    """The error a left-out sample's dead letter carries."""
    return (
        f"class {label!r} would have fewer than the {minimum} rows training needs (base data "
        f"{base.source} has {base.class_counts().get(label, 0)}); add rows of it to the base "
        "data set, then replay"
    )
