"""The layout operations of ``synthpre.tasks.ragged`` against plain Python (empty rows included)."""

from __future__ import annotations

import numpy as np

from synthpre.tasks.ragged import (
    first_matches,
    offsets_from_lengths,
    ragged_concat,
    ragged_from_lists,
    ragged_positions,
    ragged_take,
    row_counts,
    row_ids,
    rows_or_empty,
    singleton_rows,
    with_row_starts,
)

ROWS = [[5, 6, 7], [], [8], [9, 9]]


def _rows(values: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    return [values[offsets[r] : offsets[r + 1]].tolist() for r in range(len(offsets) - 1)]


def test_from_lists_take_and_concat_keep_rows() -> None:
    values, offsets = ragged_from_lists(ROWS)
    assert values.dtype == np.int32 and offsets.dtype == np.int64
    assert _rows(values, offsets) == ROWS
    assert _rows(*ragged_take(values, offsets, np.array([3, 1, 0, 3]))) == [ROWS[3], [], ROWS[0], ROWS[3]]
    assert _rows(*ragged_concat([(values, offsets), ragged_from_lists([[1], []])])) == [*ROWS, [1], []]


def test_row_helpers() -> None:
    lengths = np.array([2, 0, 3])
    assert offsets_from_lengths(lengths).tolist() == [0, 2, 2, 5]
    assert row_ids(lengths).tolist() == [0, 0, 2, 2, 2]
    assert ragged_positions(np.array([10, 4, 0]), lengths).tolist() == [10, 11, 0, 1, 2]
    flags = np.array([True, False, True, True, False])
    assert row_counts(flags, offsets_from_lengths(lengths)).tolist() == [1, 0, 2]
    assert _rows(*singleton_rows(np.array([4, 5]))) == [[4], [5]]
    assert _rows(*rows_or_empty(np.array([1, 2, 3]), np.array([2, 0, 1]), 99)) == [[1, 2], [99], [3]]
    # cuts over positions 1..l-1 of rows of 3 and 2 positions -> run starts over all positions
    cuts = np.array([False, True, True])
    assert with_row_starts(cuts, np.array([3, 2])).tolist() == [True, False, True, True, True]


def test_first_matches_finds_the_first_start_before_stop() -> None:
    hay = [1, 2, 1, 2, 3]
    values = np.array([*hay, 1, 2, *hay, 2, 3])  # row 0: hay then needle 1 2; row 1: hay then 2 3
    starts, lengths = np.array([0, 7]), np.array([5, 5])
    needles, needle_lengths = starts + 5, np.array([2, 2])

    def first(stop: list[int]) -> list[int]:
        return first_matches(values, starts, lengths, needles, needle_lengths, np.array(stop)).tolist()

    assert first([9, 9]) == [0, 3]
    assert first([0, 3]) == [-1, -1]  # only starts below ``stop`` count
    assert first([1, 4]) == [0, 3]
