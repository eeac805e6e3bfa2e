"""Which version a request meets during a rollout, decided from its id alone.

Every worker must route a request the same way, and a retried request id must land on the same
version (a client retrying after a timeout must not get a second opinion from the other model),
so the choice is a hash of the rollout id and the request id, never a random draw: the request's
point in [0, 1) is fixed for a rollout, and a share ``s`` takes the points below ``s``. Raising a
canary's share keeps every request that was already on the candidate there.
"""

from __future__ import annotations

import hashlib

from irisflow.schemas import RolloutStage, RolloutState

__all__ = ["point_of", "routed_to_candidate", "shadowed"]

_SCALE = float(1 << 64)


def point_of(rollout_id: str, request_id: str) -> float:
    """The request's fixed point in [0, 1) for this rollout (blake2b, 8 bytes)."""
    digest = hashlib.blake2b(f"{rollout_id}\x00{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def _in_share(state: RolloutState, request_id: str) -> bool:
    return state.rollout_id is not None and point_of(state.rollout_id, request_id) < state.share


def routed_to_candidate(state: RolloutState | None, request_id: str) -> bool:
    """Whether the candidate answers this request (a canary and the request in its share)."""
    return (
        state is not None
        and state.active
        and state.stage == RolloutStage.CANARY
        and _in_share(state, request_id)
    )


def shadowed(state: RolloutState | None, request_id: str) -> bool:
    """Whether the candidate scores this request in shadow (and answers nobody)."""
    return (
        state is not None
        and state.active
        and state.stage == RolloutStage.SHADOW
        and _in_share(state, request_id)
    )
