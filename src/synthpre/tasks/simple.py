"""The 18 simple synthetic tasks of App. G, vectorized over whole blocks of examples.

Every input is ``prefix + task_sep + payload`` (the registry adds the first two); the payload length
``l`` (separators included) is uniform in ``[min_len, max_len]`` (App. G: 10..220).  Generation
decisions where App. G is ambiguous (issue 2, see ``docs/tasks.md``):

- "sample t tokens" means t DISTINCT tokens, ``1 <= t < l``; "partition l into t parts" means a
  composition with every part >= 1, uniform over all compositions;
- set operations list their output in order of first occurrence; an empty output is ``empty``;
- delete removes the FIRST occurrence; search/delete contain sequence 2 with probability exactly 0.75;
- numbers are written as one digit token per decimal digit.

Generators draw everything from the block's ``rng`` with whole-array numpy operations; each task's
``solve`` is the plain-Python reference that the tests hold the generators against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthpre.errors import UserError
from synthpre.tasks.registry import (
    Examples,
    Task,
    offsets_from_lengths,
    ragged_gather_index,
    register,
)
from synthpre.tokens import TokenSpace

# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class SimpleParams:
    """Payload length ``l ~ U[min_len, max_len]``, separators included (App. G: 10..220)."""

    min_len: int = 10
    max_len: int = 220

    shortest: ClassVar[int] = 1  # the shortest payload the task can build

    def content_ids_needed(self) -> int:
        """How many content ids the task needs at ``max_len`` (e.g. distinct tokens to sample)."""
        return 1

    def validate(self, space: TokenSpace) -> None:
        """Raise ``UserError`` when these lengths or this vocabulary cannot make the task."""
        if self.min_len > self.max_len:
            raise UserError(f"min_len {self.min_len} > max_len {self.max_len}: pass --min-len <= --max-len")
        if self.min_len < self.shortest:
            raise UserError(
                f"min_len {self.min_len} is too short: this task needs payloads of at least "
                f"{self.shortest} tokens (separators included); pass --min-len {self.shortest} or more"
            )
        needed = self.content_ids_needed()
        if space.num_content < needed:
            raise UserError(
                f"the vocabulary {space.lo}:{space.hi} has {space.num_content} content ids, but this task "
                f"needs {needed} at max_len {self.max_len}; widen --vocab or lower --max-len"
            )


@dataclass(frozen=True)
class DistinctParams(SimpleParams):
    """set, deduplicate: t < l distinct tokens, so up to ``max_len - 1`` of them."""

    shortest: ClassVar[int] = 2

    def content_ids_needed(self) -> int:
        return self.max_len - 1


@dataclass(frozen=True)
class SortParams(SimpleParams):
    """sort: ``l = l1 + 1 + t`` with ``t < l1`` distinct tokens."""

    shortest: ClassVar[int] = 4

    def content_ids_needed(self) -> int:
        return max(1, (self.max_len - 2) // 2)


@dataclass(frozen=True)
class SetPairParams(SimpleParams):
    """union, intersect, set1_minus_set2, set2_minus_set1: a pool of ``(l - 1) // 2`` distinct tokens."""

    shortest: ClassVar[int] = 3

    def content_ids_needed(self) -> int:
        return max(1, (self.max_len - 1) // 2)


@dataclass(frozen=True)
class ReplaceParams(SimpleParams):
    """replace: ``l = l1 + 1 + 2``."""

    shortest: ClassVar[int] = 4


@dataclass(frozen=True)
class CountParams(SimpleParams):
    """count: ``l = l1 + 1 + 1``; the other tokens differ from the counted one."""

    shortest: ClassVar[int] = 3

    def content_ids_needed(self) -> int:
        return 2


@dataclass(frozen=True)
class SearchParams(SimpleParams):
    """search, delete: sequence 2 is in sequence 1 with probability ``present_prob`` (issue 2: 0.75)."""

    present_prob: float = 0.75

    shortest: ClassVar[int] = 4

    def content_ids_needed(self) -> int:
        # Sequence 1 then misses some content id, so an absent sequence 2 always exists.
        return self.max_len

    def validate(self, space: TokenSpace) -> None:
        super().validate(space)
        if not 0.0 <= self.present_prob <= 1.0:
            raise UserError(f"present_prob {self.present_prob} is not a probability in [0, 1]")


# ---------------------------------------------------------------------------------------------
# Vectorized sampling primitives (flat ragged arrays: row r holds values[offsets[r]:offsets[r+1]])


def _payload_lengths(rng: np.random.Generator, params: SimpleParams, n: int) -> np.ndarray:
    return rng.integers(params.min_len, params.max_len + 1, n)


def _tokens(rng: np.random.Generator, space: TokenSpace, size: int) -> np.ndarray:
    return rng.integers(space.lo, space.hi + 1, size, dtype=np.int32)


def _row_ids(lengths: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(lengths)), lengths)


