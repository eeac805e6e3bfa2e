"""The Grafana dashboards: well-formed, built on template variables, and querying only metrics
that irisflow exports (their data is checked against a live Prometheus in
tests/integration/test_observability_prometheus.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import dashboards
from gateway.metrics import GatewayMetrics
from irisflow.settings import Settings
from streams.metrics import WorkerMetrics
from tests.conftest import ROOT
from trainer.metrics import TrainerMetrics

NAMES = ("overview", "drift", "rollout")
BUILT_IN = {"__rate_interval", "__interval", "__range", "datasource"}
SAMPLE = {
    "model_version": ["1", "2"],
    "feature": ["petal_length"],
    "__rate_interval": ["1m"],
    "__interval": ["15s"],
    "__range": ["1h"],
}


def _exported() -> set[str]:
    """Every sample name the worker, gateway and trainer expose."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for bundle in (WorkerMetrics.create(), GatewayMetrics.create(), TrainerMetrics.create()):
        for family in bundle.registry.collect():
            names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _rules_exprs() -> list[str]:
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _all_exprs(name: str) -> list[str]:
    dashboard = dashboards.load(name)
    exprs = [q.expr for q in dashboards.queries(dashboard, SAMPLE)]
    return exprs + [a.expr for a in dashboards.annotation_queries(dashboard)]


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_queries_prometheus_through_the_datasource_variable(name: str) -> None:
    dashboard = dashboards.load(name)
    assert dashboard["uid"] == f"irisflow-{name}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["description"], panel["title"]


@pytest.mark.parametrize("name", NAMES)
def test_every_variable_a_query_uses_is_defined(name: str) -> None:
    dashboard = dashboards.load(name)
    defined = {v.name for v in dashboards.variables(dashboard)} | BUILT_IN
    texts = [q.expr for q in dashboards.queries(dashboard, SAMPLE)]
    texts += [p["title"] for p in _panels(dashboard)]
    used = {m for text in texts for m in re.findall(r"\$\{?(\w+)", text)}
    assert used <= defined


def test_the_drift_dashboard_has_model_version_and_feature_variables() -> None:
    dashboard = dashboards.load("drift")
    by_name = {v.name: v for v in dashboards.variables(dashboard)}
    assert by_name["model_version"].label_query == ("irisflow_predictions_total", "model_version")
    selector, label = by_name["feature"].label_query
    assert label == "feature"
    # the input features only: not the "_prediction"/"_error_rate" statistics nor the
    # label-free estimate's "accuracy" (detector cbpe), which have no KS panel of their own
    assert selector == 'irisflow_drift_statistic{detector="ks", feature!~"_.*"}'
    assert by_name["feature"].multi
    assert by_name["feature"].include_all
    repeated = [p for p in _panels(dashboard) if p.get("repeat")]
    assert [p["repeat"] for p in repeated] == ["feature"]


def test_the_overview_has_a_model_version_variable() -> None:
    names = {v.name for v in dashboards.variables(dashboards.load("overview"))}
    assert "model_version" in names


@pytest.mark.parametrize("name", NAMES)
def test_no_panel_is_a_copy_for_one_feature_or_version(name: str) -> None:
    """Features and versions come from variables, never spelled out in a query."""
    features = Settings().data.feature_columns
    for expr in _all_exprs(name):
        assert not any(feature in expr for feature in features), expr
        assert not re.search(r'model_version=~?"\d', expr), expr


def test_a_repeated_panel_is_one_query_set_per_feature() -> None:
    values = {"feature": ["petal_length", "sepal_width"], "model_version": ["1"]}
    queries = dashboards.queries(dashboards.load("drift"), values)
    titles = {q.title for q in queries if q.bindings}
    assert titles == {"Drift on petal_length", "Drift on sepal_width"}


def test_the_drift_dashboard_marks_alarms_retrainings_and_swaps() -> None:
    names = {a.name for a in dashboards.annotation_queries(dashboards.load("drift"))}
    assert names == {"Drift alarms", "Retrainings", "Model swaps"}


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_a_dashboard_reads_is_exported_by_irisflow(name: str) -> None:
    read = set().union(*(dashboards.metric_names(expr) for expr in _all_exprs(name)))
    assert read - _exported() - set(dashboards.PENDING_METRICS) == set()


def test_the_rollout_dashboard_reads_every_rollout_metric_and_marks_each_decision() -> None:
    dashboard = dashboards.load("rollout")
    read = set().union(*(dashboards.metric_names(q.expr) for q in dashboards.queries(dashboard)))
    rollout = {name for name in _exported() if name.startswith("irisflow_rollout_")}
    assert rollout - read == set()
    assert "irisflow_shadow_scored_total" in read
    (decisions,) = dashboards.annotation_queries(dashboard)
    assert decisions.name == "Rollout decisions"
    assert dashboards.metric_names(decisions.expr) == {"irisflow_rollout_decisions_total"}
    assert "{{stage}}" in decisions.text


def test_every_metric_an_alert_reads_is_exported_by_irisflow() -> None:
    read = set().union(*(dashboards.metric_names(expr) for expr in _rules_exprs()))
    assert read - _exported() == set()


def test_a_pending_metric_that_now_exists_is_taken_off_the_list() -> None:
    """Once a metric in PENDING_METRICS is exported, its panels must be checked for data."""
    assert set(dashboards.PENDING_METRICS) & _exported() == set()


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (variables filled in) as a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install the Debian package prometheus (make test does)")
    rules = []
    for name in NAMES:
        for index, expr in enumerate(_all_exprs(name)):
            filled = dashboards.interpolate(expr, SAMPLE, {k: v[0] for k, v in SAMPLE.items()})
            rules.append({"record": f"irisflow:{name}_{index}", "expr": filled})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


def test_interpolation_is_grafanas_for_one_value_and_for_all() -> None:
    expr = 'x{model_version=~"$model_version"}[$__rate_interval]'
    intervals = {"__rate_interval": "1m"}
    one = dashboards.interpolate(expr, {"model_version": ["3"]}, intervals)
    assert one == 'x{model_version=~"3"}[1m]'
    both = dashboards.interpolate(expr, {"model_version": ["3", "4"]}, intervals)
    assert both == 'x{model_version=~"(3|4)"}[1m]'
    assert dashboards.interpolate("${feature}", {"feature": ["a.b"]}, {}) == "a\\\\.b"


def test_metric_names_ignores_labels_and_ranges() -> None:
    expr = 'sum by (le) (rate(irisflow_x_bucket{route="irisflow_not"}[5m])) / irisflow_y'
    assert dashboards.metric_names(expr) == {"irisflow_x_bucket", "irisflow_y"}
