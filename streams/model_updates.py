"""Hot swap: load the new model, swap one reference, let the old one go; and during a rollout,
hold one candidate beside it.

The score agent reads :attr:`ModelHolder.current` and :attr:`ModelHolder.rollout` once per
batch, so a swap (or a new rollout state) lands between batches and a batch is never scored by
two champions or two rollouts. Loading (checksum, allow-list, skops parse)
runs in a thread so the event loop keeps scoring meanwhile; a version that fails to load is
refused and the current model keeps serving. "Fails to load" includes the archive limits and
the estimator contract (:func:`irisflow.registry.load_update`): a model that would crash or
exhaust the worker is refused before it is swapped in.

A rollout's candidate (:meth:`ModelHolder.follow`, fed by the rollout follower) passes the same
checks. One that fails is logged and counted, and the worker scores with the champion alone
while the rollout state stays known (the health page shows it refused); the same bytes are not
tried again at every republished state. The candidate goes when the rollout ends, or once it is
the live version (a promotion publishes the model update first, then the ``promoted`` state).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from irisflow.registry import load_update
from irisflow.schemas import ModelUpdate, RolloutState
from irisflow.settings import ArtifactSettings
from streams.intake import LiveModel

__all__ = ["ModelHolder", "Rollout"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rollout:
    """An active rollout whose candidate is loaded: what a batch is routed by."""

    state: RolloutState
    candidate: LiveModel
    sha256: str


class ModelHolder:
    """The model this worker scores with, replaced atomically by :meth:`apply`."""

    def __init__(
        self,
        *,
        on_swap: Callable[[LiveModel], None] | None = None,
        artifacts: ArtifactSettings | None = None,
        max_reference_std: float | None = None,
        on_candidate: Callable[[int | None], None] | None = None,
        on_candidate_refused: Callable[[int], None] | None = None,
    ) -> None:
        self.current: LiveModel | None = None
        self.refused: deque[tuple[int, str]] = deque(maxlen=20)
        self.rollout: Rollout | None = None
        """The active rollout with its loaded candidate, ``None`` when there is none (or its
        candidate was refused): read once per batch, like :attr:`current`."""
        self.rollout_state: RolloutState | None = None
        """The newest rollout state followed, loaded or not (the health page shows it)."""
        self.candidate_refused: tuple[int, str] | None = None
        """(version, why) of the newest candidate that failed to load."""
        self._refused_candidate: tuple[object, ...] | None = None
        self._on_candidate = on_candidate or (lambda version: None)
        self._on_candidate_refused = on_candidate_refused or (lambda version: None)
        self._on_swap = on_swap
        self._artifacts = artifacts or ArtifactSettings()
        self._max_reference_std = max_reference_std

    async def apply(self, update: ModelUpdate) -> bool:
        """Load ``update`` off the event loop and make it live; ``False`` if it was refused."""
        try:
            estimator = await asyncio.to_thread(load_update, update, self._artifacts)
        except Exception as exc:  # ArtifactError, or anything a crafted artifact provokes
            self.refused.append((update.version, str(exc)))
            serving = self.current.version if self.current else None
            log.error(
                "refused %s version %d (%s); still serving version %s",
                update.model_name,
                update.version,
                exc,
                serving,
            )
            return False
        previous = self.current.version if self.current else None
        self.current = LiveModel(
            metadata=update.metadata(),
            estimator=estimator,
            max_reference_std=self._max_reference_std,
        )
        log.info(
            "now serving %s version %d (%s, trigger=%s; was %s)",
            update.model_name,
            update.version,
            update.algorithm,
            update.trigger,
            previous,
        )
        if self._on_swap is not None:
            self._on_swap(self.current)
        if self.rollout is not None and self.rollout.candidate.version == update.version:
            self._drop(f"version {update.version} is live now")
        return True

    async def follow(self, state: RolloutState) -> None:
        """Take the newest rollout state: load its candidate if it is new, drop it if the
        rollout ended or the candidate went live (the rollout follower's callback)."""
        self.rollout_state = state
        candidate = state.candidate
        if not state.active or candidate is None:
            self._drop(f"rollout {state.rollout_id} is {state.stage}")
            return
        live = self.current
        if live is not None and candidate.version == live.version:
            self._drop(f"candidate version {candidate.version} is live")
            return
        loaded = self.rollout
        if (
            loaded is not None
            and loaded.candidate.version == candidate.version
            and loaded.sha256 == candidate.sha256
        ):
            self.rollout = Rollout(state, loaded.candidate, loaded.sha256)
            return
        tried = (candidate.model_name, candidate.version, candidate.sha256, state.candidate_version)
        if self._refused_candidate == tried:
            return  # republished with the same bytes: refused already, not tried again
        self._drop(None)
        try:
            if candidate.model_name != state.model_name:
                raise ValueError(
                    f"the candidate is a version of {candidate.model_name!r}, "
                    f"not of {state.model_name!r}"
                )
            if candidate.version != state.candidate_version:
                raise ValueError(
                    f"the state names candidate version {state.candidate_version} but carries "
                    f"version {candidate.version}"
                )
            estimator = await asyncio.to_thread(load_update, candidate, self._artifacts)
        except Exception as exc:  # ArtifactError, or anything a crafted artifact provokes
            self._refused_candidate = tried
            self.candidate_refused = (candidate.version, str(exc))
            self._on_candidate_refused(candidate.version)
            log.error(
                "refused candidate %s version %d of rollout %s (%s); scoring with the champion "
                "alone",
                candidate.model_name,
                candidate.version,
                state.rollout_id,
                exc,
            )
            return
        if self.rollout_state is not state:
            return  # a newer state came while loading (it was handled on its own)
        live = self.current
        if live is not None and live.version == candidate.version:
            return  # promoted while loading
        model = LiveModel(
            metadata=candidate.metadata(),
            estimator=estimator,
            max_reference_std=self._max_reference_std,
        )
        self.rollout = Rollout(state, model, candidate.sha256)
        self._on_candidate(candidate.version)
        log.info(
            "rollout %s: candidate version %d loaded beside version %s (%s, share %.3g)",
            state.rollout_id,
            candidate.version,
            live.version if live else None,
            state.stage,
            state.share,
        )

    def _drop(self, why: str | None) -> None:
        if self.rollout is None:
            return
        version = self.rollout.candidate.version
        self.rollout = None
        self._on_candidate(None)
        if why is not None:
            log.info("candidate version %d unloaded: %s", version, why)
