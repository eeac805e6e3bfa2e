"""``irisflow train`` from the command line, on Iris and on another CSV data set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from irisflow.errors import ConfigError
from irisflow.registry import LocalRegistry
from irisflow.settings import Settings, TrackingSettings
from trainer.tracking import log_run
from trainer.training import TrainingOutcome

ROOT = Path(__file__).resolve().parents[2]


def _train(params: Path, *args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISFLOW_")}
    if home is not None:
        env["IRISFLOW_HOME"] = str(home)
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
        env=env,
    )


def test_another_csv_data_set_trains_by_changing_only_the_params_file(tmp_path: Path) -> None:
    """With --no-publish too: the version is saved to the registry only (a rollout candidate
    that nothing serves until a rollout starts), and the output says how to roll it out."""
    home = tmp_path / "home"
    reports = tmp_path / "reports"
    done = _train(
        ROOT / "examples" / "wine" / "params.yaml", "--report-dir", str(reports), home=home
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert LocalRegistry(home / "registry" / "wine").latest() == 1
    assert "irisflow rollout start 1 --shadow" in done.stdout
    for name in ("logistic_regression", "random_forest", "svm", "knn", "naive_bayes"):
        assert name in done.stdout
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["cv_f1_macro_mean"] > 0.9
    card = (reports / "model_card.md").read_text()
    assert "13 features" in card
    assert (reports / "model.skops").stat().st_size > 0


def test_a_missing_data_file_is_one_line_saying_what_to_fix(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("data: {source: nowhere.csv, label_column: y}\n")
    done = _train(params, home=tmp_path / "home")
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
