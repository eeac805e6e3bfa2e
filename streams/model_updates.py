"""Hot swap: load the new model, swap one reference, let the old one go.

The score agent reads :attr:`ModelHolder.current` once per batch, so a swap lands between
batches and a batch is never scored by two models. Loading (checksum, allow-list, skops parse)
runs in a thread so the event loop keeps scoring meanwhile; a version that fails to load is
refused and the current model keeps serving. "Fails to load" includes the archive limits and
the estimator contract (:func:`irisflow.registry.load_update`): a model that would crash or
exhaust the worker is refused before it is swapped in.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from irisflow.registry import load_update
from irisflow.schemas import ModelUpdate
from irisflow.settings import ArtifactSettings
from streams.intake import LiveModel

__all__ = ["ModelHolder"]

log = logging.getLogger(__name__)


class ModelHolder:
    """The model this worker scores with, replaced atomically by :meth:`apply`."""

    def __init__(
        self,
        *,
        on_swap: Callable[[LiveModel], None] | None = None,
        artifacts: ArtifactSettings | None = None,
        max_reference_std: float | None = None,
    ) -> None:
        self.current: LiveModel | None = None
        self.refused: deque[tuple[int, str]] = deque(maxlen=20)
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
        return True
