"""A model card per version: what a person reads before trusting a model."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from trainer.training import TrainingOutcome

__all__ = ["confusion_matrix_png", "render_model_card"]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_model_card(
    outcome: TrainingOutcome,
    *,
    model_name: str,
    version: int,
    parent_version: int | None,
    trigger: str,
    created_at: float,
) -> str:
    when = datetime.fromtimestamp(created_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    metric_rows = [[k, f"{v:.4f}"] for k, v in sorted(outcome.metrics.items())]
    candidates = sorted(outcome.candidates, key=lambda s: -s.mean)
    candidate_rows = [
        [
            ("**" + s.name + "**") if s.name == outcome.algorithm else s.name,
            f"{s.mean:.4f} ± {s.std:.4f}",
            f"{s.fit_seconds:.2f}",
        ]
        for s in candidates
    ]
    report_rows = [
        [
            label,
            f"{v['precision']:.3f}",
            f"{v['recall']:.3f}",
            f"{v['f1-score']:.3f}",
            f"{int(v['support'])}",
        ]
        for label, v in outcome.holdout_report.items()
        if isinstance(v, dict) and label in outcome.class_labels
    ]
    matrix_rows = [
        [label, *map(str, row)]
        for label, row in zip(outcome.class_labels, outcome.confusion_matrix, strict=True)
    ]
    stats_rows = [
        [name, f"{s.mean:.3f}", f"{s.std:.3f}", f"{s.min:.3f}", f"{s.max:.3f}"]
        for name, s in outcome.reference_stats.items()
    ]
    prior = ", ".join(f"{k} {v:.1%}" for k, v in outcome.class_prior.items())
    return (
        "\n\n".join(
            [
                f"# Model card: {model_name} version {version}",
                f"Created {when}; trigger `{trigger}`; parent version {parent_version or 'none'}; "
                f"data fingerprint `{outcome.data_fingerprint[:16]}`.",
                "## Data",
                f"Source `{outcome.data_source}`: {outcome.n_samples} rows, "
                f"{len(outcome.feature_names)} features ({', '.join(outcome.feature_names)}), "
                f"classes {prior}.",
                "## Candidates (cross-validated on the training split)",
                _table(["candidate", "CV score (mean ± std)", "fit seconds"], candidate_rows),
                f"Winner: **{outcome.algorithm}**, refit on all rows for publishing.",
                "## Holdout metrics",
                _table(["metric", "value"], metric_rows),
                _table(["class", "precision", "recall", "f1", "support"], report_rows),
                "## Confusion matrix (holdout; rows true, columns predicted)",
                "![confusion matrix](confusion_matrix.png)",
                _table(["true \\ predicted", *outcome.class_labels], matrix_rows),
                "## Reference statistics (used for drift detection)",
                _table(["feature", "mean", "std", "min", "max"], stats_rows),
            ]
        )
        + "\n"
    )


def confusion_matrix_png(outcome: TrainingOutcome) -> bytes:
    labels = outcome.class_labels
    matrix = outcome.confusion_matrix
    size = max(3.5, 1.0 + 0.9 * len(labels))
    figure, axes = plt.subplots(figsize=(size, size), dpi=100)
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{outcome.algorithm} (holdout)")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axes.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                color="white" if count > peak / 2 else "black",
            )
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
