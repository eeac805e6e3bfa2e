"""The feedback join: predictions wait for their true label, for a while, keyed by request id.

Pure logic over a ``MutableMapping[bytes, bytes]`` (the Faust table's local store in a worker, a
dict in tests) plus a changelog callback, so it runs without faust. One entry per request id,
in one of three states:

* ``prediction``: scored, waiting for feedback (features, predicted label, model version, and
  during a rollout the other version that scored the request and its label);
* ``feedback``: the label came first (the client was quicker than the worker), waiting for the
  prediction, with the original feedback bytes kept for a dead letter;
* ``joined``: both met and a :class:`~irisflow.schemas.LabeledSample` was emitted; the entry is
  kept until it expires so that a redelivered feedback is recognised, not dead-lettered.

Every entry expires ``window_seconds`` after it was written. Expired predictions just leave
(most requests never get a label); expired unmatched feedback is dead-lettered with the reason.
Each entry records its partition (the partition of the request and of its feedback: the topics
are co-partitioned by request id), so the changelog write goes to the right changelog partition
whatever the event being processed, and a worker expires only the partitions it owns.

Entries live in the changelog across worker versions: a field added later (the shadow version
``sv`` and label ``sl``) is optional, so an entry written before it existed still joins.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from irisflow.schemas import Feedback, LabeledSample

__all__ = ["Expired", "FeedbackOutcome", "JoinWindow"]

log = logging.getLogger(__name__)

_KINDS = frozenset({"prediction", "feedback", "joined"})

Changelog = Callable[[bytes, bytes | None, int], None]
"""``(key, value or None for a delete, partition)``: mirror a local change to the changelog."""


@dataclass(frozen=True)
class FeedbackOutcome:
    kind: Literal["joined", "held", "duplicate"]
    sample: LabeledSample | None = None


@dataclass
class Expired:
    predictions: int = 0
    """Predictions that never got feedback (normal: most requests are never labeled)."""
    joined: int = 0
    unmatched: list[tuple[bytes, int, int | None, bytes, str]] = field(default_factory=list)
    """(key, partition, offset, original feedback bytes, why) for feedback that never found its
    prediction: the caller dead-letters them."""


class JoinWindow:
    """Joins predictions and feedback by request id within ``window_seconds``."""

    def __init__(
        self,
        data: MutableMapping[bytes, bytes],
        changelog: Changelog,
        *,
        window_seconds: float,
        feedback_topic: str,
    ) -> None:
        self._data = data
        self._changelog = changelog
        self.window_seconds = window_seconds
        self._feedback_topic = feedback_topic
        self._deadlines: deque[tuple[float, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._data)

    def _entry(self, key: bytes) -> dict[str, Any] | None:
        """The entry for ``key``; an unreadable one (a changelog written by a broken or older
        worker) is dropped rather than allowed to fail every event for that id."""
        raw = self._data.get(key)
        if raw is None:
            return None
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            entry = None
        if (
            not isinstance(entry, dict)
            or entry.get("k") not in _KINDS
            or not isinstance(entry.get("p"), int)
            or not isinstance(entry.get("t"), int | float)
        ):
            log.warning("join entry for %r is unreadable; dropped", key[:80])
            self._data.pop(key, None)
            return None
        return entry

    def drop(self, key: bytes, partition: int) -> None:
        """Forget ``key`` (its entry could not be used), here and in the changelog."""
        if key in self._data:
            self._delete(key, partition)

    def _put(self, key: bytes, entry: dict[str, Any], now: float) -> None:
        entry["t"] = now
        value = orjson.dumps(entry)
        self._data[key] = value
        self._changelog(key, value, entry["p"])
        self._deadlines.append((now + self.window_seconds, key))

    def _delete(self, key: bytes, partition: int) -> None:
        self._data.pop(key, None)
        self._changelog(key, None, partition)

    def on_prediction(
        self,
        key: bytes,
        *,
        features: dict[str, float],
        label: str,
        version: int,
        partition: int,
        now: float,
        shadow_version: int | None = None,
        shadow_label: str | None = None,
    ) -> LabeledSample | None:
        """Remember a scored request; if its feedback already waits, return the joined sample.

        ``shadow_version``/``shadow_label``: during a rollout, the other version that scored
        this request and its label (``None`` when it refused), so the labeled sample judges
        both versions on the same label."""
        entry = self._entry(key)
        prediction: dict[str, Any] = {
            "k": "prediction",
            "p": partition,
            "x": features,
            "l": label,
            "v": version,
        }
        if shadow_version is not None:
            prediction["sv"] = shadow_version
            prediction["sl"] = shadow_label
        if entry is not None and entry["k"] == "joined":
            return None  # a redelivered request: it was labeled already
        if entry is not None and entry["k"] == "feedback":
            self._put(key, {"k": "joined", "p": partition}, now)
            return _sample(key, prediction, entry["y"], entry["at"])
        self._put(key, prediction, now)
        return None

    def on_feedback(
        self,
        feedback: Feedback,
        *,
        raw: bytes,
        partition: int,
        offset: int | None,
        now: float,
    ) -> FeedbackOutcome:
        """Join feedback with its prediction, or hold it until the prediction comes (or not)."""
        key = feedback.request_id.encode()
        entry = self._entry(key)
        if entry is not None and entry["k"] == "joined":
            return FeedbackOutcome("duplicate")
        if entry is not None and entry["k"] == "prediction":
            self._put(key, {"k": "joined", "p": partition}, now)
            return FeedbackOutcome(
                "joined", _sample(key, entry, feedback.label, feedback.labeled_at)
            )
        held = {
            "k": "feedback",
            "p": partition,
            "o": offset,
            "y": feedback.label,
            "at": feedback.labeled_at,
            "raw": raw.decode(),
        }
        self._put(key, held, now)
        return FeedbackOutcome("duplicate" if entry is not None else "held")

    def expire(self, now: float, *, owned: Collection[int]) -> Expired:
        """Remove entries older than the window from the partitions this worker owns."""
        expired = Expired()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = self._deadlines.popleft()
            entry = self._entry(key)
            if entry is None or entry["t"] + self.window_seconds > now or entry["p"] not in owned:
                continue  # gone, rewritten later (a newer deadline follows), or not ours
            self._delete(key, entry["p"])
            if entry["k"] == "prediction":
                expired.predictions += 1
            elif entry["k"] == "joined":
                expired.joined += 1
            else:
                raw = str(entry.get("raw", "")).encode()
                expired.unmatched.append((key, entry["p"], entry.get("o"), raw, self._why(key)))
        return expired

    def rescan(self, *, owned: Collection[int]) -> None:
        """After a rebalance: forget partitions now owned elsewhere, schedule recovered entries."""
        deadlines = []
        for key in list(self._data):
            entry = self._entry(key)
            if entry is None:
                continue
            if entry["p"] in owned:
                deadlines.append((entry["t"] + self.window_seconds, key))
            else:
                del self._data[key]  # local only: the new owner has it from the changelog
        self._deadlines = deque(sorted(deadlines))

    def _why(self, key: bytes) -> str:
        return (
            f"feedback for request {key.decode(errors='replace')} found no prediction within "
            f"{self.window_seconds:g}s (unknown request id, or the prediction expired)"
        )


def _sample(key: bytes, prediction: dict[str, Any], label: str, labeled_at: float) -> LabeledSample:
    return LabeledSample(
        request_id=key.decode(),
        features=prediction["x"],
        true_label=label,
        predicted_label=prediction["l"],
        model_version=prediction["v"],
        labeled_at=labeled_at,
        shadow_version=prediction.get("sv"),
        shadow_label=prediction.get("sl"),
    )
