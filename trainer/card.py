"""A model card per version: what a person reads before trusting a model.

The card is Markdown so it renders on GitHub, in MLflow and in a terminal alike; every number
in it comes from the :class:`~trainer.training.TrainingOutcome` that was published. The
confusion matrix picture is drawn on a bare Agg canvas (no pyplot), so rendering it neither
changes the process's matplotlib backend nor shares pyplot's global state between threads.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainer.training import TrainingOutcome

__all__ = ["confusion_matrix_png", "render_model_card"]

_REPORT_ROWS = ("macro avg", "weighted avg")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _data_section(outcome: TrainingOutcome) -> list[str]:
    rows = [
        [label, round(share * outcome.n_samples), f"{share:.1%}"]
        for label, share in outcome.class_prior.items()
    ]
    return [
        "## Data",
        f"Source `{outcome.data_source}`: {outcome.n_samples} rows, "
        f"{len(outcome.feature_names)} features ({', '.join(outcome.feature_names)}).",
        _table(["class", "rows", "share"], rows),
    ]


def _candidates_section(outcome: TrainingOutcome) -> list[str]:
    rows = [
        [
            f"**{s.name}**" if s.name == outcome.algorithm else s.name,
            f"{s.mean:.4f} ± {s.std:.4f}",
            len(s.fold_scores),
            f"{s.fit_seconds:.2f}",
        ]
        for s in sorted(outcome.candidates, key=lambda s: (-s.mean, s.std, s.name))
    ]
    header = ["candidate", f"CV {outcome.selection_metric} (mean ± std)", "folds", "seconds"]
    return [
        "## Candidates (cross-validated on the training split)",
        _table(header, rows),
        f"Winner: **{outcome.algorithm}**, refit on all {outcome.n_samples} rows for publishing.",
    ]


def _holdout_section(outcome: TrainingOutcome) -> list[str]:
    report = outcome.holdout_report
    rows = [
        [
            name,
            f"{v['precision']:.3f}",
            f"{v['recall']:.3f}",
            f"{v['f1-score']:.3f}",
            int(v["support"]),
        ]
        for name in [*outcome.class_labels, *_REPORT_ROWS]
        if isinstance(v := report.get(name), dict)
    ]
    return [
        "## Holdout metrics (rows never seen by model selection)",
        _table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in sorted(outcome.metrics.items())]),
        _table(["class", "precision", "recall", "f1", "support"], rows),
    ]


def _confusion_section(outcome: TrainingOutcome) -> list[str]:
    rows = [
        [label, *row]
        for label, row in zip(outcome.class_labels, outcome.confusion_matrix, strict=True)
    ]
    return [
        "## Confusion matrix (holdout; rows true, columns predicted)",
        "![confusion matrix](confusion_matrix.png)",
        _table(["true \\ predicted", *outcome.class_labels], rows),
    ]


def _reference_section(outcome: TrainingOutcome) -> list[str]:
    rows = []
    for name, s in outcome.reference_stats.items():
        deciles = [f"{s.quantiles[i]:.3f}" for i in (0, 4, 8)] if len(s.quantiles) == 9 else []
        rows.append([name, *(f"{v:.3f}" for v in (s.mean, s.std, s.min)), *deciles, f"{s.max:.3f}"])
    return [
        "## Reference statistics (all rows; what drift detection compares traffic with)",
        _table(["feature", "mean", "std", "min", "p10", "p50", "p90", "max"], rows),
    ]


def render_model_card(
    outcome: TrainingOutcome,
    *,
    model_name: str,
    version: int,
    parent_version: int | None,
    trigger: str,
    created_at: float,
) -> str:
    """The Markdown card stored next to a version (``card.md``) and in the reports folder."""
    when = datetime.fromtimestamp(created_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parent = parent_version if parent_version is not None else "none"
    sections = [
        f"# Model card: {model_name} version {version}",
        f"Created {when}; trigger `{trigger}`; parent version {parent}; algorithm "
        f"`{outcome.algorithm}`; data fingerprint `{outcome.data_fingerprint[:16]}`.",
        *_data_section(outcome),
        *_candidates_section(outcome),
        *_holdout_section(outcome),
        *_confusion_section(outcome),
        *_reference_section(outcome),
    ]
    return "\n\n".join(sections) + "\n"


def confusion_matrix_png(outcome: TrainingOutcome) -> bytes:
    """The holdout confusion matrix as a PNG, counts written in the cells."""
    labels, matrix = outcome.class_labels, outcome.confusion_matrix
    size = max(3.5, 1.0 + 0.9 * len(labels))
    figure = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_title(f"{outcome.algorithm} (holdout)")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            color = "white" if count > peak / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=color)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
