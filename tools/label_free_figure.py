"""Render docs/img/label-free-estimate.png: label-free estimate vs realised accuracy under drift.

Run from the repository root: ``.venv/bin/python tools/label_free_figure.py`` (under a minute;
seeded, so the picture only changes when the trainer, the estimate or the scenario does).

Iris and wine side by side; per example the model versions the trainer makes with each
example's params narrowed to one algorithm (logistic regression, random forest, and on Iris
also the SVM, the default params' winner there); for each, the realised accuracy (solid) and
the label-free estimate (dashed) of windows of ``drift.estimate_window`` rows, along the
boundary shift of tests/label_free.py (P(y|x) kept; stronger to the right). The shaded part is
the range the functional test holds to its tolerance (tests/functional/irisflow/
test_label_free_estimate.py); beyond it the shift reaches regions the training rows barely
cover and the estimate overstates accuracy, as the README says.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from irisflow.settings import DriftSettings  # noqa: E402
from tests.label_free import boundary_shift, stream, train_example  # noqa: E402

PANELS = {
    "iris": (["logistic_regression", "random_forest", "svm"], np.arange(0.0, 7.0), 4.0),
    "wine": (["logistic_regression", "random_forest"], np.arange(0.0, 10.0), 6.0),
}
"""Per example: algorithms, shift strengths drawn, and the last strength the test holds."""
COLORS = {"logistic_regression": "tab:blue", "random_forest": "tab:green", "svm": "tab:red"}


def render(path: Path, *, windows: int) -> None:
    rows = DriftSettings().estimate_window
    figure, axes = plt.subplots(1, len(PANELS), figsize=(12, 4.6), sharey=True)
    for axis, (example, (algorithms, strengths, tested)) in zip(axes, PANELS.items(), strict=True):
        traffic = boundary_shift(example)
        axis.axvspan(strengths[0], tested, color="0.93", zorder=0)
        lines = []
        for algorithm in algorithms:
            outcome = train_example(example, algorithm)
            found = stream(outcome, traffic, list(strengths), windows=windows, window_rows=rows)
            realised = [np.mean([w.realised for w in found if w.strength == s]) for s in strengths]
            estimate = [np.mean([w.estimate for w in found if w.strength == s]) for s in strengths]
            tested_errors = [abs(w.error) for w in found if w.strength <= tested]
            color = COLORS[algorithm]
            axis.plot(strengths, realised, "-o", color=color, markersize=4)
            axis.plot(strengths, estimate, "--", color=color)
            lines.append(f"{algorithm}: mean |error| {np.mean(tested_errors):.3f}")
            name = algorithm.replace("_", " ")
            if algorithm == "svm":
                name += " (Iris params' winner; not held)"
            axis.plot([], [], "-", color=color, label=name)
        axis.plot([], [], "-", color="0.3", label="realised accuracy")
        axis.plot([], [], "--", color="0.3", label="label-free estimate")
        axis.set_title(f"{example}: windows of {rows} rows")
        axis.set_xlabel("shift toward the class boundary (strength; P(y|x) kept)")
        axis.text(
            0.02,
            0.03,
            "shaded: range the test holds logistic regression and random forest to\n"
            "(mean |error| <= 0.04, every window <= 0.10)\n" + "\n".join(lines),
            transform=axis.transAxes,
            fontsize=8,
            va="bottom",
        )
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("accuracy")
    figure.suptitle("Label-free accuracy estimate (calibrated confidence) vs realised accuracy")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "img" / "label-free-estimate.png",
        help="where to write the PNG (default: docs/img/label-free-estimate.png)",
    )
    parser.add_argument(
        "--windows", type=int, default=4, help="windows averaged per shift strength (default 4)"
    )
    args = parser.parse_args()
    render(args.out, windows=args.windows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
