"""Synthetic traffic: rows from the data set, optional drift, delayed and noisy labels.

Pure planning (no Kafka): :func:`plan_traffic` turns a seed and a scenario into the exact
requests and feedback to send, so a scenario is reproducible and unit-testable; the replay
module sends the plan at the requested rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from irisflow.errors import ConfigError
from producers.samples import Samples

__all__ = ["PlannedRequest", "Scenario", "plan_traffic"]


@dataclass(frozen=True)
class Scenario:
    count: int
    seed: int = 0
    drift_feature: str | None = None
    """Shift this feature's values by ``drift_shift`` standard deviations..."""
    drift_shift: float = 3.0
    drift_after: int = 0
    """...for every request from this index on."""
    feedback_rate: float = 0.0
    """Share of requests whose true label is sent as feedback."""
    label_noise: float = 0.0
    """Share of feedback that carries a wrong label (noisy annotators)."""
    label_delay: float = 0.0
    """Seconds between a request and its feedback."""


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    features: dict[str, float]
    true_label: str
    feedback_label: str | None
    drifted: bool


def _check(scenario: Scenario, samples: Samples) -> None:
    if scenario.drift_feature is not None and scenario.drift_feature not in samples.feature_names:
        raise ConfigError(
            f"--drift-feature {scenario.drift_feature!r} is not a feature of this data set "
            f"({', '.join(samples.feature_names)})"
        )
    for name in ("feedback_rate", "label_noise"):
        if not 0.0 <= getattr(scenario, name) <= 1.0:
            raise ConfigError(f"{name.replace('_', '-')} must be between 0 and 1")


def plan_traffic(samples: Samples, scenario: Scenario) -> Iterator[PlannedRequest]:
    """Requests drawn at random (seeded) from the data set, shaped by the scenario."""
    _check(scenario, samples)
    rng = np.random.default_rng(scenario.seed)
    labels = sorted(set(map(str, samples.labels)))
    drift_column = (
        samples.feature_names.index(scenario.drift_feature) if scenario.drift_feature else None
    )
    shift = 0.0
    if drift_column is not None:
        shift = scenario.drift_shift * float(samples.rows[:, drift_column].std())
    for index in range(scenario.count):
        row = int(rng.integers(len(samples.rows)))
        features = samples.features(row)
        drifted = drift_column is not None and index >= scenario.drift_after
        if drifted and scenario.drift_feature is not None:
            features[scenario.drift_feature] += shift
        truth = samples.label(row)
        feedback = None
        if rng.random() < scenario.feedback_rate:
            feedback = truth
            if len(labels) > 1 and rng.random() < scenario.label_noise:
                feedback = str(rng.choice([label for label in labels if label != truth]))
        yield PlannedRequest(index, features, truth, feedback, drifted)
