"""Live accuracy and macro-F1 per model version over the last N labeled samples.

Pure and incremental: per version a window of (true, predicted) pairs plus per-class counts of
true positives, false positives and false negatives, updated as samples enter and leave, so a
reading costs O(classes) whatever the window. Macro-F1 averages over the classes present in
the window (as ``sklearn.metrics.f1_score(average="macro")`` does).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

__all__ = ["LiveQuality", "RollingScore"]


@dataclass
class RollingScore:
    """Accuracy and macro-F1 over the last ``size`` (true, predicted) pairs."""

    size: int
    _pairs: deque[tuple[str, str]] = field(init=False)
    _tp: Counter[str] = field(default_factory=Counter, init=False)
    _fp: Counter[str] = field(default_factory=Counter, init=False)
    _fn: Counter[str] = field(default_factory=Counter, init=False)

    def __post_init__(self) -> None:
        self._pairs = deque(maxlen=self.size)

    def __len__(self) -> int:
        return len(self._pairs)

    def _count(self, true: str, predicted: str, step: int) -> None:
        if true == predicted:
            self._tp[true] += step
        else:
            self._fn[true] += step
            self._fp[predicted] += step

    def update(self, true: str, predicted: str) -> None:
        if len(self._pairs) == self.size:
            self._count(*self._pairs[0], -1)
        self._pairs.append((true, predicted))
        self._count(true, predicted, 1)

    @property
    def accuracy(self) -> float:
        return sum(self._tp.values()) / len(self._pairs) if self._pairs else 0.0

    @property
    def f1_macro(self) -> float:
        classes = [c for c in {*self._tp, *self._fp, *self._fn} if self._support(c)]
        if not classes:
            return 0.0
        scores = [2 * self._tp[c] / (2 * self._tp[c] + self._fp[c] + self._fn[c]) for c in classes]
        return sum(scores) / len(scores)

    def _support(self, label: str) -> int:
        return self._tp[label] + self._fp[label] + self._fn[label]


class LiveQuality:
    """A :class:`RollingScore` per model version, for the ``versions`` most recently labeled."""

    def __init__(self, *, window: int, versions: int = 3) -> None:
        self.window = window
        self.versions = versions
        self.scores: dict[int, RollingScore] = {}

    def update(self, version: int, true: str, predicted: str) -> list[int]:
        """Add one sample; return versions dropped to stay within ``versions`` (for gauges)."""
        score = self.scores.pop(version, None)
        if score is None:
            score = RollingScore(self.window)
        self.scores[version] = score  # most recently updated last
        score.update(true, predicted)
        dropped = list(self.scores)[: -self.versions]
        for old in dropped:
            del self.scores[old]
        return dropped
