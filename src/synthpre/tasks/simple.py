"""The 18 simple synthetic tasks of App. G, vectorized over whole blocks of examples.

Every input is ``prefix + task_sep + payload`` (the registry adds the first two); the payload length
``l`` (separators included) is uniform in ``[min_len, max_len]`` (App. G: 10..220).  Generation
decisions where App. G is ambiguous (issue 2, see ``docs/tasks.md``):

- "sample t tokens" means t DISTINCT tokens, ``1 <= t < l``; "partition l into t parts" means a
  composition with every part >= 1, uniform over all compositions;
- set operations list their output in order of first occurrence; an empty output is ``empty``;
- delete removes the FIRST occurrence; search/delete contain sequence 2 with probability exactly 0.75;
- numbers are written as one digit token per decimal digit.

Generators draw everything from the block's ``rng`` with whole-array numpy operations on ragged
arrays (``synthpre.tasks.ragged``); each task's ``solve`` is the plain-Python reference that the tests
hold the generators against.  Layout: the parameters and the shared helpers first, then one block per
task in the order of App. G (G.1 set .. G.18 count): its generator, its ``solve``, its registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthpre.errors import UserError
from synthpre.tasks.ragged import (
    below,
    compositions,
    distinct_values,
    first_matches,
    fixed_size_subsets,
    offsets_from_lengths,
    ragged_gather_index,
    ragged_join,
    ragged_positions,
    random_size_subsets,
    row_coin_flips,
    row_counts,
    row_ids,
    rows_or_empty,
    shuffled_multiset,
    singleton_rows,
    with_row_starts,
)
from synthpre.tasks.registry import Examples, Generator, Task, register
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
            raise UserError(
                f"min_len {self.min_len} > max_len {self.max_len}: "
                "need min_len <= max_len (--min-len, --max-len)"
            )
        if self.min_len < self.shortest:
            raise UserError(
                f"min_len {self.min_len} is too short: this task needs payloads of at least "
                f"{self.shortest} tokens (separators included); "
                f"set min_len (--min-len) to {self.shortest} or more"
            )
        needed = self.content_ids_needed()
        if space.num_content < needed:
            raise UserError(
                f"the vocabulary {space.lo}:{space.hi} has {space.num_content} content ids, but this task "
                f"needs {needed} at max_len {self.max_len}; "
                "widen vocab (--vocab) or lower max_len (--max-len)"
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
# Shared helpers of the generators


def _payload_lengths(rng: np.random.Generator, params: SimpleParams, n: int) -> np.ndarray:
    return rng.integers(params.min_len, params.max_len + 1, n)


def _tokens(rng: np.random.Generator, space: TokenSpace, size: int) -> np.ndarray:
    return rng.integers(space.lo, space.hi + 1, size, dtype=np.int32)


def _numbers(space: TokenSpace, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as decimal digit tokens, one per digit (ragged)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    num_digits = 1 + np.searchsorted(10 ** np.arange(1, 19, dtype=np.int64), numbers, side="right")
    offsets = offsets_from_lengths(num_digits)
    rows = row_ids(num_digits)
    exponent = offsets[rows + 1] - 1 - np.arange(offsets[-1])
    digits = numbers[rows] // 10**exponent % 10
    return space.digit_ids[digits], offsets


def _examples(inputs: tuple[np.ndarray, np.ndarray], targets: tuple[np.ndarray, np.ndarray]) -> Examples:
    return Examples(inputs[0], inputs[1], targets[0], targets[1])


def _iid_sequences(rng: np.random.Generator, params: SimpleParams, space: TokenSpace, n: int):
    lengths = _payload_lengths(rng, params, n)
    offsets = offsets_from_lengths(lengths)
    return _tokens(rng, space, int(offsets[-1])), offsets


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
    pool = distinct_values(rng, pool_sizes, space.lo, space.hi)
    pool_offsets = offsets_from_lengths(pool_sizes)
    # Laid out as the payload: sequence 1, a separator slot, sequence 2 (np.repeat: cheaper than gathers).
    offsets = offsets_from_lengths(lengths)
    total = int(offsets[-1])
    position = np.arange(total, dtype=np.int32)
    separators = offsets[:-1] + first_lengths
    pool_index = np.repeat(pool_offsets[:-1], lengths)  # int64: it indexes scatters below
    pool_index += below(rng, np.repeat(pool_sizes.astype(np.int32), lengths))
    pool_index[separators] = len(pool)  # a label of its own that is never output
    values = np.take(np.append(pool, np.int32(space.arg_sep)), pool_index)
    # Per pool token: where it first occurs (``total`` if nowhere) and whether it is in each sequence.
    first_position = np.full(len(pool) + 1, total, dtype=np.int32)
    np.minimum.at(first_position, pool_index, position)  # a minimum: the same result in any order
    first_position = first_position[:-1]
    in_first = first_position < np.repeat(separators, pool_sizes)
    in_second = np.zeros(len(pool) + 1, dtype=bool)
    in_second[pool_index[np.flatnonzero(position > np.repeat(separators.astype(np.int32), lengths))]] = True
    output = keep(in_first, in_second[:-1])
    # Flat positions sorted are rows in order, each in position order (a small sort of int32).
    output_positions = np.sort(first_position[np.flatnonzero(output)])
    counts = np.add.reduceat(output, pool_offsets[:-1], dtype=np.int64)  # every pool is non-empty
    output_values = np.take(values, output_positions)
    return _examples((values, offsets), rows_or_empty(output_values, counts, space.empty))


def _set_operation(keep: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Generator:
    """The generator of a set operation (G.5, G.6, G.9, G.11): ``_set_pair`` with this ``keep`` rule."""

    def generate(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
        return _set_pair(params, space, rng, n, keep)

    return generate


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
    source = ragged_positions(needle_starts[planted], needle_lengths[planted])
    payload[ragged_positions(hay_starts[planted] + location[planted], needle_lengths[planted])] = payload[
        source
    ]
    # A chance occurrence before the planted one is the first occurrence.
    no_stop = hay_lengths + 1
    stop = np.where(present, location, no_stop)
    first = first_matches(payload, hay_starts, hay_lengths, needle_starts, needle_lengths, stop)
    first[present & (first < 0)] = location[present & (first < 0)]
    clash = np.flatnonzero(~present & (first >= 0))
    while len(clash):
        redraw = ragged_positions(needle_starts[clash], needle_lengths[clash])
        payload[redraw] = _tokens(rng, space, len(redraw))
        again = first_matches(
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


# ---------------------------------------------------------------------------------------------
# Shared helpers of the reference solvers: plain Python on one full input (prefix + task_sep + payload)


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


def _register(name: str, definition: str, params_cls: type, generate: Generator, solve) -> None:
    """Register one task; the blocks below run in App. G order, so the registry lists them in it."""
    register(
        Task(name=name, definition=definition, generate_block=generate, params_cls=params_cls, solve=solve)
    )


# ---------------------------------------------------------------------------------------------
# G.1 set


def generate_set(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    guaranteed, distinct = random_size_subsets(rng, lengths, np.ones(n, np.int64), lengths - 1)  # 1 <= t < l
    offsets = offsets_from_lengths(lengths)
    labels, first = shuffled_multiset(rng, guaranteed, lengths, distinct, first_occurrences=True)
    assert first is not None
    inputs = np.take(distinct_values(rng, distinct, space.lo, space.hi), labels)
    first.sort()  # flat positions sorted: rows in order, each in order of first occurrence
    return _examples((inputs, offsets), (np.take(inputs, first), offsets_from_lengths(distinct)))


def solve_set(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_unique_in_order(_payload(inputs, space)))


_register(
    "set",
    "the input without duplicates, in order of first occurrence (G.1)",
    DistinctParams,
    generate_set,
    solve_set,
)


# ---------------------------------------------------------------------------------------------
# G.2 delete


def generate_delete(params: SearchParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    (payload, offsets), (hay_starts, hay_lengths), (_, needle_lengths), present, first = _planted(
        params, space, rng, n
    )
    # The target is sequence 1 without the first occurrence: drop that, the separator and sequence 2.
    keep = np.zeros(len(payload), dtype=bool)
    keep[ragged_positions(hay_starts, hay_lengths)] = True
    rows = np.flatnonzero(present)
    keep[ragged_positions(hay_starts[rows] + first[rows], needle_lengths[rows])] = False
    target_offsets = offsets_from_lengths(hay_lengths - needle_lengths * present)
    return _examples((payload, offsets), (payload[np.flatnonzero(keep)], target_offsets))


def solve_delete(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, pattern = _two_sequences(inputs, space)
    for start in range(len(sequence) - len(pattern) + 1):
        if sequence[start : start + len(pattern)] == pattern:
            return _or_empty(sequence[:start] + sequence[start + len(pattern) :], space)
    return _or_empty(sequence, space)


_register(
    "delete",
    "sequence 1 with the first occurrence of sequence 2 deleted (G.2)",
    SearchParams,
    generate_delete,
    solve_delete,
)


# ---------------------------------------------------------------------------------------------
# G.3 sort


def generate_sort(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    distinct = rng.integers(1, (lengths - 2) // 2 + 1)  # t < l1 = l - 1 - t
    first_lengths = lengths - 1 - distinct
    order_offsets = offsets_from_lengths(distinct)
    guaranteed = fixed_size_subsets(rng, first_lengths, distinct)
    labels, _ = shuffled_multiset(rng, guaranteed, first_lengths, distinct)
    tokens = distinct_values(rng, distinct, space.lo, space.hi)
    first_offsets = offsets_from_lengths(first_lengths)
    inputs = ragged_join([(np.take(tokens, labels), first_offsets), space.arg_sep, (tokens, order_offsets)])
    sorted_sequence = np.repeat(tokens, np.bincount(labels, minlength=order_offsets[-1]))
    return _examples(inputs, (sorted_sequence, first_offsets))


def solve_sort(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, order = _two_sequences(inputs, space)
    rank = {token: i for i, token in enumerate(order)}
    return _array(sorted(sequence, key=rank.__getitem__))


_register(
    "sort",
    "sequence 1 sorted by the order of the tokens in sequence 2 (G.3)",
    SortParams,
    generate_sort,
    solve_sort,
)


# ---------------------------------------------------------------------------------------------
# G.4 identity


def generate_identity(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), (values, offsets))


def solve_identity(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space))


_register("identity", "the input unchanged (G.4)", SimpleParams, generate_identity, solve_identity)


# ---------------------------------------------------------------------------------------------
# G.5 union


generate_union = _set_operation(lambda in1, in2: in1 | in2)


def solve_union(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty(_unique_in_order(first + second), space)


_register(
    "union",
    "tokens of sequence 1 or 2, in order of first occurrence (G.5)",
    SetPairParams,
    generate_union,
    solve_union,
)


# ---------------------------------------------------------------------------------------------
# G.6 set1_minus_set2


generate_set1_minus_set2 = _set_operation(lambda in1, in2: in1 & ~in2)


def solve_set1_minus_set2(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty([t for t in _unique_in_order(first) if t not in set(second)], space)


_register(
    "set1_minus_set2",
    "tokens of sequence 1 not in sequence 2 (G.6)",
    SetPairParams,
    generate_set1_minus_set2,
    solve_set1_minus_set2,
)


# ---------------------------------------------------------------------------------------------
# G.7 replace


def generate_replace(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    first_lengths = _payload_lengths(rng, params, n) - 3
    offsets = offsets_from_lengths(first_lengths)
    sequence = _tokens(rng, space, int(offsets[-1]))
    # t1 uniform over the SET of tokens of sequence 1: a uniform position, kept with 1/count.
    old = np.empty(n, dtype=np.int32)
    pending = np.arange(n)
    while len(pending):
        candidate = sequence[offsets[pending] + below(rng, first_lengths[pending])]
        if len(pending) == n:  # the first round: every row, no gather
            values, sub_offsets = sequence, offsets
        else:
            gather, sub_offsets = ragged_gather_index(offsets, pending)
            values = sequence[gather]
        count = row_counts(values == np.repeat(candidate, np.diff(sub_offsets)), sub_offsets)
        accepted = rng.random(len(pending)) * count < 1
        old[pending[accepted]] = candidate[accepted]
        pending = pending[~accepted]
    new = _tokens(rng, space, n)
    target = sequence.copy()
    replaced = np.flatnonzero(sequence == np.repeat(old, first_lengths))
    target[replaced] = new[np.searchsorted(offsets, replaced, side="right") - 1]
    pair = np.stack([old, new], axis=1).ravel()
    inputs = ragged_join([(sequence, offsets), space.arg_sep, (pair, np.arange(n + 1) * 2)])
    return _examples(inputs, (target, offsets))


def solve_replace(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, (old, new) = _two_sequences(inputs, space)
    return _array([new if token == old else token for token in sequence])


_register(
    "replace",
    "sequence 1 with every t1 replaced by t2, where sequence 2 = t1 t2 (G.7)",
    ReplaceParams,
    generate_replace,
    solve_replace,
)


# ---------------------------------------------------------------------------------------------
# G.8 duplicate


def generate_duplicate(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    twice = np.stack([values, values], axis=1).ravel()  # ~2x faster than np.repeat(values, 2)
    return _examples((values, offsets), (twice, offsets * 2))


def solve_duplicate(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array([token for token in _payload(inputs, space) for _ in range(2)])


_register(
    "duplicate", "every input token written twice (G.8)", SimpleParams, generate_duplicate, solve_duplicate
)


# ---------------------------------------------------------------------------------------------
# G.9 intersect


generate_intersect = _set_operation(lambda in1, in2: in1 & in2)


def solve_intersect(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty([t for t in _unique_in_order(first) if t in set(second)], space)


_register(
    "intersect",
    "tokens of sequence 1 also in sequence 2, in order of first occurrence (G.9)",
    SetPairParams,
    generate_intersect,
    solve_intersect,
)


# ---------------------------------------------------------------------------------------------
# G.10 reverse


def generate_reverse(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    lengths = np.diff(offsets)
    mirror = np.repeat(offsets[:-1] + offsets[1:] - 1, lengths) - np.arange(offsets[-1])
    return _examples((values, offsets), (values[mirror], offsets))


def solve_reverse(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space)[::-1])


_register("reverse", "the input in reverse order (G.10)", SimpleParams, generate_reverse, solve_reverse)


# ---------------------------------------------------------------------------------------------
# G.11 set2_minus_set1


generate_set2_minus_set1 = _set_operation(lambda in1, in2: in2 & ~in1)


def solve_set2_minus_set1(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    first, second = _two_sequences(inputs, space)
    return _or_empty([t for t in _unique_in_order(second) if t not in set(first)], space)


_register(
    "set2_minus_set1",
    "tokens of sequence 2 not in sequence 1 (G.11)",
    SetPairParams,
    generate_set2_minus_set1,
    solve_set2_minus_set1,
)


# ---------------------------------------------------------------------------------------------
# G.12 deduplicate


def generate_deduplicate(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    # t - 1 cuts among the l - 1 gaps, 0 <= t - 1 <= l - 2: a uniform composition with t uniform.
    cuts, num_cuts = random_size_subsets(rng, lengths - 1, np.zeros(n, np.int64), lengths - 2)
    distinct = num_cuts + 1
    starts = np.flatnonzero(with_row_starts(cuts, lengths))
    tokens = distinct_values(rng, distinct, space.lo, space.hi)
    inputs = np.repeat(tokens, np.diff(np.append(starts, lengths.sum())))
    return _examples((inputs, offsets_from_lengths(lengths)), (tokens, offsets_from_lengths(distinct)))


def solve_deduplicate(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    payload = _payload(inputs, space)
    return _array([t for i, t in enumerate(payload) if i == 0 or payload[i - 1] != t])


_register(
    "deduplicate",
    "the input with adjacent repeats collapsed (G.12)",
    DistinctParams,
    generate_deduplicate,
    solve_deduplicate,
)


# ---------------------------------------------------------------------------------------------
# G.13 last_token


def generate_last_token(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), singleton_rows(values[offsets[1:] - 1]))


def solve_last_token(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space)[-1:])


_register("last_token", "the last input token (G.13)", SimpleParams, generate_last_token, solve_last_token)


# ---------------------------------------------------------------------------------------------
# G.14 first_token


def generate_first_token(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), singleton_rows(values[offsets[:-1]]))


def solve_first_token(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_payload(inputs, space)[:1])


_register(
    "first_token", "the first input token (G.14)", SimpleParams, generate_first_token, solve_first_token
)


# ---------------------------------------------------------------------------------------------
# G.15 longest_word


def generate_longest_word(
    params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int
) -> Examples:
    lengths = _payload_lengths(rng, params, n)
    words = rng.integers(1, (lengths + 1) // 2 + 1)  # w words need w + (w - 1) <= l
    word_lengths = compositions(rng, lengths - words + 1, words)
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


def solve_longest_word(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    words, current = [], 0
    for token in _payload(inputs, space):
        if token == space.word_sep:
            words.append(current)
            current = 0
        else:
            current += 1
    return _array(_write_number(max([*words, current]), space))


_register(
    "longest_word",
    "the length of the longest run between word separators, as digits (G.15)",
    SimpleParams,
    generate_longest_word,
    solve_longest_word,
)


# ---------------------------------------------------------------------------------------------
# G.16 search


def generate_search(params: SearchParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    inputs, _, _, present, _ = _planted(params, space, rng, n)
    return _examples(inputs, singleton_rows(np.where(present, space.yes, space.no)))


def solve_search(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, pattern = _two_sequences(inputs, space)
    found = any(
        sequence[start : start + len(pattern)] == pattern for start in range(len(sequence) - len(pattern) + 1)
    )
    return _array([space.yes if found else space.no])


_register(
    "search",
    "yes if sequence 2 occurs in sequence 1, else no (G.16)",
    SearchParams,
    generate_search,
    solve_search,
)


# ---------------------------------------------------------------------------------------------
# G.17 length


def generate_length(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    values, offsets = _iid_sequences(rng, params, space, n)
    return _examples((values, offsets), _numbers(space, np.diff(offsets)))


def solve_length(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    return _array(_write_number(len(_payload(inputs, space)), space))


_register(
    "length", "the number of input tokens, as digits (G.17)", SimpleParams, generate_length, solve_length
)


# ---------------------------------------------------------------------------------------------
# G.18 count


def generate_count(params: SimpleParams, space: TokenSpace, rng: np.random.Generator, n: int) -> Examples:
    # Laid out as the payload: sequence 1 (l - 2 tokens), the separator, the counted token.
    lengths = _payload_lengths(rng, params, n)
    offsets = offsets_from_lengths(lengths)
    counted = _tokens(rng, space, n)
    row_counted = np.repeat(counted, lengths)
    is_counted = row_coin_flips(rng, lengths)  # over sequence 1: a count uniform on 0..l1, uniform places
    is_counted[offsets[1:] - 2] = is_counted[offsets[1:] - 1] = False
    payload = rng.integers(space.lo, space.hi, int(offsets[-1]), dtype=np.int32)
    payload += payload >= row_counted  # skip the counted token: its count is exactly c
    np.copyto(payload, row_counted, where=is_counted)
    payload[offsets[1:] - 2], payload[offsets[1:] - 1] = space.arg_sep, counted
    return _examples((payload, offsets), _numbers(space, row_counts(is_counted, offsets)))


def solve_count(inputs: np.ndarray, params: SimpleParams, space: TokenSpace) -> np.ndarray:
    sequence, (token,) = _two_sequences(inputs, space)
    return _array(_write_number(sequence.count(token), space))


_register(
    "count",
    "how often the token of sequence 2 occurs in sequence 1, as digits (G.18)",
    CountParams,
    generate_count,
    solve_count,
)
