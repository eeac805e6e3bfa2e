"""The rollout policy: from the live readings of champion and candidate to the next step.

Pure (no Kafka, no clock of its own), so every threshold is tested with made-up readings.

- **Rolled back**, in any active stage, once the candidate has been seen on ``min_samples`` rows
  (or has served ``canary_budget`` answers in canary without a verdict): its error rate is above
  ``max_error_rate``, its agreement with the champion below ``rollback_agreement``, its class mix
  further than ``max_class_psi`` from its training prior, or its accuracy (labels, once
  ``min_labels`` paired requests have them; the label-free estimate before) ``rollback_margin``
  or more below the champion's on the same requests. Also when the rollout outlives
  ``max_duration_seconds``.
- **Advanced** (shadow → canary → promoted) once the stage has lasted ``min_stage_seconds`` and
  seen ``min_samples`` rows (in canary: served ``min_samples`` answers), when nothing above
  holds and the candidate's accuracy is at least the champion's minus ``tolerance``. Without
  enough labels the estimate decides instead, and then only with agreement of at least
  ``min_agreement`` too: an estimate alone cannot tell a better model from a differently wrong
  one, agreement bounds how different it may be while nobody can check.

Every verdict carries its reason in words and the numbers it was taken on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from irisflow.schemas import RolloutStage, RolloutState, VersionReading
from irisflow.settings import RolloutSettings

__all__ = ["Verdict", "error_rate", "judge", "numbers_of"]


@dataclass(frozen=True)
class Verdict:
    stage: RolloutStage
    reason: str
    numbers: dict[str, float] = field(default_factory=dict)
    share: float | None = None
    """The new share (entering canary); ``None``: unchanged."""


def error_rate(reading: VersionReading) -> float:
    """Requests refused or failed per request seen (rows stand in for requests)."""
    seen = reading.errors + reading.scored
    return reading.errors / seen if seen else 0.0


def numbers_of(champion: VersionReading, candidate: VersionReading) -> dict[str, float]:
    """The numbers a decision records: what the policy looked at."""
    found: dict[str, float] = {
        "candidate_scored": candidate.scored,
        "candidate_served": candidate.served,
        "candidate_error_rate": error_rate(candidate),
        "labeled": candidate.labeled,
    }
    for name, value in (
        ("agreement", candidate.agreement),
        ("candidate_class_psi", candidate.class_psi),
        ("candidate_accuracy", candidate.accuracy),
        ("champion_accuracy", champion.accuracy),
        ("candidate_macro_f1", candidate.macro_f1),
        ("champion_macro_f1", champion.macro_f1),
        ("candidate_estimated_accuracy", candidate.estimated_accuracy),
        ("champion_estimated_accuracy", champion.estimated_accuracy),
    ):
        if value is not None:
            found[name] = round(value, 4)
    return found


def _performance(
    champion: VersionReading, candidate: VersionReading, policy: RolloutSettings
) -> tuple[str, float, float] | None:
    """``(what, candidate's, champion's)``: accuracy once labels suffice, else the estimate."""
    if (
        candidate.labeled >= policy.min_labels
        and candidate.accuracy is not None
        and champion.accuracy is not None
    ):
        return "accuracy", candidate.accuracy, champion.accuracy
    if candidate.estimated_accuracy is not None and champion.estimated_accuracy is not None:
        return "estimated accuracy", candidate.estimated_accuracy, champion.estimated_accuracy
    return None


def _rollback_reason(
    champion: VersionReading, candidate: VersionReading, policy: RolloutSettings
) -> str | None:
    rate = error_rate(candidate)
    if rate > policy.max_error_rate:
        return f"error rate {rate:.3f} above {policy.max_error_rate}"
    if candidate.agreement is not None and candidate.agreement < policy.rollback_agreement:
        return (
            f"agreement with the champion {candidate.agreement:.3f} below "
            f"{policy.rollback_agreement}"
        )
    if candidate.class_psi is not None and candidate.class_psi > policy.max_class_psi:
        return f"predicted-class mix PSI {candidate.class_psi:.3f} above {policy.max_class_psi}"
    performance = _performance(champion, candidate, policy)
    if performance is not None:
        what, mine, theirs = performance
        if mine <= theirs - policy.rollback_margin:
            return (
                f"{what} {mine:.3f} is {theirs - mine:.3f} below the champion's {theirs:.3f} "
                f"(rollback margin {policy.rollback_margin})"
            )
    return None


def _pass_reason(
    champion: VersionReading, candidate: VersionReading, policy: RolloutSettings
) -> str | None:
    performance = _performance(champion, candidate, policy)
    if performance is None:
        return None
    what, mine, theirs = performance
    if mine < theirs - policy.tolerance:
        return None
    if what != "accuracy":
        if candidate.agreement is None or candidate.agreement < policy.min_agreement:
            return None
        return (
            f"{what} {mine:.3f} vs champion {theirs:.3f} (tolerance {policy.tolerance}) and "
            f"agreement {candidate.agreement:.3f} ≥ {policy.min_agreement}, "
            f"{candidate.labeled} labels (fewer than {policy.min_labels})"
        )
    return (
        f"accuracy {mine:.3f} vs champion {theirs:.3f} on {candidate.labeled} labeled requests "
        f"(tolerance {policy.tolerance})"
    )


def judge(
    state: RolloutState,
    champion: VersionReading,
    candidate: VersionReading,
    policy: RolloutSettings,
    *,
    now: float,
    stage_started_at: float,
) -> Verdict | None:
    """The next step for ``state``, or ``None`` to keep going as it is."""
    if not state.active:
        return None
    numbers = numbers_of(champion, candidate)
    started = state.started_at if state.started_at is not None else stage_started_at
    if now - started > policy.max_duration_seconds:
        return Verdict(
            RolloutStage.ROLLED_BACK,
            f"no verdict within max_duration_seconds ({policy.max_duration_seconds:.0f} s)",
            numbers,
        )
    if not state.automatic:
        return None
    canary = state.stage == RolloutStage.CANARY
    seen = candidate.scored + candidate.errors
    if seen >= policy.min_samples or (canary and candidate.served >= policy.canary_budget):
        reason = _rollback_reason(champion, candidate, policy)
        if reason is not None:
            return Verdict(RolloutStage.ROLLED_BACK, reason, numbers)
    if canary and candidate.served >= policy.canary_budget:
        passed = _pass_reason(champion, candidate, policy)
        if passed is None:
            return Verdict(
                RolloutStage.ROLLED_BACK,
                f"the canary served its budget of {policy.canary_budget} answers without "
                "meeting the promotion thresholds",
                numbers,
            )
    evidence = candidate.served if canary else seen
    if evidence < policy.min_samples or now - stage_started_at < policy.min_stage_seconds:
        return None
    passed = _pass_reason(champion, candidate, policy)
    if passed is None:
        return None
    if canary:
        return Verdict(RolloutStage.PROMOTED, f"canary passed: {passed}", numbers)
    return Verdict(
        RolloutStage.CANARY, f"shadow passed: {passed}", numbers, share=policy.canary_share
    )
