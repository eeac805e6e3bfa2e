"""Training outputs as plain files, for DVC (metrics and plots) and for people."""

from __future__ import annotations

import json
from pathlib import Path

from irisflow.registry import serialize_model
from trainer.card import confusion_matrix_png, render_model_card
from trainer.training import TrainingOutcome

__all__ = ["write_reports"]


def write_reports(
    outcome: TrainingOutcome, folder: Path, *, model_name: str, created_at: float
) -> list[Path]:
    """metrics.json, candidates.json, model card, confusion matrix (PNG + JSON), the model."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics.json": json.dumps({"algorithm": outcome.algorithm, **outcome.metrics}, indent=2),
        "candidates.json": json.dumps(
            [
                {"candidate": s.name, "mean": s.mean, "std": s.std, "folds": list(s.fold_scores)}
                for s in outcome.candidates
            ],
            indent=2,
        ),
        "confusion_matrix.json": json.dumps(
            {"labels": outcome.class_labels, "matrix": outcome.confusion_matrix}, indent=2
        ),
        "model_card.md": render_model_card(
            outcome,
            model_name=model_name,
            version=0,
            parent_version=None,
            trigger="offline",
            created_at=created_at,
        ),
    }
    written = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
        written.append(path)
    for name, data in (
        ("confusion_matrix.png", confusion_matrix_png(outcome)),
        ("model.skops", serialize_model(outcome.model)),
    ):
        (folder / name).write_bytes(data)
        written.append(folder / name)
    return written