def _below(rng: np.random.Generator, high: np.ndarray) -> np.ndarray:
    """One integer uniform in ``[0, high[i])`` per element: ``floor(u * high)`` with a 53-bit float
    ``u < 1`` (bias below 2**-40 for any high < 2**13; the product never rounds up to ``high``); int32."""
    return (rng.random(len(high)) * high).astype(np.int32)


def _where(flags: np.ndarray) -> np.ndarray:
    """Positions of the set flags: indexing with them beats a boolean mask on random flags."""
    return np.flatnonzero(flags)


def _row_counts(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many flags are set in each row (``reduceat``: far cheaper than a cumsum of booleans)."""
    padded = np.append(flags, False)  # every row start is then a valid index, even for empty rows
    counts = np.add.reduceat(padded, offsets[:-1], dtype=np.int64)
    counts[offsets[1:] == offsets[:-1]] = 0  # reduceat gives one element for an empty row
    return counts


def _bits(value: int) -> int:
    return max(1, int(value).bit_length())


def _row_permutations(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
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


def _fixed_size_subsets(rng: np.random.Generator, lengths: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Flags (flat) of a uniform subset of exactly ``sizes[r]`` positions per row.

    A coin-flip superset (one probability per row, a little above ``sizes / lengths``; rows with too
    few are flipped again), then the first ``sizes[r]`` members of a random permutation of it: one
    sort of about ``sizes.sum()`` keys instead of ``lengths.sum()``.  Exact: every step treats the
    positions of a row alike, so every subset of the size is equally likely.
    """
    offsets = offsets_from_lengths(lengths)
    share = (sizes + 3 * np.sqrt(sizes) + 2) / np.maximum(lengths, 1)
    thresholds = np.minimum(share * 2.0**32, 2.0**32 - 1).astype(np.uint32)
    superset = _coin_flips(rng, lengths, thresholds)
    counts = _row_counts(superset, offsets)
    rows = np.flatnonzero(counts < sizes)
    while len(rows):
        gather, sub_offsets = ragged_gather_index(offsets, rows)
        drawn = _coin_flips(rng, np.diff(sub_offsets), thresholds[rows])
        superset[gather] = drawn
        counts[rows] = _row_counts(drawn, sub_offsets)
        rows = rows[counts[rows] < sizes[rows]]
    members, member_offsets = _where(superset), offsets_from_lengths(counts)
    first_ranks = _where(np.arange(len(members)) < np.repeat(member_offsets[:-1] + sizes, counts))
    chosen = np.repeat(member_offsets[:-1], sizes) + _row_permutations(rng, counts)[first_ranks]
    flags = np.zeros(offsets[-1], dtype=bool)
    flags[members[chosen]] = True
    return flags


def _coin_flips(rng: np.random.Generator, lengths: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Flags (flat), set with probability ``thresholds[r] / 2**32`` in row ``r``: 32-bit uniforms, two
    per raw 64-bit draw (~2x cheaper than ``rng.random``)."""
    total = int(lengths.sum())
    uniforms = rng.bit_generator.random_raw((total + 1) // 2).view(np.uint32)[:total]
    return uniforms < np.repeat(thresholds, lengths)


def _row_coin_flips(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
    """Flags (flat), each set with one probability ``q ~ U(0, 1)`` per row; so a row's count of set
    flags is uniform on ``0..lengths[r]`` (Beta-Binomial) and, given the count, every subset is equally
    likely.  The threshold ``2k + 1``, ``k ~ U[0, 2**31)``, makes ``q = (k + 1/2) / 2**31`` (the
    midpoint rule: the count is uniform up to ~n**2 / 2**66)."""
    thresholds = rng.integers(0, 1 << 31, len(lengths), dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    return _coin_flips(rng, lengths, thresholds)


def _random_size_subsets(
    rng: np.random.Generator, lengths: np.ndarray, smallest: np.ndarray, largest: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Flags (flat) of a subset per row whose size is uniform on ``[smallest, largest]`` and which,
    given its size, is uniform; and the sizes.  No sort: every position joins with probability
    ``q ~ U(0, 1)``, which makes the size uniform on ``0..n`` (Beta-Binomial), and rows whose size falls
    outside the range are drawn again."""
    offsets = offsets_from_lengths(lengths)
    flags = _row_coin_flips(rng, lengths)
    sizes = _row_counts(flags, offsets)
    rows = np.flatnonzero((sizes < smallest) | (sizes > largest))
    while len(rows):
        gather, sub_offsets = ragged_gather_index(offsets, rows)
        drawn = _row_coin_flips(rng, np.diff(sub_offsets))
        flags[gather] = drawn
        sizes[rows] = _row_counts(drawn, sub_offsets)
        rows = rows[(sizes[rows] < smallest[rows]) | (sizes[rows] > largest[rows])]
    return flags, sizes


def _compositions(rng: np.random.Generator, totals: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """App. G "randomly partition l into t parts": ``parts[r]`` sizes >= 1 summing to ``totals[r]``,
    uniform over compositions (the cut points are a uniform ``(t-1)``-subset of ``1..l-1``).
    Returns the sizes flat, row after row."""
    cuts = _fixed_size_subsets(rng, totals - 1, parts - 1)
    return np.diff(np.append(np.flatnonzero(_with_row_starts(cuts, totals)), totals.sum()))


def _with_row_starts(cuts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Run-start flags over ``totals[r]`` positions from cut flags over positions ``1..totals[r]-1``."""
    return np.insert(cuts, offsets_from_lengths(totals - 1)[:-1], True)


def _shuffled_multiset(
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
    fill, kept = _where(~guaranteed), _where(guaranteed)
    fill_lengths = lengths - distinct
    fill_offsets = offsets_from_lengths(fill_lengths)
    # Per filler (int32 and np.repeat: the gathers below are the hot part of set and sort).
    row_distinct = np.repeat(distinct.astype(np.int32), fill_lengths)
    fill_start = np.repeat(fill_offsets[:-1].astype(np.int32), fill_lengths)
    ball = _below(rng, row_distinct + np.arange(len(fill), dtype=np.int32) - fill_start)
    is_root = ball < row_distinct
    pointer = ball - row_distinct + fill_start  # the earlier filler copied ...
    roots = _where(is_root)
    pointer[roots] = roots  # ... or itself for a root (faster than np.where on random flags)
    # Pointer doubling, O(log depth) rounds, each over the fillers that do not yet point at a root.
    # (np.take: fancy indexing with int32 indices is ~3x slower than with int64 ones.)
    pending = _where(~is_root)
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


def _later_duplicates(values: np.ndarray, offsets: np.ndarray, space: TokenSpace) -> np.ndarray:
    """Flat positions whose value already occurs earlier in the same row (one sort)."""
    lengths = np.diff(offsets)
    n = len(lengths)
    row_bits, value_bits = _bits(n - 1), _bits(space.num_content - 1)
    position_bits = _bits(int(lengths.max(initial=1)) - 1)
    assert row_bits + value_bits + position_bits <= 64
    positions = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
    keys = np.repeat(np.arange(n, dtype=np.uint64), lengths) << (value_bits + position_bits)
    keys |= (values - space.lo).astype(np.uint64) << position_bits
    keys |= positions.astype(np.uint64)
    keys.sort()
    same_as_previous = (keys[1:] >> position_bits) == (keys[:-1] >> position_bits)
    later = keys[1:][same_as_previous]
    rows = (later >> (value_bits + position_bits)).astype(np.int64)
    return offsets[rows] + (later & ((1 << position_bits) - 1)).astype(np.int64)


def _distinct_tokens(rng: np.random.Generator, space: TokenSpace, counts: np.ndarray) -> np.ndarray:
    """``counts[r]`` distinct tokens per row, flat; uniform over ordered tuples of distinct tokens.

    Draw with replacement, then redraw each later duplicate until it differs from every other token
    of its row (and from the redraws before it in the same round).  The redraw rule looks only at
    which tokens are equal, never at their values, so the result stays uniform.
    """
    tokens = _tokens(rng, space, int(counts.sum()))
    offsets = offsets_from_lengths(counts)
    rows = _rows_with_repeats(tokens, offsets, space)
    if not len(rows):
        return tokens
    gather, sub_offsets = ragged_gather_index(offsets, rows)
    duplicates = gather[_later_duplicates(tokens[gather], sub_offsets, space)]
    # The (row, value) keys present in these rows, sorted; redraws are checked against them (few).
    row_keys = np.searchsorted(offsets, duplicates, side="right") - 1
    row_keys *= space.num_content
    present = np.repeat(rows * space.num_content, np.diff(sub_offsets)) + (tokens[gather] - space.lo)
    present.sort()
    pending = np.arange(len(duplicates))
    while len(pending):
        drawn = _tokens(rng, space, len(pending))
        keys = row_keys[pending] + (drawn - space.lo)
        taken = present[np.minimum(np.searchsorted(present, keys), len(present) - 1)] == keys
        order = np.argsort(keys, kind="stable")
        taken[order[1:]] |= keys[order[1:]] == keys[order[:-1]]  # a redraw repeats an earlier one
        tokens[duplicates[pending[~taken]]] = drawn[~taken]
        present = np.sort(np.concatenate([present, keys[~taken]]))
        pending = pending[taken]
    return tokens


def _rows_with_repeats(values: np.ndarray, offsets: np.ndarray, space: TokenSpace) -> np.ndarray:
    """The rows that hold some value twice: a cheap first pass (one sort of 32-bit ``row | value``
    keys, ~4x faster than the 64-bit keys of ``_later_duplicates``), so that only these rows get the
    exact pass.  All rows when the keys do not fit in 32 bits."""
    n = len(offsets) - 1
    value_bits = _bits(space.num_content - 1)
    if _bits(n - 1) + value_bits > 32:
        return np.arange(n)
    keys = np.repeat(np.arange(n, dtype=np.uint32) << np.uint32(value_bits), np.diff(offsets))
    keys |= (values - space.lo).astype(np.uint32)
    keys.sort()
    return np.unique(keys[1:][keys[1:] == keys[:-1]] >> np.uint32(value_bits)).astype(np.int64)


def _numbers(space: TokenSpace, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as decimal digit tokens, one per digit (ragged)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    num_digits = 1 + np.searchsorted(10 ** np.arange(1, 19, dtype=np.int64), numbers, side="right")
    offsets = offsets_from_lengths(num_digits)
    rows = _row_ids(num_digits)
    exponent = offsets[rows + 1] - 1 - np.arange(offsets[-1])
    digits = numbers[rows] // 10**exponent % 10
    return space.digit_ids[digits], offsets


def _rows_or_empty(values: np.ndarray, counts: np.ndarray, empty: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``counts[r]`` values (ragged); a row with none gets the single ``empty`` token."""
    empty_rows = np.flatnonzero(counts == 0)
    if len(empty_rows):
        values = np.insert(values, offsets_from_lengths(counts)[empty_rows], empty)
    return values.astype(np.int32, copy=False), offsets_from_lengths(np.maximum(counts, 1))


def _join(
    first: tuple[np.ndarray, np.ndarray], separator: int, second: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Row ``r``: ``first[r] + [separator] + second[r]`` (two ``np.insert``: ~2x a ``ragged_join``)."""
    (first_values, first_offsets), (second_values, second_offsets) = first, second
    tail = np.insert(second_values, second_offsets[:-1], separator)  # separator + second, per row
    tail_lengths = np.diff(second_offsets) + 1
    values = np.insert(first_values, np.repeat(first_offsets[1:], tail_lengths), tail)
    return values, first_offsets + offsets_from_lengths(tail_lengths)


def _single_tokens(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.astype(np.int32), np.arange(len(values) + 1, dtype=np.int64)


def _examples(inputs: tuple[np.ndarray, np.ndarray], targets: tuple[np.ndarray, np.ndarray]) -> Examples:
    return Examples(inputs[0], inputs[1], targets[0], targets[1])


# ---------------------------------------------------------------------------------------------
# Reference solvers: plain Python on one full input (prefix + task_sep + payload)


def _payload(inputs: np.ndarray, space: TokenSpace) -> list[int]:
    tokens = [int(x) for x in inputs]
    return tokens[tokens.index(space.task_sep) + 1 :]


def _two_sequences(inputs: np.ndarray, space: TokenSpace) -> tuple[list[int], list[int]]:
    payload = _payload(inputs, space)
    cut = payload.index(space.arg_sep)
    return payload[:cut], payload[cut + 1 :]


def _write_number(number: int, space: TokenSpace) -> list[int]:
    return [int(space.digit_ids[int(digit)]) for digit in str(number)]


def _unique_in_order(tokens: list[int]) -> list[int]:
    return list(dict.fromkeys(tokens))


def _or_empty(tokens: list[int], space: TokenSpace) -> np.ndarray:
    return np.array(tokens or [space.empty], dtype=np.int32)


def _array(tokens: list[int]) -> np.ndarray:
    return np.array(tokens, dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# Unary tasks over i.i.d. tokens (G.4 identity, G.8 duplicate, G.10 reverse, G.13/14, G.17 length)


def _iid_sequences(rng: np.random.Generator, params: SimpleParams, space: TokenSpace, n: int):
    lengths = _payload_lengths(rng, params, n)
    offsets = offsets_from_lengths(lengths)
    return _tokens(rng, space, int(offsets[-1])), offsets


def generate_identity(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), (values, offsets))


def generate_reverse(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    lengths = np.diff(offsets)
    mirror = np.repeat(offsets[:-1] + offsets[1:] - 1, lengths) - np.arange(offsets[-1])
    return _examples((values, offsets), (values[mirror], offsets))


def generate_duplicate(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    twice = np.stack([values, values], axis=1).ravel()  # ~2x faster than np.repeat(values, 2)
    return _examples((values, offsets), (twice, offsets * 2))


def generate_first_token(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), _single_tokens(values[offsets[:-1]]))


def generate_last_token(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), _single_tokens(values[offsets[1:] - 1]))


def generate_length(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), _numbers(space, np.diff(offsets)))


# ---------------------------------------------------------------------------------------------
# Multisets of t distinct tokens in runs (G.1 set, G.3 sort, G.12 deduplicate)


def generate_set(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    guaranteed, distinct = _random_size_subsets(rng, lengths, np.ones(n, np.int64), lengths - 1)  # 1 <= t < l
    offsets = offsets_from_lengths(lengths)
    labels, first = _shuffled_multiset(rng, guaranteed, lengths, distinct, first_occurrences=True)
    assert first is not None
    inputs = np.take(_distinct_tokens(rng, space, distinct), labels)
    first.sort()  # flat positions sorted: rows in order, each in order of first occurrence
    return _examples((inputs, offsets), (np.take(inputs, first), offsets_from_lengths(distinct)))


def generate_deduplicate(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    # t - 1 cuts among the l - 1 gaps, 0 <= t - 1 <= l - 2: a uniform composition with t uniform.
    cuts, num_cuts = _random_size_subsets(rng, lengths - 1, np.zeros(n, np.int64), lengths - 2)
    distinct = num_cuts + 1
    starts = np.flatnonzero(_with_row_starts(cuts, lengths))
    tokens = _distinct_tokens(rng, space, distinct)
    inputs = np.repeat(tokens, np.diff(np.append(starts, lengths.sum())))
    return _examples((inputs, offsets_from_lengths(lengths)), (tokens, offsets_from_lengths(distinct)))


def generate_sort(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    distinct = rng.integers(1, (lengths - 2) // 2 + 1)  # t < l1 = l - 1 - t
    first_lengths = lengths - 1 - distinct
    order_offsets = offsets_from_lengths(distinct)
    guaranteed = _fixed_size_subsets(rng, first_lengths, distinct)
    labels, _ = _shuffled_multiset(rng, guaranteed, first_lengths, distinct)
    tokens = _distinct_tokens(rng, space, distinct)
    first_offsets = offsets_from_lengths(first_lengths)
    inputs = _join((np.take(tokens, labels), first_offsets), space.arg_sep, (tokens, order_offsets))
    sorted_sequence = np.repeat(tokens, np.bincount(labels, minlength=order_offsets[-1]))
    return _examples(inputs, (sorted_sequence, first_offsets))


# ---------------------------------------------------------------------------------------------
# Set operations on two sequences drawn from one pool (G.5, G.6, G.9, G.11)


def _set_pair(
    params: SimpleParams,
    space: TokenSpace,
    rng: np.random.Generator,
    n: int,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> Examples:
    """``l = l1 + 1 + l2`` (l1, l2 >= 1), both drawn from a pool of ``(l - 1) // 2`` distinct tokens.

    ``keep(in_first_sequence, in_second_sequence)`` picks, per pool token, those of the output; they
    are output at their first occurrence in the payload, so in order of first occurrence.
    """
    lengths = _payload_lengths(rng, params, n)
    first_lengths = rng.integers(1, lengths - 1)
    pool_sizes = (lengths - 1) // 2
    pool = _distinct_tokens(rng, space, pool_sizes)
    pool_offsets = offsets_from_lengths(pool_sizes)
    # Laid out as the payload: sequence 1, a separator slot, sequence 2 (np.repeat: cheaper than gathers).
    offsets = offsets_from_lengths(lengths)
    total = int(offsets[-1])
    position = np.arange(total, dtype=np.int32)
    separators = offsets[:-1] + first_lengths
    pool_index = np.repeat(pool_offsets[:-1], lengths)  # int64: it indexes scatters below
    pool_index += _below(rng, np.repeat(pool_sizes.astype(np.int32), lengths))
    pool_index[separators] = len(pool)  # a label of its own that is never output
    values = np.take(np.append(pool, np.int32(space.arg_sep)), pool_index)
    # Per pool token: where it first occurs (``total`` if nowhere) and whether it is in each sequence.
    first_position = np.full(len(pool) + 1, total, dtype=np.int32)
    np.minimum.at(first_position, pool_index, position)  # a minimum: the same result in any order
    first_position = first_position[:-1]
    in_first = first_position < np.repeat(separators, pool_sizes)
    in_second = np.zeros(len(pool) + 1, dtype=bool)
    in_second[pool_index[_where(position > np.repeat(separators.astype(np.int32), lengths))]] = True
    output = keep(in_first, in_second[:-1])
    # Flat positions sorted are rows in order, each in position order (a small sort of int32).
    output_positions = np.sort(first_position[_where(output)])
    counts = np.add.reduceat(output, pool_offsets[:-1], dtype=np.int64)  # every pool is non-empty
    output_values = np.take(values, output_positions)
    return _examples((values, offsets), _rows_or_empty(output_values, counts, space.empty))


def generate_union(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    return _set_pair(params, space, rng, n, lambda in1, in2: in1 | in2)


def generate_intersect(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    return _set_pair(params, space, rng, n, lambda in1, in2: in1 & in2)


def generate_set1_minus_set2(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    return _set_pair(params, space, rng, n, lambda in1, in2: in1 & ~in2)


def generate_set2_minus_set1(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    return _set_pair(params, space, rng, n, lambda in1, in2: in2 & ~in1)


# ---------------------------------------------------------------------------------------------
# G.7 replace, G.18 count, G.15 longest_word


def generate_replace(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    first_lengths = _payload_lengths(rng, params, n) - 3
    offsets = offsets_from_lengths(first_lengths)
    sequence = _tokens(rng, space, int(offsets[-1]))
    # t1 uniform over the SET of tokens of sequence 1: a uniform position, kept with 1/count.
    old = np.empty(n, dtype=np.int32)
    pending = np.arange(n)
    while len(pending):
        candidate = sequence[offsets[pending] + _below(rng, first_lengths[pending])]
        if len(pending) == n:  # the first round: every row, no gather
            values, sub_offsets = sequence, offsets
        else:
            gather, sub_offsets = ragged_gather_index(offsets, pending)
            values = sequence[gather]
        count = _row_counts(values == np.repeat(candidate, np.diff(sub_offsets)), sub_offsets)
        accepted = rng.random(len(pending)) * count < 1
        old[pending[accepted]] = candidate[accepted]
        pending = pending[~accepted]
    new = _tokens(rng, space, n)
    target = sequence.copy()
    replaced = _where(sequence == np.repeat(old, first_lengths))
    target[replaced] = new[np.searchsorted(offsets, replaced, side="right") - 1]
    pair = np.stack([old, new], axis=1).ravel()
    inputs = _join((sequence, offsets), space.arg_sep, (pair, np.arange(n + 1) * 2))
    return _examples(inputs, (target, offsets))


def generate_count(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    # Laid out as the payload: sequence 1 (l - 2 tokens), the separator, the counted token.
    lengths = _payload_lengths(rng, params, n)
    offsets = offsets_from_lengths(lengths)
    counted = _tokens(rng, space, n)
    row_counted = np.repeat(counted, lengths)
    is_counted = _row_coin_flips(rng, lengths)  # over sequence 1: a count uniform on 0..l1, uniform places
    is_counted[offsets[1:] - 2] = is_counted[offsets[1:] - 1] = False
    payload = rng.integers(space.lo, space.hi, int(offsets[-1]), dtype=np.int32)
    payload += payload >= row_counted  # skip the counted token: its count is exactly c
    np.copyto(payload, row_counted, where=is_counted)
    payload[offsets[1:] - 2], payload[offsets[1:] - 1] = space.arg_sep, counted
    return _examples((payload, offsets), _numbers(space, _row_counts(is_counted, offsets)))


def generate_longest_word(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    words = rng.integers(1, (lengths + 1) // 2 + 1)  # w words need w + (w - 1) <= l
    word_lengths = _compositions(rng, lengths - words + 1, words)
    offsets, word_offsets = offsets_from_lengths(lengths), offsets_from_lengths(words)
    values = _tokens(rng, space, int(offsets[-1]))
    # Each word plus a trailing separator, laid out flat, would put row r at offset + r: a separator
    # ends every word but the last of its row.
    separators = np.cumsum(word_lengths + 1) - 1 - np.repeat(np.arange(n), words)
    is_last = np.zeros(len(word_lengths), dtype=bool)
    is_last[word_offsets[1:] - 1] = True
    values[separators[~is_last]] = space.word_sep
    longest = np.maximum.reduceat(word_lengths, word_offsets[:-1])
    return _examples((values, offsets), _numbers(space, longest))


# ---------------------------------------------------------------------------------------------
# G.16 search and G.2 delete: sequence 2 planted in sequence 1 with probability present_prob


def _ragged_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions ``starts[r] .. starts[r] + lengths[r] - 1`` of every row, row after row."""
    offsets = offsets_from_lengths(lengths)
    return np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], lengths)


def _first_matches(
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
    positions = _ragged_positions(hay_starts, starts_per_row)
    hits = _where(values[positions] == np.repeat(values[needle_starts], starts_per_row))
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


def _planted(params: SearchParams, space: TokenSpace, rng: np.random.Generator, n: int):
    """The payloads (sequence 1, separator, sequence 2; ragged), the starts and lengths of sequence 1
    (the hay) and 2 (the needle), whether 2 was planted, and its first start in 1 (-1 if absent).

    ``l = l1 + 1 + m`` with ``m ~ U[1, (l-2)//2]``, so ``l1 > m``.  Present (prob. ``present_prob``):
    sample sequence 2, sample sequence 1, plant 2 at a uniform location.  Absent: sample both, then
    redraw sequence 2 while it occurs in sequence 1 (App. G.2/G.16).
    """
    lengths = _payload_lengths(rng, params, n)
    needle_lengths = rng.integers(1, (lengths - 2) // 2 + 1)
    hay_lengths = lengths - 1 - needle_lengths
    present = rng.random(n) < params.present_prob
    location = rng.integers(0, hay_lengths - needle_lengths + 1)
    offsets = offsets_from_lengths(lengths)
    hay_starts, needle_starts = offsets[:-1], offsets[:-1] + hay_lengths + 1
    payload = _tokens(rng, space, int(offsets[-1]))
    payload[needle_starts - 1] = space.arg_sep
    planted = np.flatnonzero(present)
    source = _ragged_positions(needle_starts[planted], needle_lengths[planted])
    payload[_ragged_positions(hay_starts[planted] + location[planted], needle_lengths[planted])] = payload[
        source
    ]
    # A chance occurrence before the planted one is the first occurrence.
    no_stop = hay_lengths + 1
    stop = np.where(present, location, no_stop)
    first = _first_matches(payload, hay_starts, hay_lengths, needle_starts, needle_lengths, stop)
    first[present & (first < 0)] = location[present & (first < 0)]
    clash = np.flatnonzero(~present & (first >= 0))
    while len(clash):
        redraw = _ragged_positions(needle_starts[clash], needle_lengths[clash])
        payload[redraw] = _tokens(rng, space, len(redraw))
        again = _first_matches(
            payload,
            hay_starts[clash],
            hay_lengths[clash],
            needle_starts[clash],
            needle_lengths[clash],
            no_stop[clash],
        )
        clash = clash[again >= 0]
    first[~present] = -1
    return (payload, offsets), (hay_starts, hay_lengths), (needle_starts, needle_lengths), present, first


def generate_search(params: SearchParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    inputs, _, _, present, _ = _planted(params, space, rng, n)
    return _examples(inputs, _single_tokens(np.where(present, space.yes, space.no)))


def generate_delete(params: SearchParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    (payload, offsets), (hay_starts, hay_lengths), (_, needle_lengths), present, first = _planted(
        params, space, rng, n
    )
    # The target is sequence 1 without the first occurrence: drop that, the separator and sequence 2.
    keep = np.zeros(len(payload), dtype=bool)
    keep[_ragged_positions(hay_starts, hay_lengths)] = True
    rows = np.flatnonzero(present)
    keep[_ragged_positions(hay_starts[rows] + first[rows], needle_lengths[rows])] = False
    target_offsets = offsets_from_lengths(hay_lengths - needle_lengths * present)
    return _examples((payload, offsets), (payload[_where(keep)], target_offsets))


# ---------------------------------------------------------------------------------------------
# Reference solvers


def solve_set(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_unique_in_order(_payload(inputs, space)))


def solve_delete(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, pattern = _two_sequences(inputs, space)
    for start in range(len(sequence) - len(pattern) + 1):
        if sequence[start : start + len(pattern)] == pattern:
            return _or_empty(sequence[:start] + sequence[start + len(pattern) :], space)
    return _or_empty(sequence, space)


def solve_sort(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, order = _two_sequences(inputs, space)
    rank = {token: i for i, token in enumerate(order)}
    return _array(sorted(sequence, key=rank.__getitem__))


def solve_identity(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space))


def solve_union(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty(_unique_in_order(first + second), space)


def solve_set1_minus_set2(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty([t for t in _unique_in_order(first) if t not in set(second)], space)


def solve_replace(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, (old, new) = _two_sequences(inputs, space)
    return _array([new if token == old else token for token in sequence])


def solve_duplicate(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array([token for token in _payload(inputs, space) for _ in range(2)])


def solve_intersect(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty([t for t in _unique_in_order(first) if t in set(second)], space)


def solve_reverse(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space)[::-1])


def solve_set2_minus_set1(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty([t for t in _unique_in_order(second) if t not in set(first)], space)


def solve_deduplicate(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    payload = _payload(inputs, space)
    return _array([t for i, t in enumerate(payload) if i == 0 or payload[i - 1] != t])


def solve_last_token(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space)[-1:])


def solve_first_token(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space)[:1])


def solve_longest_word(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    words, current = [], 0
    for token in _payload(inputs, space):
        if token == space.word_sep:
            words.append(current)
            current = 0
        else:
            current += 1
    return _array(_write_number(max([*words, current]), space))


def solve_search(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, pattern = _two_sequences(inputs, space)
    found = any(
        sequence[start : start + len(pattern)] == pattern for start in range(len(sequence) - len(pattern) + 1)
    )
    return _array([space.yes if found else space.no])


def solve_length(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_write_number(len(_payload(inputs, space)), space))


def solve_count(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, (token,) = _two_sequences(inputs, space)
    return _array(_write_number(sequence.count(token), space))


# ---------------------------------------------------------------------------------------------
# Registration, in the order of App. G


def _register(name: str, definition: str, params_cls: type, generate, solve) -> None:
    register(
        Task(name=name, definition=definition, generate_block=generate, params_cls=params_cls, solve=solve)
    )


_register(
    "set",
    "the input without duplicates, in order of first occurrence (G.1)",
    DistinctParams,
    generate_set,
    solve_set,
)
_register(
    "delete",
    "sequence 1 with the first occurrence of sequence 2 deleted (G.2)",
    SearchParams,
    generate_delete,
    solve_delete,
)
_register(
    "sort",
    "sequence 1 sorted by the order of the tokens in sequence 2 (G.3)",
    SortParams,
    generate_sort,
    solve_sort,
)
_register("identity", "the input unchanged (G.4)", SimpleParams, generate_identity, solve_identity)
_register(
    "union",
    "tokens of sequence 1 or 2, in order of first occurrence (G.5)",
    SetPairParams,
    generate_union,
    solve_union,
)
_register(
    "set1_minus_set2",
    "tokens of sequence 1 not in sequence 2 (G.6)",
    SetPairParams,
    generate_set1_minus_set2,
    solve_set1_minus_set2,
)
_register(
    "replace",
    "sequence 1 with every t1 replaced by t2, where sequence 2 = t1 t2 (G.7)",
    ReplaceParams,
    generate_replace,
    solve_replace,
)
_register(
    "duplicate", "every input token written twice (G.8)", SimpleParams, generate_duplicate, solve_duplicate
)
_register(
    "intersect",
    "tokens of sequence 1 also in sequence 2, in order of first occurrence (G.9)",
    SetPairParams,
    generate_intersect,
    solve_intersect,
)
_register("reverse", "the input in reverse order (G.10)", SimpleParams, generate_reverse, solve_reverse)
_register(
    "set2_minus_set1",
    "tokens of sequence 2 not in sequence 1 (G.11)",
    SetPairParams,
    generate_set2_minus_set1,
    solve_set2_minus_set1,
)
_register(
    "deduplicate",
    "the input with adjacent repeats collapsed (G.12)",
    DistinctParams,
    generate_deduplicate,
    solve_deduplicate,
)
_register("last_token", "the last input token (G.13)", SimpleParams, generate_last_token, solve_last_token)
_register(
    "first_token", "the first input token (G.14)", SimpleParams, generate_first_token, solve_first_token
)
_register(
    "longest_word",
    "the length of the longest run between word separators, as digits (G.15)",
    SimpleParams,
    generate_longest_word,
    solve_longest_word,
)
_register(
    "search",
    "yes if sequence 2 occurs in sequence 1, else no (G.16)",
    SearchParams,
    generate_search,
    solve_search,
)
_register(
    "length", "the number of input tokens, as digits (G.17)", SimpleParams, generate_length, solve_length
)
_register(
    "count",
    "how often the token of sequence 2 occurs in sequence 1, as digits (G.18)",
    CountParams,
    generate_count,
    solve_count,
)
