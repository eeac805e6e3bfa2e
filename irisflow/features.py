"""Which feature vectors a model can take: the names it was trained on, and values it can compute.

One rule, used by the gateway (HTTP 422 naming the field), the scoring workers (an error answer
and a dead letter) and the trainer (labeled samples it will not learn from). Two checks:

* names: exactly the model's features, none missing, none unknown;
* domain: every value representable in float32 (tree ensembles compute in float32, and
  ``1e39`` turns into infinity there) and, when the model has reference statistics, no farther
  from the training mean than ``max_reference_std`` training standard deviations. Values that far
  out are refused rather than scored and flagged: a model's answer there is extrapolation
  nobody should act on, and the same value in a labeled sample can break retraining. Ordinary
  drift (a few standard deviations) stays well inside the limit, so the drift detectors still
  see it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from irisflow.schemas import FeatureStats

__all__ = ["FLOAT32_MAX", "FeatureProblem", "FeatureSchema"]

FLOAT32_MAX = float(np.finfo(np.float32).max)
_MOST_NAMED = 10


@dataclass(frozen=True)
class FeatureProblem:
    """One bad field: ``field`` is a dotted path (``features.petal_width``)."""

    field: str
    message: str
    kind: str  # "missing", "unknown" or "domain"


def _scale(stats: FeatureStats) -> float:
    """A feature's spread; a constant training column falls back to its magnitude (or 1)."""
    if stats.std > 0:
        return stats.std
    return max(abs(stats.mean), 1.0)


class FeatureSchema:
    """A model's features in order, with the range of values it accepts."""

    def __init__(
        self,
        names: Sequence[str],
        reference: Mapping[str, FeatureStats] | None = None,
        *,
        max_reference_std: float | None = None,
    ) -> None:
        self.names = list(names)
        self.name_set = frozenset(self.names)
        reference = reference or {}
        self._limit = max_reference_std
        self._stats = {n: reference[n] for n in self.names if n in reference}
        self._ranged = bool(self._stats) and max_reference_std is not None
        # One column per feature; a feature without statistics gets NaN, which no comparison
        # flags, so the vectorized check and the per-value one apply the same rule.
        nan = float("nan")
        self._means = np.array(
            [self._stats[n].mean if n in self._stats else nan for n in self.names]
        )
        self._scales = np.array(
            [_scale(self._stats[n]) if n in self._stats else nan for n in self.names]
        )

    def name_problems(self, features: Mapping[str, object], prefix: str) -> list[FeatureProblem]:
        """Missing and unknown names, at most ten of each kind named (then a count)."""
        if features.keys() == self.name_set:
            return []
        expected = ", ".join(self.names)
        problems = [
            FeatureProblem(f"{prefix}.{name}", "Field required", "missing")
            for name in self.names
            if name not in features
        ]
        unknown = [name for name in features if name not in self.name_set]
        problems += [
            FeatureProblem(
                f"{prefix}.{name[:64]}", f"Unknown feature; the model expects {expected}", "unknown"
            )
            for name in sorted(unknown[: _MOST_NAMED * 10])[:_MOST_NAMED]
        ]
        if len(unknown) > _MOST_NAMED:
            problems.append(
                FeatureProblem(
                    prefix, f"and {len(unknown) - _MOST_NAMED} more unknown features", "unknown"
                )
            )
        return problems

    def value_problem(self, name: str, value: float) -> str | None:
        """Why ``value`` is outside what the model takes for ``name``, or ``None``."""
        if not abs(value) <= FLOAT32_MAX:
            return f"{value!r} is not a finite float32 number (the model computes in float32)"
        stats = self._stats.get(name)
        if stats is None or self._limit is None:
            return None
        if abs(value - stats.mean) > self._limit * _scale(stats):
            return (
                f"{value!r} is more than {self._limit:g} training standard deviations from the "
                f"training mean ({stats.mean:.4g} ± {stats.std:.4g}); "
                "see features.max_reference_std"
            )
        return None

    def problems(self, features: Mapping[str, float], prefix: str) -> list[FeatureProblem]:
        """Every problem with one feature vector: names first, then values of known names."""
        problems = self.name_problems(features, prefix)
        for name in self.names:
            if name in features:
                message = self.value_problem(name, features[name])
                if message is not None:
                    problems.append(FeatureProblem(f"{prefix}.{name}", message, "domain"))
        return problems

    def describe(self, problems: Sequence[FeatureProblem]) -> str:
        return "; ".join(f"{p.field}: {p.message}" for p in problems)

    def out_of_domain(self, matrix: np.ndarray) -> np.ndarray:
        """One bool per row (columns in model order): any value the model cannot take."""
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~(np.abs(matrix) <= FLOAT32_MAX)
            if self._ranged and self._limit is not None and matrix.shape[1] == len(self._means):
                bad |= np.abs(matrix - self._means) > self._limit * self._scales
        result: np.ndarray = bad.any(axis=1)
        return result

    def row_problem(self, row: Sequence[float], prefix: str) -> str:
        """The first out-of-domain value of a row, described (for an error answer)."""
        for name, value in zip(self.names, row, strict=False):
            message = self.value_problem(name, float(value))
            if message is not None:
                return f"{prefix}.{name}: {message}"
        return f"{prefix}: a value is outside the model's domain"
