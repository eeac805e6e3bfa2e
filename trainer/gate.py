"""The champion/challenger gate: a new model goes live only if it is not worse.

Both models are scored on the same recent labeled samples, held out from the challenger's
training; those samples come from live traffic, so the comparison is about the world as it is
now rather than the original data set. Pure: no Kafka, no framework.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

__all__ = ["MIN_HOLDOUT", "GateDecision", "judge", "split_recent"]

#: Fewer held-out labels than this cannot tell two models apart.
MIN_HOLDOUT = 10


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    reason: str
    challenger_score: float | None
    champion_score: float | None
    tolerance: float
    holdout_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _score(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(f1_score(y, model.predict(x), average="macro", zero_division=0))


def split_recent(
    count: int, *, holdout_fraction: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of recent samples for training and for the gate's holdout (seeded shuffle)."""
    order = np.random.default_rng(random_state).permutation(count)
    held = round(count * holdout_fraction)
    return np.sort(order[held:]), np.sort(order[:held])


def judge(
    challenger: Any,
    champion: Any | None,
    x_holdout: np.ndarray,
    y_holdout: np.ndarray,
    *,
    tolerance: float,
    manual: bool = False,
) -> GateDecision:
    """Promote when ``challenger`` macro-F1 >= ``champion`` macro-F1 - ``tolerance``."""
    size = len(y_holdout)
    if champion is None:
        score = _score(challenger, x_holdout, y_holdout) if size else None
        return GateDecision(True, "no model is live yet", score, None, tolerance, size)
    if size < MIN_HOLDOUT:
        reason = f"only {size} held-out labels (need {MIN_HOLDOUT}) to compare"
        if manual:
            return GateDecision(
                True, reason + "; promoted on manual request", None, None, tolerance, size
            )
        return GateDecision(False, reason, None, None, tolerance, size)
    new = _score(challenger, x_holdout, y_holdout)
    old = _score(champion, x_holdout, y_holdout)
    if new >= old - tolerance:
        reason = f"challenger macro-F1 {new:.4f} >= champion {old:.4f} - {tolerance:g}"
        return GateDecision(True, reason, new, old, tolerance, size)
    reason = f"challenger macro-F1 {new:.4f} < champion {old:.4f} - {tolerance:g}"
    return GateDecision(False, reason, new, old, tolerance, size)
