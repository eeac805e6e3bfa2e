"""Batching helpers: rows of any shape cut into calls of N rows, and calls run N at a time.

A client with a million rows should not have to write the loop: :func:`chunked` takes a 2-D
numpy array (sliced, not copied), a sequence (sliced) or any iterable, including a generator
that is read as it goes, and :func:`map_bounded` runs an async call per chunk with at most
``limit`` in flight, returning the results in input order. Only ``limit`` chunks are held at a
time, so a generator of rows is never read ahead further than the calls in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, TypeVar

import numpy as np

__all__ = ["Row", "Rows", "chunked", "map_bounded", "row_dicts"]

T = TypeVar("T")
R = TypeVar("R")

Row = Mapping[str, float] | Sequence[float] | np.ndarray
"""One instance: feature name → value, or values in the model's feature order."""
Rows = np.ndarray | Iterable[Row]
"""Many instances: a 2-D array (one row each), or any iterable of rows."""


def chunked(rows: Rows, size: int) -> Iterator[Any]:
    """``rows`` in consecutive pieces of ``size`` (the last one shorter): array slices for an
    array, list slices for a sequence, lists for any other iterable (read lazily)."""
    if size < 1:
        raise ValueError(f"a chunk holds at least one row, not {size}")
    if isinstance(rows, np.ndarray):
        matrix = rows.reshape(1, -1) if rows.ndim == 1 else rows
        for start in range(0, len(matrix), size):
            yield matrix[start : start + size]
        return
    if isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
        for start in range(0, len(rows), size):
            yield rows[start : start + size]
        return
    iterator = iter(rows)
    while piece := list(islice(iterator, size)):
        yield piece


def row_dicts(rows: Iterable[Row], names: Sequence[str]) -> list[dict[str, float]]:
    """Each row as ``{feature: value}`` (``/v1`` names every value); a mapping row is kept as
    it is (the gateway names what does not fit), a sequence row must have one value per name."""
    out: list[dict[str, float]] = []
    for index, row in enumerate(rows):
        if isinstance(row, Mapping):
            out.append(dict(row))
            continue
        values = [float(v) for v in row]
        if len(values) != len(names):
            raise ValueError(
                f"row {index} has {len(values)} values; the model takes {len(names)} "
                f"({', '.join(names)}), in that order"
            )
        out.append(dict(zip(names, values, strict=True)))
    return out


async def map_bounded(call: Callable[[T], Awaitable[R]], items: Iterable[T], limit: int) -> list[R]:
    """``[await call(item) for item in items]`` with up to ``limit`` calls at once, results in
    input order; the first failure cancels the calls still running and is raised."""
    if limit < 1:
        raise ValueError(f"at least one call at a time, not {limit}")
    results: dict[int, R] = {}
    running: dict[asyncio.Task[R], int] = {}
    iterator = enumerate(items)
    try:
        while True:
            for index, item in islice(iterator, limit - len(running)):
                running[asyncio.ensure_future(call(item))] = index
            if not running:
                return [results[i] for i in range(len(results))]
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                results[running.pop(task)] = task.result()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
