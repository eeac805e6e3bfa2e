"""The live comparison of champion and candidate during one rollout, from records alone.

Fed the rollout's shadow predictions (each one request both versions scored: the answer the
client got and the one it did not) and the labeled samples the join emits for those requests,
it keeps, per version: rows scored and answers served, refusals, agreement with the champion,
predicted-class mix (and its PSI against the version's training prior), confidences, the
worker's scoring time, realised accuracy and macro-F1 once labels arrive, and the label-free
estimate (expected accuracy from calibrated confidences) before they do.

Both versions are counted on the same requests (only paired ones), so a difference is the
models', not the traffic's. Records arrive at least once (a worker that dies re-answers up to a
commit interval), so both streams are deduplicated by request id; memory stays bounded by
:data:`MAX_REMEMBERED` ids and :data:`MAX_LATENCIES` timings per version, whatever the traffic.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from irisflow.estimation import calibrated
from irisflow.schemas import (
    LabeledSample,
    ModelMetadata,
    ShadowPrediction,
    VersionReading,
)

__all__ = ["MAX_LATENCIES", "MAX_REMEMBERED", "RolloutEvaluation"]

MAX_REMEMBERED = 200_000
"""Request ids remembered per stream for deduplication (oldest forgotten first)."""
MAX_LATENCIES = 2_000
"""Scoring times kept per version for the latency percentiles."""
ESTIMATE_WINDOW = 2_000
"""Rows behind each version's label-free estimate (recent traffic, not the whole rollout)."""
_BINS = 10
_PSI_FLOOR = 1e-4


class _Seen:
    """A bounded set of request ids, oldest forgotten first."""

    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def add(self, request_id: str) -> bool:
        """``False`` if ``request_id`` was seen already (a duplicate)."""
        if request_id in self._ids:
            return False
        self._ids[request_id] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True


@dataclass
class _Tally:
    """One version's counts during the rollout."""

    metadata: ModelMetadata
    scored: int = 0
    served: int = 0
    errors: int = 0
    requests: int = 0
    agreeing: int = 0
    compared: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * _BINS)
    confidence_sum: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_LATENCIES))
    estimates: deque[float] = field(default_factory=lambda: deque(maxlen=ESTIMATE_WINDOW))
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)
    labeled: int = 0

    def rows(self, labels: Sequence[str], confidences: Sequence[float], seconds: float) -> None:
        self.requests += 1
        self.scored += len(labels)
        for label in labels:
            self.classes[label] = self.classes.get(label, 0) + 1
        for value in confidences:
            self.histogram[min(_BINS - 1, max(0, int(value * _BINS)))] += 1
            self.confidence_sum += value
        if confidences:
            self.estimates.extend(
                calibrated(self.metadata.calibration, np.asarray(confidences)).tolist()
            )
        self.latencies.append(seconds)

    def label(self, true: str, predicted: str) -> None:
        self.labeled += 1
        self.confusion[(true, predicted)] = self.confusion.get((true, predicted), 0) + 1

    def accuracy(self) -> float | None:
        if not self.labeled:
            return None
        right = sum(n for (true, predicted), n in self.confusion.items() if true == predicted)
        return right / self.labeled

    def macro_f1(self) -> float | None:
        if not self.labeled:
            return None
        classes = {c for pair in self.confusion for c in pair}
        scores = []
        for c in sorted(classes):
            tp = self.confusion.get((c, c), 0)
            fp = sum(n for (t, p), n in self.confusion.items() if p == c and t != c)
            fn = sum(n for (t, p), n in self.confusion.items() if t == c and p != c)
            scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        return sum(scores) / len(scores)

    def class_psi(self) -> float | None:
        """PSI of the predicted-class mix against the training prior (``None`` without one)."""
        prior = self.metadata.class_prior
        if not self.scored or not prior:
            return None
        psi = 0.0
        for label in set(prior) | set(self.classes):
            expected = max(prior.get(label, 0.0), _PSI_FLOOR)
            actual = max(self.classes.get(label, 0) / self.scored, _PSI_FLOOR)
            psi += (actual - expected) * math.log(actual / expected)
        return psi

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(np.asarray(self.latencies), q)) if self.latencies else None


