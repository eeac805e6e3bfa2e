"""Draw the drift dashboard from a running Prometheus, without Grafana (``docs/img/drift.png``).

Each panel of ``deploy/grafana/dashboards/drift.json`` becomes a plot of its own queries over
the last minutes (a repeated panel once per feature), with the dashboard's annotations (drift
alarms, retrainings, model swaps) as vertical lines. With ``irisflow up`` running (it starts a
local Prometheus when the Debian package ``prometheus`` is installed) and drifted traffic::

    irisflow produce -n 6000 --rate 100 --feedback 1 --drift-feature petal_length \\
        --drift-shift 4 --drift-after 2000
    .venv/bin/python -m deploy.render_drift --minutes 10 --out docs/img/drift.png

The observability test (tests/integration/test_observability_prometheus.py) renders the same
picture from its own run.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from deploy import dashboards

__all__ = ["PrometheusClient", "main", "render"]

_ANNOTATION_COLOURS = {"Drift alarms": "tab:red", "Retrainings": "tab:purple"}
_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


class PrometheusClient:
    """The three calls of Prometheus's HTTP API that dashboards need."""

    def __init__(self, url: str, *, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {dict(params)}: {body.get('error', response.text)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query", {"query": expr})
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else []

    def query_range(
        self, expr: str, *, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        data = self._get(
            "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}
        )
        return list(data["result"])

    def label_values(self, selector: str | None, label: str) -> list[str]:
        if selector is None:
            return sorted(self._get(f"/api/v1/label/{label}/values", {}))
        series = self._get("/api/v1/series", {"match[]": selector})
        return sorted({s[label] for s in series if label in s})

    def resolve(self, dashboard: Mapping[str, Any]) -> dict[str, list[str]]:
        """Every query variable with all its current values (Grafana's "All")."""
        return {
            variable.name: self.label_values(*variable.label_query)
            for variable in dashboards.variables(dashboard)
        }


def _matches(patterns: Sequence[str], name: str) -> bool:
    return any(re.fullmatch(pattern, name) for pattern in patterns)


def _format(axis: Axes, unit: str) -> None:
    if unit == "percentunit":
        axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif unit == "s":
        axis.set_ylabel("seconds")


def _plot(
    axis: Axes,
    panel: Sequence[dashboards.Query],
    client: PrometheusClient,
    window: tuple[float, float, float],
    values: Mapping[str, Sequence[str]],
    intervals: Mapping[str, str],
) -> None:
    start, end, step = window
    right: Axes | None = None
    colours: dict[str, str] = {}
    for query in panel:
        chosen = {**values, **{k: [v] for k, v in query.bindings.items()}}
        expr = dashboards.interpolate(query.expr, chosen, intervals)
        for series in client.query_range(expr, start=start, end=end, step=step):
            name = dashboards.legend(query.legend, series["metric"]) or query.ref
            points = [(float(t), float(v)) for t, v in series["values"]]
            points = [(t, v) for t, v in points if math.isfinite(v)]
            if not points:
                continue
            target = axis
            if _matches(query.right_axis, name):
                right = right or axis.twinx()
                target = right
            # "predicted setosa" and "prior setosa" share a colour; thresholds are red
            key = re.sub(r"^(predicted|prior) ", "", name)
            colour = colours.setdefault(key, _PALETTE[len(colours) % len(_PALETTE)])
            dashed = _matches(query.dashed, name)
            if dashed and name.endswith("threshold"):
                colour = "tab:red"
            times = [(t - end) / 60 for t, _ in points]
            ys = [v for _, v in points]
            label = name.lstrip("_")  # matplotlib hides labels that start with "_"
            target.plot(
                times, ys, "--" if dashed else "-", color=colour, label=label, linewidth=1.6
            )
    handles, labels = axis.get_legend_handles_labels()
    if right is not None:
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if handles:
        axis.legend(handles, labels, fontsize=7, loc="upper left")
    else:
        axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)


def _annotate(
    axes: Sequence[Axes],
    client: PrometheusClient,
    dashboard: Mapping[str, Any],
    window: tuple[float, float, float],
) -> None:
    start, end, step = window
    for annotation in dashboards.annotation_queries(dashboard):
        colour = _ANNOTATION_COLOURS.get(annotation.name, "tab:blue")
        moments: set[float] = set()
        for series in client.query_range(annotation.expr, start=start, end=end, step=step):
            previous = None
            for t, _ in series["values"]:
                if previous is None or float(t) - previous > 2 * step:
                    moments.add(float(t))  # the first point of each run of points
                previous = float(t)
        for axis in axes:
            for moment in sorted(moments):
                axis.axvline((moment - end) / 60, color=colour, alpha=0.35, linewidth=1)


def render(
    client: PrometheusClient,
    out: Path,
    *,
    minutes: float,
    dashboard_name: str = "drift",
    end: float | None = None,
) -> Path:
    """Draw every timeseries panel of a dashboard over the last ``minutes`` into ``out``."""
    dashboard = dashboards.load(dashboard_name)
    values = client.resolve(dashboard)
    stop = end if end is not None else time.time()
    span = minutes * 60
    step = max(1.0, span / 240)
    window = (stop - span, stop, step)
    rate = f"{max(4 * step, 30):.0f}s"
    intervals = {"__rate_interval": rate, "__interval": f"{step:.0f}s", "__range": f"{span:.0f}s"}
    panels: dict[str, list[dashboards.Query]] = {}
    for query in dashboards.queries(dashboard, values):
        if query.kind == "timeseries":
            panels.setdefault(query.title, []).append(query)
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(16, 3.4 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    axes = [axis for line in grid for axis in line]
    for axis, (title, panel) in zip(axes, panels.items(), strict=False):
        _plot(axis, panel, client, window, values, intervals)
        axis.set_title(title, fontsize=10)
        _format(axis, panel[0].unit)
        axis.set_xlabel(f"minutes before {datetime.fromtimestamp(stop):%H:%M:%S}", fontsize=8)
        axis.grid(alpha=0.3)
    for axis in axes[len(panels) :]:
        axis.set_visible(False)
    _annotate(axes[: len(panels)], client, dashboard, window)
    figure.suptitle(
        f"{dashboard['title']}: vertical lines are drift alarms (red), retrainings (purple) "
        "and model swaps (blue)",
        fontsize=12,
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--dashboard", default="drift", help="drift or overview")
    parser.add_argument("--out", type=Path, default=Path("docs/img/drift.png"))
    args = parser.parse_args(argv)
    client = PrometheusClient(args.prometheus)
    path = render(client, args.out, minutes=args.minutes, dashboard_name=args.dashboard)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
