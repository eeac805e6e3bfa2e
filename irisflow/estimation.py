"""Label-free accuracy estimate (CBPE-style) from a model's calibrated top-class probabilities.

Labels arrive late or never, but every scored row carries the model's top-class probability.
If those probabilities were calibrated, their mean would be the expected accuracy; raw
``predict_proba`` output usually is not (a random forest is underconfident, an SVM's sigmoid
overconfident), so the trainer fits a :class:`~irisflow.schemas.Calibration`: how often the
top class was right at each confidence, from out-of-fold cross-validation predictions of the
whole training set. The estimate of a window of live rows is then the mean of the calibrated
confidences (confidence-based performance estimation, CBPE, for accuracy).

What it can see: a shift of the inputs that keeps P(y|x) (traffic moving toward the hard
boundary between classes lowers the confidences, and the estimate falls with the realised
accuracy). What it cannot see: a change of P(y|x) itself (concept drift) or inputs pushed
where the model is confidently wrong (a feature biased by several standard deviations): the
confidences stay high, so the estimate does too. Such drift is for the feature detectors and,
once labels arrive, the measured accuracy.

Core module: numpy and scikit-learn only, so workers, the rollout controller and the trainer
share one implementation and a calibration travels as plain numbers (no pickles).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.isotonic import IsotonicRegression

from irisflow.schemas import Calibration

__all__ = [
    "CV_ACCURACY",
    "DEFAULT_MAX_KNOTS",
    "AccuracyEstimate",
    "calibrated",
    "expected_accuracy",
    "fit_calibration",
    "top_confidences",
]

CV_ACCURACY = "cv_accuracy"
"""Key in ``ModelMetadata.metrics``: accuracy of the out-of-fold predictions of the whole training
set, the ones the calibration is fitted on. An isotonic map keeps the mean, so it is also the
estimate on traffic like the training data: the baseline a falling estimate is compared with."""

DEFAULT_MAX_KNOTS = 50
"""Knots kept of the isotonic map: a few hundred bytes in every model update, and finer steps
than a few hundred calibration rows can support anyway."""


def top_confidences(probabilities: ArrayLike) -> np.ndarray:
    """The top-class probability of each row of a ``predict_proba`` matrix."""
    matrix = np.asarray(probabilities, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] < 1:
        raise ValueError(f"expected a matrix of class probabilities, got shape {matrix.shape}")
    return np.asarray(matrix.max(axis=1), dtype=float)


def _confidences(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(array).all():
        raise ValueError("confidences must be finite numbers")
    # predict_proba may exceed 1 by a rounding error; the map's domain is [0, 1].
    return np.asarray(np.clip(array, 0.0, 1.0), dtype=float)


def fit_calibration(
    confidences: ArrayLike, correct: ArrayLike, *, max_knots: int = DEFAULT_MAX_KNOTS
) -> Calibration:
    """The isotonic map from top-class probability to the chance that the top class is right.

    ``confidences`` and ``correct`` (booleans) come from predictions the model did not train on
    (out-of-fold). The isotonic regression is evaluated at its own breakpoints, or, when it has
    more than ``max_knots``, at ``max_knots`` quantiles of the confidences (the map is monotone,
    so interpolating between any of its points keeps it monotone). Degenerate inputs still give
    a valid map: a single distinct confidence, or all rows right (or all wrong), is a constant
    map over [0, 1] (what the isotonic fit says outside its data too).
    """
    if max_knots < 2:
        raise ValueError(f"max_knots must be at least 2, got {max_knots}")
    x = _confidences(confidences)
    y = np.asarray(correct, dtype=float).reshape(-1)
    if x.size == 0:
        raise ValueError("a calibration needs at least one prediction")
    if x.size != y.size:
        raise ValueError(f"{x.size} confidences but {y.size} correctness values")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("correct must hold booleans (1 right, 0 wrong)")
    regression = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    regression.fit(x, y)
    knots = np.asarray(regression.X_thresholds_, dtype=float)
    if knots.size > max_knots:
        knots = np.unique(np.quantile(x, np.linspace(0.0, 1.0, max_knots)))
    accuracy = np.clip(np.asarray(regression.predict(knots), dtype=float), 0.0, 1.0)
    if knots.size < 2:
        knots = np.array([0.0, 1.0])
        accuracy = np.repeat(accuracy[:1] if accuracy.size else [float(y.mean())], 2)
    # Rounding errors of the pool-adjacent-violators fit must not break monotonicity.
    accuracy = np.maximum.accumulate(accuracy)
    return Calibration(
        confidence=[float(v) for v in knots],
        accuracy=[float(v) for v in accuracy],
        samples=int(x.size),
    )


def calibrated(calibration: Calibration | None, confidences: ArrayLike) -> np.ndarray:
    """Each row's chance of being right: ``confidences`` through the calibration map.

    Outside the knots the map is flat (the nearest knot's accuracy). Without a calibration
    (``None``: versions trained before calibrations existed) the raw confidence is returned,
    i.e. the model's probabilities are taken at their word; for overconfident models that
    overstates the accuracy, which is why the trainer always fits one now.
    """
    values = _confidences(confidences)
    if calibration is None:
        return values
    return np.asarray(np.interp(values, calibration.confidence, calibration.accuracy), dtype=float)


def expected_accuracy(calibration: Calibration | None, confidences: ArrayLike) -> float:
    """Estimated accuracy of the rows whose top-class probabilities are ``confidences``.

    The mean of :func:`calibrated`; ``ValueError`` for no rows (there is nothing to estimate).
    """
    chances = calibrated(calibration, confidences)
    if chances.size == 0:
        raise ValueError("no confidences: the accuracy of no rows is undefined")
    return float(chances.mean())


class AccuracyEstimate:
    """The label-free accuracy estimate over the last ``window`` scored rows of one version.

    Memory is bounded: a ring of ``window`` calibrated chances. The mean is taken over the ring
    at each update (vectorized, microseconds for thousands of rows) rather than kept as a
    running sum, so no rounding error accumulates over the process's lifetime. ``value`` is
    ``None`` until a row has been seen; ``count`` is the number of rows behind it (at most
    ``window``); ``full`` says the window is full.
    """

    def __init__(self, calibration: Calibration | None, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 row, got {window}")
        self.calibration = calibration
        self.window = window
        self._ring = np.zeros(window, dtype=float)
        self._next = 0
        self._count = 0
        self._value: float | None = None

    def update(self, confidences: ArrayLike) -> float | None:
        """Add rows' top-class probabilities (oldest first); returns the new :attr:`value`."""
        chances = calibrated(self.calibration, confidences)[-self.window :]
        if chances.size:
            positions = (self._next + np.arange(chances.size)) % self.window
            self._ring[positions] = chances
            self._next = int(positions[-1] + 1) % self.window
            self._count = min(self.window, self._count + chances.size)
            self._value = float(self._ring[: self._count].mean())
        return self._value

    @property
    def value(self) -> float | None:
        return self._value

    @property
    def count(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count == self.window
