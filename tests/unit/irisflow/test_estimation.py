"""The label-free accuracy estimate's core: the calibration map, its use, and the window.

Seeded synthetic predictions whose true chance of being right is known, so the map can be
checked against the truth and not only against itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from irisflow.estimation import (
    AccuracyEstimate,
    calibrated,
    expected_accuracy,
    fit_calibration,
    top_confidences,
)
from irisflow.schemas import Calibration


def _overconfident(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Confidences in [0.5, 1) of a model whose real chance of being right is ``2c - 1``
    (it says 0.9 when it is right 80% of the time)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.random(n) < 2 * confidence - 1
    return confidence, correct


def test_the_map_recovers_the_true_chance_of_an_overconfident_model() -> None:
    confidence, correct = _overconfident(20000)
    calibration = fit_calibration(confidence, correct)
    grid = np.linspace(0.55, 0.95, 9)
    assert np.abs(calibrated(calibration, grid) - (2 * grid - 1)).max() < 0.06
    assert calibration.samples == 20000
    assert calibration.method == "isotonic-oof"


def test_the_expected_accuracy_of_fresh_rows_is_their_realised_accuracy() -> None:
    calibration = fit_calibration(*_overconfident(5000, seed=1))
    confidence, correct = _overconfident(5000, seed=2)
    assert expected_accuracy(calibration, confidence) == pytest.approx(correct.mean(), abs=0.02)
    # The raw confidences overstate it by a quarter of the way to 1.
    assert expected_accuracy(None, confidence) - correct.mean() > 0.2


def test_the_map_is_bounded_to_max_knots_and_valid_for_the_schema() -> None:
    confidence, correct = _overconfident(20000)
    calibration = fit_calibration(confidence, correct, max_knots=12)
    assert 2 <= len(calibration.confidence) <= 12
    assert (np.diff(calibration.confidence) > 0).all()
    assert (np.diff(calibration.accuracy) >= 0).all()
    Calibration.model_validate(calibration.model_dump())
    # The map spans the data it was fitted on.
    assert calibration.confidence[0] == pytest.approx(confidence.min())
    assert calibration.confidence[-1] == pytest.approx(confidence.max())


def test_an_isotonic_map_with_few_breakpoints_keeps_them_exactly() -> None:
    confidence = np.array([0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    correct = np.array([0, 0, 1, 0, 1, 1], dtype=bool)
    calibration = fit_calibration(confidence, correct)
    assert calibrated(calibration, confidence).tolist() == pytest.approx(
        [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    )


@pytest.mark.parametrize(
    ("confidence", "correct", "expected"),
    [
        ([0.7, 0.8, 0.99], [True, True, True], 1.0),
        ([0.6, 0.9], [False, False], 0.0),
        ([1.0, 1.0, 1.0, 1.0], [True, True, False, True], 0.75),
        ([0.8], [True], 1.0),
    ],
    ids=["all-right", "all-wrong", "one-distinct-confidence", "one-row"],
)
def test_degenerate_inputs_give_a_valid_constant_map(
    confidence: list[float], correct: list[bool], expected: float
) -> None:
    calibration = fit_calibration(confidence, correct)
    assert len(calibration.confidence) >= 2
    assert calibrated(calibration, [0.0, 0.5, 1.0]).tolist() == pytest.approx([expected] * 3)


def test_a_confidence_rounding_past_one_is_clipped_not_refused() -> None:
    calibration = fit_calibration([0.5, 1.0 + 1e-12], [False, True])
    assert calibration.confidence[-1] == 1.0
    assert calibrated(calibration, [1.0 + 1e-12]).tolist() == [1.0]


@pytest.mark.parametrize(
    ("confidence", "correct", "message"),
    [
        ([], [], "at least one"),
        ([0.5, 0.6], [True], "2 confidences but 1"),
        ([0.5, float("nan")], [True, False], "finite"),
        ([0.5, 0.6], [1, 2], "booleans"),
    ],
)
def test_unusable_inputs_are_refused_with_the_reason(
    confidence: list[float], correct: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_calibration(confidence, correct)


def test_fewer_than_two_knots_is_refused() -> None:
    with pytest.raises(ValueError, match="max_knots"):
        fit_calibration([0.5, 0.6], [True, False], max_knots=1)


def test_the_map_is_flat_outside_its_knots() -> None:
    calibration = Calibration(confidence=[0.6, 0.9], accuracy=[0.5, 0.8], samples=10)
    assert calibrated(calibration, [0.3, 0.6, 0.75, 0.9, 1.0]).tolist() == pytest.approx(
        [0.5, 0.5, 0.65, 0.8, 0.8]
    )


def test_without_a_calibration_the_raw_confidence_is_the_estimate() -> None:
    assert calibrated(None, [0.9, 0.6]).tolist() == [0.9, 0.6]
    assert expected_accuracy(None, [0.9, 0.6]) == pytest.approx(0.75)


def test_the_accuracy_of_no_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="no confidences"):
        expected_accuracy(None, [])


def test_top_confidences_are_each_rows_largest_probability() -> None:
    assert top_confidences([[0.2, 0.8], [0.7, 0.3]]).tolist() == [0.8, 0.7]
    with pytest.raises(ValueError, match="matrix"):
        top_confidences([0.2, 0.8])


def test_the_window_estimate_is_the_mean_of_the_last_rows_only() -> None:
    calibration = Calibration(confidence=[0.5, 1.0], accuracy=[0.0, 1.0], samples=10)
    estimate = AccuracyEstimate(calibration, window=4)
    assert (estimate.value, estimate.count, estimate.full) == (None, 0, False)
    assert estimate.update([1.0, 1.0]) == pytest.approx(1.0)
    assert (estimate.count, estimate.full) == (2, False)
    assert estimate.update([0.5, 0.75, 0.75]) == pytest.approx((1.0 + 0 + 0.5 + 0.5) / 4)
    assert (estimate.count, estimate.full) == (4, True)
    # A batch longer than the window replaces it entirely.
    assert estimate.update([0.5] * 3 + [1.0] * 4) == pytest.approx(1.0)
    assert estimate.count == 4
    # An empty batch changes nothing.
    assert estimate.update([]) == pytest.approx(1.0)


def test_the_window_estimate_equals_the_batch_estimate_of_the_same_rows() -> None:
    calibration = fit_calibration(*_overconfident(3000, seed=5))
    confidence, _ = _overconfident(1000, seed=6)
    estimate = AccuracyEstimate(calibration, window=300)
    for start in range(0, 1000, 70):
        estimate.update(confidence[start : start + 70])
    assert estimate.value == pytest.approx(expected_accuracy(calibration, confidence[-300:]))


def test_a_window_of_no_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        AccuracyEstimate(None, window=0)
