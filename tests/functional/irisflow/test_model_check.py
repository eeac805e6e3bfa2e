"""A version's checks in a process of their own: the same verdicts, without the memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from irisflow.errors import ArtifactError
from irisflow.model_check import check_elsewhere
from irisflow.settings import ArtifactSettings
from tests.factories import forged_update, model_update


async def test_a_good_version_passes() -> None:
    await check_elsewhere(model_update(3), ArtifactSettings())


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("checksum", "checksum mismatch"),
        ("zip_bomb", "unpack"),
        ("wrong_features", "feature"),
        ("regressor", "predict_proba"),
    ],
)
async def test_a_forged_version_is_refused_with_its_reason(how: str, reason: str) -> None:
    with pytest.raises(ArtifactError, match=reason):
        await check_elsewhere(forged_update(4, how), ArtifactSettings())


async def test_the_limits_given_are_the_limits_applied() -> None:
    tight = ArtifactSettings(max_entries=10)  # a random forest's archive has 11 entries
    with pytest.raises(ArtifactError, match="entries"):
        await check_elsewhere(model_update(5, kind="random_forest"), tight)


def test_the_gateway_never_imports_scikit_learn() -> None:
    """What keeps its memory low: versions are loaded by the child process only."""
    probe = (
        "import sys, gateway.app; "
        "print(sorted(m for m in ('sklearn', 'skops') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
