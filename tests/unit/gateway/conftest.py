"""Fixtures of the gateway's unit tests: the predict path over a fake bridge (no broker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.answer_book import AnswerBook
from gateway.audit.store import AuditStore, audit_url
from gateway.metrics import GatewayMetrics
from gateway.predicting import on_late_answer
from irisflow.settings import KafkaSettings
from tests.unit.gateway.fakes import FakeBridge, FakeScoring, ScoringFactory


@pytest.fixture
def make_scoring(tmp_path: Path) -> Iterator[ScoringFactory]:
    """``make_scoring(delay=…, timeout=…)``: a fake bridge wired as the app wires the real one
    (late answers go to the answer book), an answer book and an audit store on SQLite."""
    made: list[FakeScoring] = []

    def factory(*, delay: float = 0.05, timeout: float = 2.0, **bridge: Any) -> FakeScoring:
        answers = AnswerBook(100)
        fake = FakeBridge(KafkaSettings(), delay=delay, on_late=on_late_answer(answers), **bridge)
        audit = AuditStore(audit_url(None, tmp_path / f"home-{len(made)}"))
        made.append(FakeScoring(fake, answers, audit, GatewayMetrics.create(), timeout))
        return made[-1]

    yield factory
    for scoring in made:
        scoring.audit.close()


@pytest.fixture
def scoring(make_scoring: ScoringFactory) -> FakeScoring:
    return make_scoring()
