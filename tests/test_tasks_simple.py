"""The 18 simple tasks of App. G: targets equal the reference solvers, and the inputs have the
statistics that App. G and issue 2 promise."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from synthpre.errors import UserError
from synthpre.tasks import BLOCK_SIZE, get_task
from synthpre.tasks.simple import SearchParams
from synthpre.tokens import TASK_PREFIX_ORDER, TokenSpace

SIMPLE = TASK_PREFIX_ORDER[:18]
DEFAULT = TokenSpace()
SMALL = TokenSpace(3, 127)  # a tiny-model vocabulary: many repeated tokens


def payloads(examples, space: TokenSpace) -> list[list[int]]:
    return [examples.input(j)[2:].tolist() for j in range(len(examples))]


def split(payload: list[int], separator: int) -> tuple[list[int], list[int]]:
    cut = payload.index(separator)
    return payload[:cut], payload[cut + 1 :]


def first_occurrence_pattern(tokens: list[int]) -> str:
    letters: dict[int, str] = {}
    return "".join(letters.setdefault(t, "abcdefghij"[len(letters)]) for t in tokens)


@pytest.mark.parametrize("name", SIMPLE)
@pytest.mark.parametrize(("space", "lengths"), [(DEFAULT, {}), (SMALL, {"min_len": 5, "max_len": 30})])
def test_targets_match_reference_solver(name: str, space: TokenSpace, lengths: dict) -> None:
    task = get_task(name)
    params = task.params_cls(**lengths)
    params.validate(space)
    examples = task.generate(params, space, seed=7, indices=np.arange(1100))  # two blocks
    assert len(examples) == 1100
    prefix = [*space.prefix_ids(name), space.task_sep]
    for j in range(len(examples)):
        inputs = examples.input(j)
        assert inputs[:2].tolist() == prefix
        assert params.min_len <= len(inputs) - 2 <= params.max_len
        np.testing.assert_array_equal(task.solve(inputs, params, space), examples.target(j))
    assert examples.input_values.dtype == np.int32 and examples.target_values.dtype == np.int32
    payload_tokens = examples.input_values.reshape(-1)
    assert payload_tokens.min() >= space.lo and payload_tokens.max() <= space.hi + 100


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(SIMPLE),
    min_len=st.integers(1, 40),
    extra=st.integers(0, 40),
    vocab=st.integers(1, 300),
    seed=st.integers(0, 2**32),
)
def test_any_valid_setting_matches_solver(name: str, min_len: int, extra: int, vocab: int, seed: int) -> None:
    task = get_task(name)
    params = task.params_cls(min_len=min_len, max_len=min_len + extra)
    space = TokenSpace(2, 1 + vocab)
    try:
        params.validate(space)
    except UserError:
        assume(False)
    examples = task.generate(params, space, seed, np.arange(40))
    for j in range(len(examples)):
        assert min_len <= len(examples.input(j)) - 2 <= min_len + extra
        np.testing.assert_array_equal(task.solve(examples.input(j), params, space), examples.target(j))


def test_payload_lengths_cover_the_range_uniformly() -> None:
    task = get_task("identity")
    examples = task.generate(task.params_cls(), DEFAULT, 0, np.arange(8 * BLOCK_SIZE))
    lengths = examples.input_lengths - 2
    assert lengths.min() == 10 and lengths.max() == 220
    assert abs(lengths.mean() - 115) < 2


@pytest.mark.parametrize("name", ["search", "delete"])
def test_sequence_2_present_with_probability_three_quarters(name: str) -> None:
    task = get_task(name)
    params = task.params_cls()
    examples = task.generate(params, DEFAULT, 3, np.arange(10 * BLOCK_SIZE))
    found = []
    for payload in payloads(examples, DEFAULT):
        sequence, pattern = split(payload, DEFAULT.arg_sep)
        m = len(pattern)
        assert 1 <= m < len(sequence)
        found.append(any(sequence[s : s + m] == pattern for s in range(len(sequence) - m + 1)))
    assert abs(np.mean(found) - 0.75) < 0.03
    if name == "search":
        yes = examples.target_values == DEFAULT.yes
        np.testing.assert_array_equal(yes, found)


def test_presence_probability_is_a_parameter() -> None:
    task = get_task("search")
    examples = task.generate(SearchParams(present_prob=0.0), SMALL, 0, np.arange(300))
    assert set(examples.target_values.tolist()) == {SMALL.no}


def test_set_inputs_have_duplicates_and_t_uniform() -> None:
    task = get_task("set")
    examples = task.generate(task.params_cls(), DEFAULT, 1, np.arange(4 * BLOCK_SIZE))
    ratios = []
    for j, payload in enumerate(payloads(examples, DEFAULT)):
        distinct = len(set(payload))
        assert 1 <= distinct < len(payload)  # t < l: always a duplicate
        assert len(examples.target(j)) == distinct
        ratios.append((distinct - 1) / (len(payload) - 2))
    assert abs(np.mean(ratios) - 0.5) < 0.02  # t ~ U[1, l-1]


def test_set_compositions_and_arrangements_are_uniform() -> None:
    """l = 4: t is 1, 2 or 3; with t = 2 the counts are (1,3), (2,2) or (3,1), each 1/3, and the
    six arrangements of a a b b are equally likely (patterns aabb, abab, abba: 1/3 each)."""
    task = get_task("set")
    examples = task.generate(task.params_cls(min_len=4, max_len=4), DEFAULT, 0, np.arange(30 * BLOCK_SIZE))
    patterns = Counter(first_occurrence_pattern(p) for p in payloads(examples, DEFAULT))
    total = sum(patterns.values())
    by_t = Counter(len(set(p)) for p in patterns.elements())
    for t in (1, 2, 3):
        assert abs(by_t[t] / total - 1 / 3) < 0.02
    two_two = {p: patterns[p] for p in ("aabb", "abab", "abba")}
    assert abs(sum(two_two.values()) / by_t[2] - 1 / 3) < 0.02
    for count in two_two.values():
        assert abs(count / sum(two_two.values()) - 1 / 3) < 0.03


def test_sort_arrangements_are_uniform_and_order_is_a_permutation() -> None:
    task = get_task("sort")
    examples = task.generate(task.params_cls(min_len=6, max_len=6), DEFAULT, 0, np.arange(12 * BLOCK_SIZE))
    patterns = Counter()
    for payload in payloads(examples, DEFAULT):
        sequence, order = split(payload, DEFAULT.arg_sep)
        assert sorted(order) == sorted(set(sequence)) and len(order) < len(sequence)
        if len(order) == 2:
            patterns[first_occurrence_pattern(sequence)] += 1
    assert set(patterns) == {"aab", "aba", "abb"}
    for count in patterns.values():
        assert abs(count / sum(patterns.values()) - 1 / 3) < 0.03


def test_deduplicate_inputs_are_runs_of_distinct_tokens() -> None:
    task = get_task("deduplicate")
    examples = task.generate(task.params_cls(), DEFAULT, 2, np.arange(2 * BLOCK_SIZE))
    for j, payload in enumerate(payloads(examples, DEFAULT)):
        runs = [payload[0]] + [b for a, b in itertools.pairwise(payload) if a != b]
        assert len(runs) == len(set(runs)) < len(payload)  # each token in one run; some run >= 2
        assert examples.target(j).tolist() == runs


@pytest.mark.parametrize("name", ["union", "intersect", "set1_minus_set2", "set2_minus_set1"])
def test_set_operations_share_a_pool_and_may_be_empty(name: str) -> None:
    task = get_task(name)
    examples = task.generate(task.params_cls(min_len=3, max_len=12), DEFAULT, 4, np.arange(BLOCK_SIZE))
    empty = 0
    for j, payload in enumerate(payloads(examples, DEFAULT)):
        first, second = split(payload, DEFAULT.arg_sep)
        assert first and second
        assert len(set(first) | set(second)) <= (len(payload) - 1) // 2
        empty += examples.target(j).tolist() == [DEFAULT.empty]
    assert (empty > 0) == (name != "union")


def test_count_is_uniform_and_replace_key_is_in_sequence() -> None:
    count = get_task("count")
    examples = count.generate(count.params_cls(), DEFAULT, 5, np.arange(4 * BLOCK_SIZE))
    shares = []
    for payload in payloads(examples, DEFAULT):
        sequence, (token,) = split(payload, DEFAULT.arg_sep)
        shares.append(sequence.count(token) / len(sequence))
    assert abs(np.mean(shares) - 0.5) < 0.02
    replace = get_task("replace")
    examples = replace.generate(replace.params_cls(), SMALL, 5, np.arange(BLOCK_SIZE))
    for payload in payloads(examples, SMALL):
        sequence, (old, _) = split(payload, SMALL.arg_sep)
        assert old in sequence


def test_longest_word_and_numbers_use_one_digit_token_each() -> None:
    task = get_task("longest_word")
    examples = task.generate(task.params_cls(), DEFAULT, 6, np.arange(BLOCK_SIZE))
    digits = {int(d): k for k, d in enumerate(DEFAULT.digit_ids)}
    words_seen = set()
    for j, payload in enumerate(payloads(examples, DEFAULT)):
        words = " ".join(map(str, payload)).split(str(DEFAULT.word_sep))
        assert all(w.strip() for w in words)  # no empty word
        words_seen.add(len(words))
        number = int("".join(str(digits[d]) for d in examples.target(j).tolist()))
        assert number == max(len(w.split()) for w in words)
    assert min(words_seen) == 1 and max(words_seen) > 50


def test_generation_is_a_pure_function_of_the_index() -> None:
    task = get_task("set")
    params = task.params_cls()
    whole = task.generate(params, DEFAULT, 11, np.arange(3000))
    pieces = [
        task.generate(params, DEFAULT, 11, np.arange(a, b)) for a, b in [(0, 7), (7, 2049), (2049, 3000)]
    ]
    joined = type(whole).concat(pieces)
    np.testing.assert_array_equal(joined.input_values, whole.input_values)
    np.testing.assert_array_equal(joined.target_offsets, whole.target_offsets)
    other_seed = task.generate(params, DEFAULT, 12, np.arange(3000))
    assert not np.array_equal(other_seed.input_offsets, whole.input_offsets)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(SIMPLE),
    indices=st.lists(st.integers(0, 4 * BLOCK_SIZE - 1), min_size=1, max_size=30),
)
def test_any_index_order_gives_the_same_examples(name: str, indices: list[int]) -> None:
    task = get_task(name)
    params = task.params_cls(min_len=5, max_len=40)
    whole = task.generate(params, DEFAULT, 3, np.arange(4 * BLOCK_SIZE))
    picked = task.generate(params, DEFAULT, 3, np.array(indices))
    for j, index in enumerate(indices):
        np.testing.assert_array_equal(picked.input(j), whole.input(index))
        np.testing.assert_array_equal(picked.target(j), whole.target(index))


@pytest.mark.parametrize(
    ("name", "params", "space", "message"),
    [
        ("set", {"min_len": 30, "max_len": 20}, DEFAULT, "min_len 30 > max_len 20"),
        ("set", {"min_len": 1}, DEFAULT, "at least 2 tokens"),
        ("sort", {"min_len": 3}, DEFAULT, "at least 4 tokens"),
        ("union", {"min_len": 2}, DEFAULT, "at least 3 tokens"),
        ("set", {}, SMALL, "needs 219"),
        ("search", {"max_len": 200}, SMALL, "needs 200"),
        ("count", {}, TokenSpace(5, 5), "needs 2"),
        ("delete", {"present_prob": 1.5}, DEFAULT, "not a probability"),
    ],
)
def test_impossible_settings_are_refused(name: str, params: dict, space: TokenSpace, message: str) -> None:
    with pytest.raises(UserError, match=message):
        get_task(name).params_cls(**params).validate(space)


def test_unknown_task_suggests_the_nearest_name() -> None:
    with pytest.raises(UserError, match="Did you mean 'deduplicate'"):
        get_task("dedupliate")
