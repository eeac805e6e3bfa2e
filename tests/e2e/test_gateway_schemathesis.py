"""The API contract at full strength: schemathesis's own CLI, every check, against the real stack.

``schemathesis run /openapi.json --checks all --max-examples 150`` with the admin key, all four
phases (the documented examples, the boundary "coverage" cases, random fuzzing, and stateful
chains that follow the document's links: a prediction's id to its audit record, to its feedback
and to a repeat of itself, a feedback's id to a new prediction), against a worker and a gateway
on the real broker. Every check is on: no 5xx, every status and header documented, every body
as its schema says, nothing schema-invalid accepted and nothing schema-valid refused, the admin
key not ignored. Whatever operations ``/openapi.json`` lists when the test runs are tested.

The stack has no trainer, on purpose: the document states the live model's feature ranges and
classes, and a trainer would answer schemathesis's own ``POST /v1/retrain`` calls with new
versions (new ranges) halfway through the run, so the document it read at the start would no
longer be the contract. Without one, the only version there is stays live (``promote``
republishes it), and the contract holds still for the whole run. The rollout commands are
answered 202 (no controller applies them) after ``gateway.command_wait_seconds``, set short here.

One run costs about a minute on two cores (about 2,000 requests); the seed is fixed so that a
failure found here replays (``--seed`` below) and CI sees the same cases every time.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Stack, launch_stack, stop_all

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

API_KEY = "schemathesis-admin-key"
EXAMPLES = 150
SEED = 20261201
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
COMMAND_WAIT = 0.2
"""Seconds a rollout command waits for the controller: there is none here (no trainer), so each
``POST /v1/rollout*`` is the documented 202 after this long, and the run stays fast."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
"""The one per-operation setting, with its reason (an OIP tensor's shape against its data)."""


@pytest.fixture(scope="module")
def contract_stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[Stack]:
    """A worker and a gateway with the admin key set, one model version, no trainer."""
    stack = launch_stack(
        tmp_path_factory.mktemp("contract-stack"),
        kafka_bootstrap,
        **{"gateway.api_key": API_KEY, "gateway.command_wait_seconds": COMMAND_WAIT},
    )
    try:
        yield stack
    finally:
        stop_all(stack)


def _operations(url: str) -> set[str]:
    paths = httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]
    return {f"{method.upper()} {path}" for path, ops in paths.items() for method in ops}


def _run(url: str, folder: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    junit = folder / "junit.xml"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"X-API-Key: {API_KEY}",
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        # One worker: with two, both threads describe hypothesis strategies through ast.parse
        # at once, and CPython 3.11 keeps the AST builder's recursion counter per interpreter,
        # not per thread (python/cpython#106905 and kin): "SystemError: AST constructor
        # recursion depth mismatch" then stopped the coverage phase at random (seen on 3.11.7).
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
    ]
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=600, check=False
    )
    return done, junit


def _summary(output: str) -> str:
    """The failures and the summary of schemathesis's report (what a reader needs first)."""
    start = output.find("=== FAILURES ===")
    return output[start - 20 :] if start >= 0 else output[-6000:]


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing_with_every_check_in_every_phase(
    contract_stack: Stack, tmp_path: Path
) -> None:
    url = contract_stack.gateway_url
    operations = _operations(url)
    done, junit = _run(url, tmp_path)
    report = _summary(done.stdout + done.stderr)
    assert done.returncode == 0, report
    suite = ET.parse(junit).getroot()
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0"), report
    tested = {case.get("name") for case in suite.iter("testcase")}
    assert operations <= tested, f"not tested: {sorted(operations - tested)}\n{report}"
    assert "Stateful tests" in tested, report
    links = re.search(r"API Links:\s+(\d+) covered", done.stdout)
    assert links is not None, report
    assert int(links.group(1)) > 0, report
    summary = done.stdout.rfind("\n", 0, done.stdout.find("=== SUMMARY ==="))
    print(done.stdout[summary + 1 :])  # the counts and the time, shown with -s or -rP
