"""``irisflow train`` from the command line, on Iris and on another CSV data set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from irisflow.errors import ConfigError
from irisflow.settings import Settings, TrackingSettings
from trainer.tracking import log_run
from trainer.training import TrainingOutcome

ROOT = Path(__file__).resolve().parents[2]


def _train(params: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "irisflow.cli",
            "--params",
            str(params),
            "train",
            "--no-publish",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def test_another_csv_data_set_trains_by_changing_only_the_params_file(tmp_path: Path) -> None:
    done = _train(ROOT / "examples" / "wine" / "params.yaml", "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("logistic_regression", "random_forest", "svm", "knn", "naive_bayes"):
        assert name in done.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["cv_f1_macro_mean"] > 0.9
    card = (tmp_path / "model_card.md").read_text()
    assert "13 features" in card
    assert (tmp_path / "model.skops").stat().st_size > 0


def test_a_missing_data_file_is_one_line_saying_what_to_fix(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data: {source: nowhere.csv, label_column: y}\n")
    done = _train(params)
    assert done.returncode == 1
    assert "irisflow: error: data file" in done.stderr
    assert "nowhere.csv not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_mlflow_tracking_without_mlflow_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    settings = Settings(tracking=TrackingSettings(mlflow=True))
    outcome = object.__new__(TrainingOutcome)
    with pytest.raises(ConfigError, match=r"irisflow\[mlflow\]"):
        log_run(settings, outcome, trigger="manual", version=None, created_at=0.0)
