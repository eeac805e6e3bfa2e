"""A version's deployment history, from the two places it is written.

The rollout controller records every rollout step twice: in the compacted rollouts topic's state
(this rollout's ``steps`` and earlier ones' ``history``, readable wherever Kafka is) and in the
registry's decisions log (``decisions.jsonl``, which also has the retraining that published a
version live, readable where the registry folder is). A gateway on a host of its own has only the
first, ``irisflow models show`` without a broker only the second; where both are there, the same
step is shown once, with both sources. One merge here, for the HTTP API and the CLI alike.
"""

from __future__ import annotations

import logging
from typing import Any

from irisflow.errors import IrisflowError
from irisflow.registry import LocalRegistry
from irisflow.schemas import RolloutState

__all__ = ["FIELDS", "deployment_history"]

log = logging.getLogger(__name__)

FIELDS = (
    "at",
    "stage",
    "decided_by",
    "reason",
    "rollout_id",
    "share",
    "champion_version",
    "numbers",
    "trigger",
)
"""What one step says (a registry entry's other keys, such as ``kind``, are left out)."""


def _registry_entries(registry: LocalRegistry, version: int) -> list[dict[str, Any]]:
    try:
        return registry.deployments(version)
    except (OSError, ValueError, IrisflowError) as exc:
        log.warning("registry decisions at %s unreadable: %s", registry.root, exc)
        return []


def _step(entry: dict[str, Any], source: str) -> dict[str, Any] | None:
    at, stage = entry.get("at"), entry.get("stage")
    if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(stage, str):
        log.warning("skipping a deployment step without a time and a stage: %r", entry)
        return None
    step = {name: entry.get(name) for name in FIELDS}
    step["at"] = float(at)
    step["numbers"] = entry.get("numbers") or {}
    step["decided_by"] = entry.get("decided_by") or "unknown"
    step["reason"] = entry.get("reason") or ""
    step["sources"] = [source]
    return step


def deployment_history(
    version: int, state: RolloutState | None, registry: LocalRegistry | None
) -> list[dict[str, Any]]:
    """``version``'s steps, oldest first, each with its ``sources`` (``kafka``, ``registry``):
    the rollout steps ``state`` holds (``None``: the topic was not read) merged with the
    registry's decisions log (``None``: no registry folder here)."""
    found: dict[tuple[Any, str, float], dict[str, Any]] = {}

    def add(entry: dict[str, Any], source: str) -> None:
        step = _step(entry, source)
        if step is None:
            return
        key = (step["rollout_id"], step["stage"], round(step["at"], 3))
        seen = found.get(key)
        if seen is None:
            found[key] = step
        elif source not in seen["sources"]:
            seen["sources"].append(source)

    if state is not None:
        for rollout_step in [*state.history, *state.steps]:
            if rollout_step.version == version:
                add(rollout_step.model_dump(mode="json"), "kafka")
    if registry is not None:
        for entry in _registry_entries(registry, version):
            add(entry, "registry")
    return sorted(found.values(), key=lambda step: step["at"])
