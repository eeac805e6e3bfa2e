"""The feature ranges in ``/openapi.json`` are the gateway's rule, to the last double.

Contract tests probe the documented bounds exactly: the maximum must be accepted and the next
double above it refused, or a client is told a value is valid and gets a 422 (or the reverse).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.feature_domain import accepted_range
from irisflow.features import FLOAT32_MAX, FeatureSchema
from irisflow.schemas import FeatureStats


def _schema(mean: float, std: float, limit: float | None = 100.0) -> FeatureSchema:
    stats = FeatureStats(mean=mean, std=std, min=mean - std, max=mean + std)
    return FeatureSchema(["x"], {"x": stats}, max_reference_std=limit)


def _ends_are_exact(schema: FeatureSchema, low: float, high: float) -> None:
    assert schema.value_problem("x", low) is None
    assert schema.value_problem("x", high) is None
    assert schema.value_problem("x", math.nextafter(low, -math.inf)) is not None
    assert schema.value_problem("x", math.nextafter(high, math.inf)) is not None


@given(
    mean=st.floats(-1e6, 1e6, allow_nan=False),
    std=st.floats(0.0, 1e4, allow_nan=False),
    limit=st.floats(0.5, 1000.0),
)
def test_both_ends_are_accepted_and_the_next_doubles_out_are_not(
    mean: float, std: float, limit: float
) -> None:
    schema = _schema(mean, std, limit)
    found = accepted_range(schema, "x", mean)
    assert found is not None
    _ends_are_exact(schema, *found)


def test_the_range_is_the_training_mean_plus_or_minus_the_limit_in_standard_deviations() -> None:
    found = accepted_range(_schema(5.8, 0.8, 100.0), "x", 5.8)
    assert found == pytest.approx((5.8 - 80.0, 5.8 + 80.0), abs=1e-12)


def test_without_statistics_the_range_is_float32() -> None:
    schema = FeatureSchema(["x"], None, max_reference_std=100.0)
    assert accepted_range(schema, "x", 0.0) == (-FLOAT32_MAX, FLOAT32_MAX)
    _ends_are_exact(schema, -FLOAT32_MAX, FLOAT32_MAX)


def test_a_seed_the_rule_refuses_gives_no_range() -> None:
    assert accepted_range(_schema(0.0, 1.0), "x", 1e6) is None
