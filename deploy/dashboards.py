"""Read the Grafana dashboards in this folder as Prometheus queries, the way Grafana runs them.

The observability test evaluates every panel's query against a real Prometheus, and
``deploy/render_drift.py`` draws the drift panels without Grafana; both need what Grafana does
before it sends a query: expand repeated panels (one per value of their variable), resolve the
template variables (``label_values(...)``) and interpolate them (a multi-value variable becomes
the regex ``(a|b)``), and replace the built-in intervals (``$__rate_interval``...).
Pure: reading the JSON and the text substitution do no I/O beyond the file itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DASHBOARDS",
    "PENDING_METRICS",
    "Annotation",
    "Query",
    "Variable",
    "annotation_queries",
    "interpolate",
    "legend",
    "load",
    "metric_names",
    "queries",
    "variables",
]

DASHBOARDS = Path(__file__).resolve().parent / "grafana" / "dashboards"
#: Metrics the dashboards already query that no irisflow process exports yet, with what they
#: should be. Their panels show "No data" until then; the tests check everything else.
PENDING_METRICS: dict[str, str] = {}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class Variable:
    name: str
    query: str
    multi: bool
    include_all: bool

    @property
    def label_query(self) -> tuple[str | None, str]:
        """(series selector or None, label) of a ``label_values(...)`` query."""
        match = _LABEL_VALUES.match(self.query)
        if match is None:
            raise ValueError(f"variable {self.name}: unsupported query {self.query!r}")
        return match.group("selector"), match.group("label")


@dataclass(frozen=True)
class Query:
    """One target of one panel (of one repetition of a repeated panel)."""

    panel: str
    ref: str
    expr: str
    legend: str
    bindings: Mapping[str, str]
    """Variables fixed for this repetition (a repeated panel's variable), else empty."""
    kind: str = "timeseries"
    unit: str = ""
    dashed: tuple[str, ...] = ()
    """Regexes of the series names drawn dashed (thresholds, priors)."""
    right_axis: tuple[str, ...] = ()
    """Regexes of the series names drawn on a second y axis."""

    @property
    def title(self) -> str:
        return interpolate(self.panel, {k: [v] for k, v in self.bindings.items()}, {})


@dataclass(frozen=True)
class Annotation:
    name: str
    expr: str
    text: str


def load(name: str) -> dict[str, Any]:
    """A dashboard of this folder by file stem: ``overview``, ``drift`` or ``rollout``."""
    loaded: dict[str, Any] = json.loads((DASHBOARDS / f"{name}.json").read_text("utf-8"))
    return loaded


def variables(dashboard: Mapping[str, Any]) -> list[Variable]:
    """The dashboard's query variables (the data source variable is not a query)."""
    found = []
    for item in dashboard.get("templating", {}).get("list", []):
        if item.get("type") != "query":
            continue
        query = item.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        found.append(
            Variable(item["name"], text, bool(item.get("multi")), bool(item.get("includeAll")))
        )
    return found


def _panels(items: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for item in items:
        if item.get("type") == "row":
            yield from _panels(item.get("panels", []))
        else:
            yield item


def _overridden(panel: Mapping[str, Any], prop: str) -> tuple[str, ...]:
    """The series regexes whose override sets ``prop``."""
    found = []
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        props = {p.get("id") for p in override.get("properties", [])}
        if matcher.get("id") == "byRegexp" and prop in props:
            found.append(str(matcher.get("options", "")))
    return tuple(found)


def queries(
    dashboard: Mapping[str, Any], values: Mapping[str, Sequence[str]] | None = None
) -> list[Query]:
    """Every target of every panel; a panel repeated over a variable once per value."""
    found = []
    for panel in _panels(dashboard.get("panels", [])):
        repeat = panel.get("repeat")
        runs: list[dict[str, str]] = [{}]
        if repeat:
            runs = [{repeat: value} for value in (values or {}).get(repeat, [])]
        for bindings in runs:
            for target in panel.get("targets", []):
                if target.get("expr") and not target.get("hide"):
                    found.append(
                        Query(
                            panel["title"],
                            target.get("refId", ""),
                            target["expr"],
                            target.get("legendFormat", ""),
                            bindings,
                            kind=panel.get("type", "timeseries"),
                            unit=panel.get("fieldConfig", {}).get("defaults", {}).get("unit", ""),
                            dashed=_overridden(panel, "custom.lineStyle"),
                            right_axis=_overridden(panel, "custom.axisPlacement"),
                        )
                    )
    return found


def annotation_queries(dashboard: Mapping[str, Any]) -> list[Annotation]:
    """Prometheus annotation queries (not Grafana's built-in one)."""
    return [
        Annotation(item["name"], item["expr"], item.get("textFormat", ""))
        for item in dashboard.get("annotations", {}).get("list", [])
        if item.get("expr")
    ]


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)


def interpolate(
    expr: str, values: Mapping[str, Sequence[str]], intervals: Mapping[str, str]
) -> str:
    """Grafana's substitution for Prometheus: one value as is, several as ``(a|b)``.

    >>> interpolate('x{f=~"$f"}[$__rate_interval]', {"f": ["a", "b"]}, {"__rate_interval": "1m"})
    'x{f=~"(a|b)"}[1m]'
    """

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name in intervals:
            return intervals[name]
        if name not in values:
            return match.group(0)
        chosen = list(values[name])
        if len(chosen) == 1:
            return _regex_escape(chosen[0])
        return "(" + "|".join(_regex_escape(v) for v in chosen) + ")"

    return _VARIABLE.sub(replace, expr)


def legend(template: str, labels: Mapping[str, str]) -> str:
    """A series' name from a ``legendFormat`` such as ``v{{model_version}}``."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def metric_names(expr: str) -> set[str]:
    """The irisflow metric names a query reads (used to say which metric a panel waits for)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    return {word for word in _IDENTIFIER.findall(without_ranges) if word.startswith("irisflow_")}
