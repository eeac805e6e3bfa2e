"""Optional MLflow tracking: every training run's params, metrics and artifacts.

MLflow is an optional extra (``pip install 'irisflow[mlflow]'``); it is imported only when
``tracking.mlflow`` is true, and a missing install is one clear error, not a traceback.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from irisflow.errors import ConfigError
from irisflow.settings import Settings
from trainer.reports import write_reports
from trainer.training import TrainingOutcome

__all__ = ["log_run"]

log = logging.getLogger(__name__)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def log_run(
    settings: Settings,
    outcome: TrainingOutcome,
    *,
    trigger: str,
    version: int | None,
    created_at: float,
) -> str | None:
    """Log one run when tracking is enabled; return its MLflow run id."""
    if not settings.tracking.mlflow:
        return None
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(
            "tracking.mlflow is true but MLflow is not installed: pip install 'irisflow[mlflow]' "
            "(or set tracking.mlflow: false)"
        ) from exc
    mlflow.set_tracking_uri(settings.tracking.uri)
    if mlflow.get_experiment_by_name(settings.tracking.experiment) is None:
        artifacts = (settings.home / "mlartifacts").resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(settings.tracking.experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(settings.tracking.experiment)
    params: dict[str, Any] = {}
    _flatten(
        "", {"data": settings.data.model_dump(), "training": settings.training.model_dump()}, params
    )
    with mlflow.start_run(run_name=f"{settings.model_name}-{trigger}") as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(outcome.metrics)
        for score in outcome.candidates:
            mlflow.log_metric(f"candidate_{score.name}_cv_mean", score.mean)
        mlflow.set_tags(
            {
                "algorithm": outcome.algorithm,
                "trigger": trigger,
                "model_name": settings.model_name,
                "version": str(version) if version else "unpublished",
                "data_fingerprint": outcome.data_fingerprint,
            }
        )
        with tempfile.TemporaryDirectory() as folder:
            write_reports(
                outcome, Path(folder), model_name=settings.model_name, created_at=created_at
            )
            mlflow.log_artifacts(folder)
        log.info("MLflow run %s logged to %s", run.info.run_id, settings.tracking.uri)
        return str(run.info.run_id)
