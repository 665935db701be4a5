"""Ragged int arrays and the vectorized operations and random draws the task generators use.

A ragged array is two flat numpy arrays, like an Arrow list array: row ``r`` is
``values[offsets[r]:offsets[r+1]]``, with ``offsets[0] == 0`` and ``offsets[-1] == len(values)``.
"Flat" flags or positions run over the values of all rows, row after row; per-row arguments
(``lengths``, ``sizes``, ``starts``, ...) hold one entry per row.  Nothing here loops over rows in
Python: the loops that remain run over rounds (redraws of rejected rows, pointer jumping, one more
token of a match).  Flat positions (``np.flatnonzero``) are used rather than boolean masks: indexing
with them is faster on random flags.

Each random draw says in its docstring which distribution it produces, and how close where it is
not exact.  The draws only touch the ``rng`` they are given, in a fixed order, so a block's bytes are
a function of the block's seed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# ---------------------------------------------------------------------------------------------
# Layout: building, gathering and joining rows


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """The int64 offsets (``len(lengths) + 1`` of them, from 0) of rows with these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def ragged_from_lists(rows: Iterable[Iterable[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Python rows of ints -> int32 values and int64 offsets."""
    arrays = [np.asarray(list(r), dtype=np.int32) for r in rows]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    values = np.concatenate(arrays) if arrays else np.zeros(0, np.int32)
    return values.astype(np.int32, copy=False), offsets


def row_ids(lengths: np.ndarray) -> np.ndarray:
    """The row of every flat position: ``r`` repeated ``lengths[r]`` times."""
    return np.repeat(np.arange(len(lengths)), lengths)


def ragged_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions ``starts[r] .. starts[r] + lengths[r] - 1`` of every row, row after row."""
    offsets = offsets_from_lengths(lengths)
    return np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], lengths)


def ragged_gather_index(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the values of ``rows`` (in that order) and the offsets of the gathered rows."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    new_offsets = offsets_from_lengths(lengths)
    # position p of the output reads values[starts[row_of_p] + (p - new_offsets[row_of_p])]
    gather = np.arange(new_offsets[-1], dtype=np.int64) + np.repeat(starts - new_offsets[:-1], lengths)
    return gather, new_offsets


def ragged_take(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``rows`` (any order, repeats allowed) as a new ragged array."""
    gather, new_offsets = ragged_gather_index(offsets, rows)
    return values[gather], new_offsets


def ragged_concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``parts`` one after the other (a ragged array with the rows of all parts)."""
    values = np.concatenate([v for v, _ in parts]) if parts else np.zeros(0, np.int32)
    lengths = np.concatenate([np.diff(o) for _, o in parts]) if parts else np.zeros(0, np.int64)
    return values, offsets_from_lengths(lengths)


def ragged_join(parts: list[tuple[np.ndarray, np.ndarray] | int]) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise concatenation of ragged arrays; an ``int`` part is one token added to every row.

    ``ragged_join([(a, a_off), sep, (b, b_off)])`` builds row ``r`` as ``a[r] + [sep] + b[r]``; that
    shape (two ragged parts around one token) takes a faster path.  Values come back as int32, offsets
    as int64 from 0, whatever the path.
    """
    match parts:
        case [(first_values, first_offsets), int(separator), (second_values, second_offsets)]:
            return _join_around((first_values, first_offsets), separator, (second_values, second_offsets))
    ragged = [p for p in parts if not isinstance(p, int)]
    n = len(ragged[0][1]) - 1
    part_lengths = [np.diff(p[1]) if not isinstance(p, int) else np.ones(n, np.int64) for p in parts]
    offsets = offsets_from_lengths(np.sum(part_lengths, axis=0))
    values = np.empty(offsets[-1], dtype=np.int32)
    start = offsets[:-1].copy()  # where the current part begins in each output row
    for part, lengths in zip(parts, part_lengths, strict=True):
        if isinstance(part, int):
            values[start] = part
        else:
            part_values, part_offsets = part
            shift = np.repeat(start - part_offsets[:-1], lengths)
            values[np.arange(len(part_values), dtype=np.int64) + shift] = part_values
        start += lengths
    return values, offsets


def _join_around(
    first: tuple[np.ndarray, np.ndarray], separator: int, second: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r``: ``first[r] + [separator] + second[r]`` with two ``np.insert`` (~2x the general loop)."""
    (first_values, first_offsets), (second_values, second_offsets) = first, second
    tail = np.insert(np.asarray(second_values, np.int32), second_offsets[:-1], separator)  # per row
    tail_lengths = np.diff(second_offsets) + 1
    values = np.insert(np.asarray(first_values, np.int32), np.repeat(first_offsets[1:], tail_lengths), tail)
    return values, offsets_from_lengths(np.diff(first_offsets) + tail_lengths)


def singleton_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per value, holding just that value (int32)."""
    return values.astype(np.int32), np.arange(len(values) + 1, dtype=np.int64)


def rows_or_empty(values: np.ndarray, counts: np.ndarray, empty: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``counts[r]`` values (ragged); a row with none gets the single ``empty`` token."""
    empty_rows = np.flatnonzero(counts == 0)
    if len(empty_rows):
        values = np.insert(values, offsets_from_lengths(counts)[empty_rows], empty)
    return values.astype(np.int32, copy=False), offsets_from_lengths(np.maximum(counts, 1))


def with_row_starts(cuts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Run-start flags over ``totals[r]`` positions from cut flags over positions ``1..totals[r]-1``."""
    return np.insert(cuts, offsets_from_lengths(totals - 1)[:-1], True)


# ---------------------------------------------------------------------------------------------
# Counting, repeats and matches within rows


def row_counts(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many flags are set in each row (``reduceat``: far cheaper than a cumsum of booleans)."""
    padded = np.append(flags, False)  # every row start is then a valid index, even for empty rows
    counts = np.add.reduceat(padded, offsets[:-1], dtype=np.int64)
    counts[offsets[1:] == offsets[:-1]] = 0  # reduceat gives one element for an empty row
    return counts


def _bits(value: int) -> int:
    return max(1, int(value).bit_length())


def later_duplicates(values: np.ndarray, offsets: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Flat positions whose value (in ``lo..hi``) already occurs earlier in the same row (one sort)."""
    lengths = np.diff(offsets)
    n = len(lengths)
    row_bits, value_bits = _bits(n - 1), _bits(hi - lo)
    position_bits = _bits(int(lengths.max(initial=1)) - 1)
    assert row_bits + value_bits + position_bits <= 64
    positions = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
    keys = np.repeat(np.arange(n, dtype=np.uint64), lengths) << (value_bits + position_bits)
    keys |= (values - lo).astype(np.uint64) << position_bits
    keys |= positions.astype(np.uint64)
    keys.sort()
    same_as_previous = (keys[1:] >> position_bits) == (keys[:-1] >> position_bits)
    later = keys[1:][same_as_previous]
    rows = (later >> (value_bits + position_bits)).astype(np.int64)
    return offsets[rows] + (later & ((1 << position_bits) - 1)).astype(np.int64)


def rows_with_repeats(values: np.ndarray, offsets: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The rows that hold some value (in ``lo..hi``) twice: a cheap first pass (one sort of 32-bit
    ``row | value`` keys, ~4x faster than the 64-bit keys of ``later_duplicates``), so that only these
    rows get the exact pass.  All rows when the keys do not fit in 32 bits."""
    n = len(offsets) - 1
    value_bits = _bits(hi - lo)
    if _bits(n - 1) + value_bits > 32:
        return np.arange(n)
    keys = np.repeat(np.arange(n, dtype=np.uint32) << np.uint32(value_bits), np.diff(offsets))
    keys |= (values - lo).astype(np.uint32)
    keys.sort()
    return np.unique(keys[1:][keys[1:] == keys[:-1]] >> np.uint32(value_bits)).astype(np.int64)


def first_matches(
    values: np.ndarray,
    hay_starts: np.ndarray,
    hay_lengths: np.ndarray,
    needle_starts: np.ndarray,
    needle_lengths: np.ndarray,
    stop: np.ndarray,
) -> np.ndarray:
    """Per row, the first start ``< stop[r]`` where the needle occurs in the hay (both are slices of
    ``values``); -1 when none.

    Candidates are the starts whose first token matches; each round checks one more needle token
    on the surviving candidates, so the loop ends as soon as chance matches die out.
    """
    starts_per_row = np.maximum(np.minimum(stop, hay_lengths - needle_lengths + 1), 0)
    positions = ragged_positions(hay_starts, starts_per_row)
    hits = np.flatnonzero(values[positions] == np.repeat(values[needle_starts], starts_per_row))
    candidates = positions[hits]
    rows = np.searchsorted(offsets_from_lengths(starts_per_row), hits, side="right") - 1
    first = np.full(len(hay_starts), np.iinfo(np.int64).max)
    k = 1
    while len(candidates):
        complete = needle_lengths[rows] <= k
        np.minimum.at(first, rows[complete], candidates[complete] - hay_starts[rows[complete]])
        candidates, rows = candidates[~complete], rows[~complete]
        matching = values[candidates + k] == values[needle_starts[rows] + k]
        candidates, rows = candidates[matching], rows[matching]
        k += 1
    first[first == np.iinfo(np.int64).max] = -1
    return first


# ---------------------------------------------------------------------------------------------
# Random draws per row


def below(rng: np.random.Generator, high: np.ndarray) -> np.ndarray:
    """One integer uniform in ``[0, high[i])`` per element: ``floor(u * high)`` with a 53-bit float
    ``u < 1`` (bias below 2**-40 for any high < 2**13; the product never rounds up to ``high``); int32."""
    return (rng.random(len(high)) * high).astype(np.int32)


def coin_flips(rng: np.random.Generator, lengths: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Flags (flat), set with probability ``thresholds[r] / 2**32`` in row ``r``: 32-bit uniforms, two
    per raw 64-bit draw (~2x cheaper than ``rng.random``)."""
    total = int(lengths.sum())
    uniforms = rng.bit_generator.random_raw((total + 1) // 2).view(np.uint32)[:total]
    return uniforms < np.repeat(thresholds, lengths)


def row_coin_flips(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
    """Flags (flat), each set with one probability ``q ~ U(0, 1)`` per row; so a row's count of set
    flags is uniform on ``0..lengths[r]`` (Beta-Binomial) and, given the count, every subset is equally
    likely.  The threshold ``2k + 1``, ``k ~ U[0, 2**31)``, makes ``q = (k + 1/2) / 2**31`` (the
    midpoint rule: the count is uniform up to ~n**2 / 2**66)."""
    thresholds = rng.integers(0, 1 << 31, len(lengths), dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    return coin_flips(rng, lengths, thresholds)


def row_permutations(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
    """A uniform random permutation of ``0..lengths[r]-1`` for every row, flat.

    One sort of 64-bit keys ``row | random | position``: at least 32 random bits, so ties (which
    would keep the position order) have probability below 2**-20 per block.
    """
    n, total = len(lengths), int(lengths.sum())
    row_bits, position_bits = _bits(n - 1), _bits(int(lengths.max(initial=1)) - 1)
    random_bits = 64 - row_bits - position_bits
    assert random_bits >= 32, "rows too long for 64-bit sort keys"
    offsets = offsets_from_lengths(lengths)
    # Raw 64-bit draws masked to the middle bits: ~2x cheaper than ``rng.integers`` and a shift.
    keys = rng.bit_generator.random_raw(total) & np.uint64(((1 << random_bits) - 1) << position_bits)
    # row << (64 - row_bits) | position, as one add: (row << ...) - offset, wrapping, plus the flat index
    row_base = (np.arange(n, dtype=np.uint64) << np.uint64(64 - row_bits)) - offsets[:-1].astype(np.uint64)
    keys |= np.repeat(row_base, lengths) + np.arange(total, dtype=np.uint64)
    keys.sort()
    return (keys & np.uint64((1 << position_bits) - 1)).view(np.int64)  # small values: same bits


def fixed_size_subsets(rng: np.random.Generator, lengths: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Flags (flat) of a uniform subset of exactly ``sizes[r]`` positions per row.

    A coin-flip superset (one probability per row, a little above ``sizes / lengths``; rows with too
    few are flipped again), then the first ``sizes[r]`` members of a random permutation of it: one
    sort of about ``sizes.sum()`` keys instead of ``lengths.sum()``.  Exact: every step treats the
    positions of a row alike, so every subset of the size is equally likely.
    """
    offsets = offsets_from_lengths(lengths)
    share = (sizes + 3 * np.sqrt(sizes) + 2) / np.maximum(lengths, 1)
    thresholds = np.minimum(share * 2.0**32, 2.0**32 - 1).astype(np.uint32)
    superset = coin_flips(rng, lengths, thresholds)
    counts = row_counts(superset, offsets)
    rows = np.flatnonzero(counts < sizes)
    while len(rows):
        gather, sub_offsets = ragged_gather_index(offsets, rows)
        drawn = coin_flips(rng, np.diff(sub_offsets), thresholds[rows])
        superset[gather] = drawn
        counts[rows] = row_counts(drawn, sub_offsets)
        rows = rows[counts[rows] < sizes[rows]]
    members, member_offsets = np.flatnonzero(superset), offsets_from_lengths(counts)
    first_ranks = np.flatnonzero(np.arange(len(members)) < np.repeat(member_offsets[:-1] + sizes, counts))
    chosen = np.repeat(member_offsets[:-1], sizes) + row_permutations(rng, counts)[first_ranks]
    flags = np.zeros(offsets[-1], dtype=bool)
    flags[members[chosen]] = True
    return flags


def random_size_subsets(
    rng: np.random.Generator, lengths: np.ndarray, smallest: np.ndarray, largest: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flags (flat) of a subset per row whose size is uniform on ``[smallest, largest]`` and which,
    given its size, is uniform; and the sizes.  No sort: every position joins with probability
    ``q ~ U(0, 1)``, which makes the size uniform on ``0..n`` (Beta-Binomial), and rows whose size falls
    outside the range are drawn again."""
    offsets = offsets_from_lengths(lengths)
    flags = row_coin_flips(rng, lengths)
    sizes = row_counts(flags, offsets)
    rows = np.flatnonzero((sizes < smallest) | (sizes > largest))
    while len(rows):
        gather, sub_offsets = ragged_gather_index(offsets, rows)
        drawn = row_coin_flips(rng, np.diff(sub_offsets))
        flags[gather] = drawn
        sizes[rows] = row_counts(drawn, sub_offsets)
        rows = rows[(sizes[rows] < smallest[rows]) | (sizes[rows] > largest[rows])]
    return flags, sizes


def compositions(rng: np.random.Generator, totals: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """App. G "randomly partition l into t parts": ``parts[r]`` sizes >= 1 summing to ``totals[r]``,
    uniform over compositions (the cut points are a uniform ``(t-1)``-subset of ``1..l-1``).
    Returns the sizes flat, row after row."""
    cuts = fixed_size_subsets(rng, totals - 1, parts - 1)
    return np.diff(np.append(np.flatnonzero(with_row_starts(cuts, totals)), totals.sum()))


def shuffled_multiset(
    rng: np.random.Generator,
    guaranteed: np.ndarray,
    lengths: np.ndarray,
    distinct: np.ndarray,
    first_occurrences: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels of a uniformly arranged multiset whose label counts are a uniform composition of the
    row length into ``t`` parts, ``t = distinct[r]`` = the row's number of ``guaranteed`` flags.
    Labels are global: row ``r`` uses ``T[r] .. T[r] + t[r] - 1`` with ``T`` the offsets of ``t``.
    With ``first_occurrences``, also the flat position where each label first occurs (for ``set``).

    Sort-free: the guaranteed positions (a uniform t-subset) carry the labels in order; the others
    are filled by a Polya urn (Dirichlet-multinomial with alpha = 1: the i-th filler copies a uniform
    one of the ``t + i`` earlier balls, resolved by pointer jumping).  The fill counts are then
    uniform over weak compositions and, given the counts, every arrangement is equally likely; with
    one guaranteed copy per label this makes the counts uniform over compositions (issue 2) and the
    arrangement uniform, because tokens are assigned to labels at random.
    """
    label_offsets = offsets_from_lengths(distinct)
    fill, kept = np.flatnonzero(~guaranteed), np.flatnonzero(guaranteed)
    fill_lengths = lengths - distinct
    fill_offsets = offsets_from_lengths(fill_lengths)
    # Per filler (int32 and np.repeat: the gathers below are the hot part of set and sort).
    row_distinct = np.repeat(distinct.astype(np.int32), fill_lengths)
    fill_start = np.repeat(fill_offsets[:-1].astype(np.int32), fill_lengths)
    ball = below(rng, row_distinct + np.arange(len(fill), dtype=np.int32) - fill_start)
    is_root = ball < row_distinct
    pointer = ball - row_distinct + fill_start  # the earlier filler copied ...
    roots = np.flatnonzero(is_root)
    pointer[roots] = roots  # ... or itself for a root (faster than np.where on random flags)
    # Pointer doubling, O(log depth) rounds, each over the fillers that do not yet point at a root.
    # (np.take: fancy indexing with int32 indices is ~3x slower than with int64 ones.)
    pending = np.flatnonzero(~is_root)
    while len(pending):
        jumped = np.take(pointer, np.take(pointer, pending))
        pointer[pending] = jumped
        pending = pending[~np.take(is_root, jumped)]
    ball += np.repeat(label_offsets[:-1].astype(np.int32), fill_lengths)  # global labels of the roots
    labels = np.empty(len(guaranteed), dtype=np.int32)
    labels[fill] = np.take(ball, pointer)
    labels[kept] = np.arange(len(kept), dtype=np.int32)
    if not first_occurrences:
        return labels, None
    # A label first occurs at its guaranteed position or at an earlier filler, which is a root (a
    # copy has an earlier filler with the same label): one minimum over the roots only.
    first = kept.astype(np.int32)
    np.minimum.at(first, ball[roots], fill[roots].astype(np.int32))  # the same result in any order
    return labels, first


def distinct_values(rng: np.random.Generator, counts: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``counts[r]`` distinct values of ``lo..hi`` per row, flat; uniform over ordered tuples of distinct
    values (e.g. distinct tokens: ``lo, hi`` of the token space).

    Draw with replacement, then redraw each later duplicate until it differs from every other token
    of its row (and from the redraws before it in the same round).  The redraw rule looks only at
    which tokens are equal, never at their values, so the result stays uniform.
    """
    num_values = hi - lo + 1
    tokens = rng.integers(lo, hi + 1, int(counts.sum()), dtype=np.int32)
    offsets = offsets_from_lengths(counts)
    rows = rows_with_repeats(tokens, offsets, lo, hi)
    if not len(rows):
        return tokens
    gather, sub_offsets = ragged_gather_index(offsets, rows)
    duplicates = gather[later_duplicates(tokens[gather], sub_offsets, lo, hi)]
    # The (row, value) keys present in these rows, sorted; redraws are checked against them (few).
    row_keys = np.searchsorted(offsets, duplicates, side="right") - 1
    row_keys *= num_values
    present = np.repeat(rows * num_values, np.diff(sub_offsets)) + (tokens[gather] - lo)
    present.sort()
    pending = np.arange(len(duplicates))
    while len(pending):
        drawn = rng.integers(lo, hi + 1, len(pending), dtype=np.int32)
        keys = row_keys[pending] + (drawn - lo)
        taken = present[np.minimum(np.searchsorted(present, keys), len(present) - 1)] == keys
        order = np.argsort(keys, kind="stable")
        taken[order[1:]] |= keys[order[1:]] == keys[order[:-1]]  # a redraw repeats an earlier one
        tokens[duplicates[pending[~taken]]] = drawn[~taken]
        present = np.sort(np.concatenate([present, keys[~taken]]))
        pending = pending[taken]
    return tokens
