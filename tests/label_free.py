"""A drift scenario where the right answer is known, for judging the label-free estimate.

Resampling the few real rows of Iris (150) or wine (178) cannot move traffic far: weights that
favour the boundary between classes soon pick the same handful of rows (the ones the model
gets wrong), and the "realised accuracy" is then that handful's. So the scenario draws from a
stand-in of each example's data instead: one Gaussian per class, fitted to the real rows (mean
and covariance), mixed by the class frequencies. Its P(y|x) is known exactly (Bayes), rows are
unlimited, and a covariate shift can be made that keeps P(y|x) by construction: each row of a
large pool is drawn with a weight that depends on x only, ``exp(-strength * margin(x))``,
where ``margin`` is the gap between the two most likely classes of the true posterior, so a
stronger shift sends more traffic to the hard boundary between classes, and the realised
accuracy of any model falls.

The models are the trainer's (:func:`trainer.training.train_on` on the real example data with
the example's params): the calibration under test is the one a version is published with.
Used by tests/functional/irisflow/test_label_free_estimate.py and the README figure
(tools/label_free_figure.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy.stats import multivariate_normal

from irisflow.estimation import AccuracyEstimate
from irisflow.settings import load_settings
from trainer.data import Dataset, load_dataset
from trainer.training import TrainingOutcome, train_on

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"iris": ROOT / "params.yaml", "wine": ROOT / "examples" / "wine" / "params.yaml"}
"""The two shipped examples: Iris (the default params) and wine (examples/wine)."""


@cache
def example_data(example: str) -> Dataset:
    settings = load_settings(EXAMPLES[example], environ={})
    return load_dataset(settings.data, base_dir=settings.params_path.parent)


@cache
def train_example(example: str, algorithm: str | None = None) -> TrainingOutcome:
    """The trainer's outcome on the example's real data and params; ``algorithm`` narrows the
    candidates to that one (with the example's hyperparameters), ``None`` keeps them all.
    Cached: training is deterministic and callers only read the outcome."""
    settings = load_settings(EXAMPLES[example], environ={})
    training = settings.training
    if algorithm is not None:
        candidates = {algorithm: training.candidates[algorithm]}
        training = training.model_copy(update={"candidates": candidates})
    return train_on(example_data(example), training, show_progress=False)


class GaussianWorld:
    """One Gaussian per class, fitted to a data set; P(y|x) is the exact Bayes posterior."""

    def __init__(self, dataset: Dataset) -> None:
        self.labels = np.array(dataset.class_labels)
        self.dimensions = dimensions = dataset.X.shape[1]
        self.prior = np.array([np.mean(dataset.y == label) for label in self.labels])
        self._classes = []
        for label in self.labels:
            rows = dataset.X[dataset.y == label]
            covariance = np.cov(rows.T) + 1e-6 * np.eye(dimensions)
            self._classes.append(multivariate_normal(rows.mean(axis=0), covariance))

    def sample(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        classes = rng.choice(len(self.labels), size=count, p=self.prior)
        x = np.empty((count, self.dimensions))
        for k, dist in enumerate(self._classes):
            chosen = classes == k
            drawn = dist.rvs(size=int(chosen.sum()), random_state=rng)
            x[chosen] = np.reshape(drawn, (-1, self.dimensions))
        return x, self.labels[classes]

    def posterior(self, x: np.ndarray) -> np.ndarray:
        log = np.column_stack([dist.logpdf(x) for dist in self._classes]) + np.log(self.prior)
        log -= log.max(axis=1, keepdims=True)
        odds = np.exp(log)
        return np.asarray(odds / odds.sum(axis=1, keepdims=True))

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Gap between the two most likely classes: 0 on the boundary, 1 far from it."""
        top = np.sort(self.posterior(x), axis=1)
        return np.asarray(top[:, -1] - top[:, -2])


@dataclass(frozen=True)
class Window:
    """One full estimate window of streamed rows: what the estimate said, what was true."""

    strength: float
    estimate: float
    realised: float

    @property
    def error(self) -> float:
        return self.estimate - self.realised


class BoundaryShift:
    """Traffic drawn from a pool of the world's rows with weight ``exp(-strength * margin)``.

    The pool is drawn once (``pool`` rows) and reused for every strength, so one posterior
    evaluation serves the whole scenario; it is large enough that even the strongest shift
    used here leaves thousands of effective rows.
    """

    def __init__(self, world: GaussianWorld, *, pool: int, seed: int) -> None:
        self.x, self.y = world.sample(pool, np.random.default_rng(seed))
        self._margin = world.margin(self.x)

    def draw(
        self, count: int, strength: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        weights = np.exp(-strength * self._margin)
        rows = rng.choice(len(self.y), size=count, p=weights / weights.sum())
        return self.x[rows], self.y[rows]


@cache
def boundary_shift(example: str, *, pool: int = 100_000, seed: int = 11) -> BoundaryShift:
    """The boundary shift of an example's Gaussian stand-in (cached: drawing reads it only)."""
    return BoundaryShift(GaussianWorld(example_data(example)), pool=pool, seed=seed)


def stream(
    outcome: TrainingOutcome,
    shift: BoundaryShift,
    strengths: list[float],
    *,
    windows: int,
    window_rows: int,
    batch_rows: int = 50,
    seed: int = 0,
) -> list[Window]:
    """Stream ``windows`` windows of ``window_rows`` rows per strength through the version's
    :class:`~irisflow.estimation.AccuracyEstimate` in micro-batches, as a worker would; at each
    full window, compare the estimate with the accuracy of those same rows. The rows drawn
    depend on ``seed`` and the strength only (not on what was streamed before), so tests
    sharing a shift agree in any order."""
    found = []
    for strength in strengths:
        rng = np.random.default_rng([seed, round(strength * 1000)])
        estimate = AccuracyEstimate(outcome.calibration, window_rows)
        for _ in range(windows):
            x, y = shift.draw(window_rows, strength, rng)
            probabilities = outcome.model.predict_proba(x)
            confidences = probabilities.max(axis=1)
            for start in range(0, window_rows, batch_rows):
                estimate.update(confidences[start : start + batch_rows])
            realised = float(np.mean(outcome.model.classes_[probabilities.argmax(axis=1)] == y))
            assert estimate.full
            assert estimate.value is not None
            found.append(Window(strength, estimate.value, realised))
    return found
