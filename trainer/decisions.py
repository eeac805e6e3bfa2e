"""Every retraining ends in one decision, recorded three ways: ``decisions.jsonl`` in the
registry folder (the audit trail), ``irisflow_retrains_total{trigger,outcome}`` (the alert) and
one log line (the operator's first look).

A retraining that raised is a decision too (outcome ``failed``, with its error): a trainer that
only crashed would re-read the same labels on restart and crash again, and nobody would see why.

What a decision costs in labels, as its entry records it:

- ``excluded``: samples left out *before* training because their class would still have too few
  rows in base data plus the window's training part (only possible for a class the champion
  knows and the base data set lacks). Only those are dead-lettered (``schema_mismatch``); the
  retraining goes on without them. Samples with an unknown label, wrong features or values out
  of domain never get this far: they are refused one by one as they arrive.
- ``dead_lettered`` (``failed`` decisions only): a retraining that raises despite those checks
  has a cause no single sample can be blamed for (a bug, the machine, a data set that changed),
  so every sample no decision had used yet (the labels that triggered this one) is
  dead-lettered (``training_failed``) and dropped from the window; samples that earlier decisions
  already trained on stay. Replaying them (``irisflow dlq replay --reason training_failed``)
  before the cause is fixed fails the next retraining the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from irisflow.registry import LocalRegistry
from trainer.gate import GateDecision
from trainer.metrics import TrainerMetrics
from trainer.training import TrainingOutcome

__all__ = ["Decision", "DecisionLog"]

log = logging.getLogger("trainer.service")


@dataclass(frozen=True)
class Decision:
    """``error`` is set only for a failed retraining; ``dead_lettered`` counts the labeled
    samples it sent to the dead-letter topic (reason ``training_failed``); ``excluded`` those
    left out before training (reason ``schema_mismatch``, see the module docstring)."""

    trigger: str
    gate: GateDecision
    version: int | None
    algorithm: str | None
    seconds: float
    error: str | None = None
    dead_lettered: int = 0
    excluded: int = 0
    rollout: str | None = None
    """The stage the winning challenger entered instead of going live (``shadow``/``canary``),
    or why it could not (``refused: …``; it stays in the registry, not live)."""

    @classmethod
    def failed(
        cls, trigger: str, error: str, seconds: float, tolerance: float, *, dead_lettered: int
    ) -> Decision:
        """A retraining that raised ``error``."""
        gate = GateDecision(False, f"training failed: {error}", None, None, tolerance, 0)
        return cls(trigger, gate, None, None, seconds, error=error, dead_lettered=dead_lettered)

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return "failed"
        if self.gate.promoted and self.rollout is not None:
            return "held" if self.rollout.startswith("refused") else "rollout"
        return "promoted" if self.gate.promoted else "rejected"


class DecisionLog:
    """Writes each decision to the registry's decisions log, the metrics and the log."""

    def __init__(self, registry: LocalRegistry, metrics: TrainerMetrics) -> None:
        self.registry = registry
        self.metrics = metrics

    def record(
        self,
        decision: Decision,
        outcome: TrainingOutcome | None,
        *,
        parent_version: int | None,
    ) -> None:
        self.metrics.retrains.labels(decision.trigger, decision.outcome).inc()
        self.metrics.duration.observe(decision.seconds)
        for score in outcome.candidates if outcome else ():
            self.metrics.candidate_score.labels(score.name).set(score.mean)
        for role, value in (
            ("challenger", decision.gate.challenger_score),
            ("champion", decision.gate.champion_score),
        ):
            if value is not None:
                self.metrics.gate_score.labels(role).set(value)
        entry = {
            "at": time.time(),
            "trigger": decision.trigger,
            "outcome": decision.outcome,
            "version": decision.version,
            "algorithm": decision.algorithm,
            "seconds": round(decision.seconds, 3),
            **decision.gate.as_dict(),
            "parent_version": parent_version,
        }
        if decision.error is not None:
            entry.update(error=decision.error, dead_lettered=decision.dead_lettered)
        if decision.excluded:
            entry.update(excluded=decision.excluded)
        if decision.rollout is not None:
            entry.update(rollout=decision.rollout)
        self.registry.append_decision(entry)
        self._log(decision)

    def _log(self, decision: Decision) -> None:
        if decision.error is not None:
            log.error(
                "retraining (%s): failed — %s; %d labeled samples dead-lettered "
                "(training_failed), the live version keeps serving",
                decision.trigger,
                decision.error,
                decision.dead_lettered,
            )
            return
        log.info(
            "retraining (%s): %s — %s%s",
            decision.trigger,
            decision.outcome,
            decision.gate.reason,
            _published(decision),
        )


def _published(decision: Decision) -> str:
    if not decision.version:
        return ""
    if decision.rollout is None:
        return f"; published version {decision.version}"
    if decision.rollout.startswith("refused"):
        return f"; version {decision.version} saved, not live ({decision.rollout})"
    return f"; version {decision.version} entered {decision.rollout}"