class RolloutEvaluation:
    """Champion and candidate of rollout ``rollout_id``, compared on the requests both scored."""

    def __init__(
        self, rollout_id: str, *, champion: ModelMetadata, candidate: ModelMetadata
    ) -> None:
        self.rollout_id = rollout_id
        self.champion = _Tally(champion)
        self.candidate = _Tally(candidate)
        self._shadows = _Seen(MAX_REMEMBERED)
        self._labels = _Seen(MAX_REMEMBERED)
        self.ignored = 0
        """Records of another rollout or versions (an earlier rollout's stragglers)."""

    def _tally(self, version: int) -> _Tally | None:
        if version == self.candidate.metadata.version:
            return self.candidate
        if version == self.champion.metadata.version:
            return self.champion
        return None

    def add_shadow(self, record: ShadowPrediction) -> bool:
        """Count one paired request; ``False`` when it is not this rollout's or a duplicate."""
        other, served = self._tally(record.version), self._tally(record.served_version)
        if (
            record.rollout_id != self.rollout_id
            or other is None
            or served is None
            or other is served
        ):
            self.ignored += 1
            return False
        if not self._shadows.add(record.request_id):
            return False
        if record.served_error is None:
            served.rows(record.served_labels, record.served_confidences, record.served_seconds)
            served.served += len(record.served_labels)
        else:
            served.errors += 1
            served.requests += 1
        if record.error is None:
            other.rows(record.labels, record.confidences, record.seconds)
        else:
            other.errors += 1
            other.requests += 1
        if record.error is None and record.served_error is None:
            candidate_labels, champion_labels = (
                (record.labels, record.served_labels)
                if other is self.candidate
                else (record.served_labels, record.labels)
            )
            same = sum(a == b for a, b in zip(candidate_labels, champion_labels, strict=False))
            compared = min(len(candidate_labels), len(champion_labels))
            for tally in (self.candidate, self.champion):
                tally.agreeing += same
                tally.compared += compared
        return True

    def add_labeled(self, sample: LabeledSample) -> bool:
        """Count one labeled paired request for both versions; ``False`` when not paired here."""
        if sample.shadow_version is None or sample.model_version is None:
            return False
        served, other = self._tally(sample.model_version), self._tally(sample.shadow_version)
        if served is None or other is None or served is other:
            return False
        if sample.predicted_label is None or sample.shadow_label is None:
            return False
        if not self._labels.add(sample.request_id):
            return False
        served.label(sample.true_label, sample.predicted_label)
        other.label(sample.true_label, sample.shadow_label)
        return True

    def reading(self, role: str) -> VersionReading:
        tally = self.candidate if role == "candidate" else self.champion
        estimates = tally.estimates
        return VersionReading(
            version=tally.metadata.version,
            role="candidate" if role == "candidate" else "champion",
            scored=tally.scored,
            served=tally.served,
            errors=tally.errors,
            agreement=tally.agreeing / tally.compared if tally.compared else None,
            class_mix={
                label: count / tally.scored for label, count in sorted(tally.classes.items())
            }
            if tally.scored
            else {},
            class_psi=tally.class_psi(),
            confidence_mean=tally.confidence_sum / tally.scored if tally.scored else None,
            confidence_histogram=list(tally.histogram),
            latency_p50_seconds=tally.percentile(50),
            latency_p99_seconds=tally.percentile(99),
            labeled=tally.labeled,
            accuracy=tally.accuracy(),
            macro_f1=tally.macro_f1(),
            estimated_accuracy=sum(estimates) / len(estimates) if estimates else None,
            estimated_samples=len(estimates),
        )

    def readings(self) -> list[VersionReading]:
        """Champion first, then candidate."""
        return [self.reading("champion"), self.reading("candidate")]
