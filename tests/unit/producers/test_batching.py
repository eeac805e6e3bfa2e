"""The clients' batching helpers: rows cut into calls, and calls run a bounded number at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from producers.batching import chunked, map_bounded, row_dicts


def test_an_array_is_cut_into_views_of_n_rows_the_last_shorter() -> None:
    matrix = np.arange(14.0).reshape(7, 2)
    pieces = list(chunked(matrix, 3))
    assert [len(p) for p in pieces] == [3, 3, 1]
    assert all(np.shares_memory(p, matrix) for p in pieces)  # sliced, not copied
    np.testing.assert_array_equal(np.concatenate(pieces), matrix)


def test_one_row_as_a_flat_array_is_one_piece_of_one_row() -> None:
    (piece,) = chunked(np.array([1.0, 2.0]), 10)
    assert piece.shape == (1, 2)


def test_a_sequence_is_sliced_and_an_iterator_read_lazily() -> None:
    assert list(chunked([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    read: list[int] = []

    def rows() -> Iterator[int]:
        for i in range(10):
            read.append(i)
            yield i

    pieces = chunked(rows(), 4)
    assert next(pieces) == [0, 1, 2, 3]
    assert read == [0, 1, 2, 3]


def test_a_chunk_holds_at_least_one_row() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        list(chunked([1], 0))


def test_rows_are_named_in_the_models_order_and_mappings_kept() -> None:
    names = ["a", "b"]
    assert row_dicts([[1, 2], {"b": 4, "a": 3}, np.array([5, 6])], names) == [
        {"a": 1.0, "b": 2.0},
        {"b": 4, "a": 3},
        {"a": 5.0, "b": 6.0},
    ]
    with pytest.raises(ValueError, match=r"row 1 has 3 values; the model takes 2 \(a, b\)"):
        row_dicts([[1, 2], [1, 2, 3]], names)


async def test_calls_run_at_most_limit_at_once_and_results_keep_input_order() -> None:
    in_flight = most = 0

    async def call(i: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001 * (7 - i % 7))  # later items finish first
        in_flight -= 1
        return i * i

    assert await map_bounded(call, range(20), 3) == [i * i for i in range(20)]
    assert most == 3


async def test_the_items_are_read_no_further_ahead_than_the_calls_in_flight() -> None:
    read: list[int] = []
    started = asyncio.Event()

    def items() -> Iterator[int]:
        for i in range(100):
            read.append(i)
            yield i

    async def call(i: int) -> int:
        if i == 1:
            started.set()
        await asyncio.sleep(0)
        return i

    task = asyncio.ensure_future(map_bounded(call, items(), 2))
    await started.wait()
    assert len(read) <= 3  # two in flight, at most one more read to start the next
    assert await task == list(range(100))


async def test_the_first_failure_is_raised_and_the_other_calls_are_cancelled() -> None:
    cancelled: list[int] = []

    async def call(i: int) -> int:
        if i == 0:
            raise RuntimeError("no answer")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    with pytest.raises(RuntimeError, match="no answer"):
        await map_bounded(call, range(5), 3)
    assert sorted(cancelled) == [1, 2]


async def test_an_empty_input_is_an_empty_result_and_the_limit_is_at_least_one() -> None:
    async def call(i: int) -> int:
        return i

    assert await map_bounded(call, [], 4) == []
    with pytest.raises(ValueError, match="at least one call"):
        await map_bounded(call, [1], 0)
