"""Batch feature checks: names per instance, values in one vectorized pass over the batch, and
the same 422 (fields, messages, order, cap) as checking each instance on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.bodies import FieldError
from gateway.errors import MOST_FIELDS, FeatureMismatch, capped
from gateway.input_checks import InputChecks
from gateway.model_versions import ModelHistory
from irisflow.features import FeatureSchema
from tests.conftest import SettingsFactory
from tests.factories import SETOSA, VIRGINICA, model_update


@pytest.fixture
def checks(make_settings: SettingsFactory, tmp_path: Path) -> InputChecks:
    settings = make_settings()
    history = ModelHistory("iris", tmp_path / "registry")
    history.make_live(model_update(1))
    return InputChecks(
        history,
        default_features=settings.data.feature_columns,
        max_reference_std=settings.features.max_reference_std,
    )


def _per_instance(checks: InputChecks, instances: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The reference rule: every instance checked alone, in order, cut after the cap."""
    schema = checks.feature_schema()
    problems: list[tuple[str, str]] = []
    for i, features in enumerate(instances):
        problems += [(p.field, p.message) for p in schema.problems(features, f"instances.{i}")]
        if len(problems) > MOST_FIELDS:
            break
    return problems


def _refused(checks: InputChecks, instances: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The fields of the 422 the client would get (capped as the error handler caps them)."""
    with pytest.raises(FeatureMismatch) as caught:
        checks.check_instances(instances)
    return [(f.field, f.message) for f in capped(list(caught.value.fields))]


@pytest.fixture
def value_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the values checked one at a time (in Python) from now on."""
    calls: list[str] = []
    original = FeatureSchema.value_problem

    def counted(self: FeatureSchema, name: str, value: float) -> str | None:
        calls.append(name)
        return original(self, name, value)

    monkeypatch.setattr(FeatureSchema, "value_problem", counted)
    return calls


def test_a_valid_batch_checks_its_values_without_a_python_loop_per_value(
    checks: InputChecks, value_checks: list[str]
) -> None:
    calls = value_checks
    checks.check_instances([SETOSA, VIRGINICA] * 500)
    assert calls == []


def test_only_the_bad_rows_are_described(checks: InputChecks, value_checks: list[str]) -> None:
    calls = value_checks
    instances = [SETOSA] * 999 + [{**SETOSA, "petal_width": 1e39}]
    assert _refused(checks, instances)[0][0] == "instances.999.petal_width"
    assert len(calls) == len(SETOSA)


@pytest.mark.parametrize(
    "instances",
    [
        [SETOSA, {**SETOSA, "sepal_width": 1e39}],
        [{**SETOSA, "colour": 1.0}, {**SETOSA, "petal_width": 500.0}, SETOSA],
        [{**SETOSA, "petal_width": -1e39, "sepal_length": 1e39}, {"sepal_length": 5.0}],
        [{**SETOSA, "petal_width": 500.0}] * 30,
        [{**SETOSA, "colour": 1.0}, {**SETOSA, "petal_width": 500.0}] * 15,
        [{k: v for k, v in SETOSA.items() if k != "sepal_width"}] * 3 + [{**SETOSA, "x": 1}],
    ],
)
def test_a_batch_is_refused_exactly_as_its_instances_would_be_one_by_one(
    checks: InputChecks, instances: list[dict[str, Any]]
) -> None:
    expected = [FieldError(field=f, message=m) for f, m in _per_instance(checks, instances)]
    assert _refused(checks, instances) == [(f.field, f.message) for f in capped(expected)]
