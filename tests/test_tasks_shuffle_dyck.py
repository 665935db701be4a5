"""k-Shuffle Dyck (Hu et al. 2025) and Dyck's plain language-model form."""

import re

import numpy as np
import pytest

from synthpre.errors import UserError
from synthpre.tasks import get_task
from synthpre.tasks.dyck import DyckParams, ShuffleDyckParams, dyck_sentences, is_balanced, is_shuffle_dyck
from synthpre.tokens import TokenSpace

SPACE = TokenSpace()
SMALL = TokenSpace(3, 127)
TASK = get_task("shuffle_dyck")


def word(text: str, k: int, space: TokenSpace = SPACE) -> np.ndarray:
    """Token ids of a word written with ``( [ { <`` for types 0..3 and their closing brackets."""
    opening, closing = "([{<", ")]}>"
    ids = [
        space.lo + opening.index(c) if c in opening else space.lo + k + closing.index(c) for c in text.split()
    ]
    return np.array(ids, dtype=np.int32)


def depths(values: np.ndarray, k: int, space: TokenSpace) -> np.ndarray:
    """The total depth after each token (words are balanced, so one running sum serves them all)."""
    return np.cumsum(np.where(values - space.lo < k, 1, -1))


@pytest.mark.parametrize(
    ("params", "space"),
    [
        (ShuffleDyckParams(), SPACE),
        (ShuffleDyckParams(num_types=3, min_len=10, max_len=40, max_depth=4), SPACE),
        (ShuffleDyckParams(num_types=1, max_len=30, open_prob=0.2), SPACE),
        (ShuffleDyckParams(num_types=8, max_len=100, open_prob=0.8, max_depth=5), SMALL),
    ],
)
def test_every_example_is_a_valid_word_within_bounds(params: ShuffleDyckParams, space: TokenSpace):
    params.validate(space)
    ex = TASK.generate_range(params, space, 3, 1000, 2100)  # parts of blocks 0, 1 and 2
    assert not TASK.uses_prefix and len(ex) == 1100
    assert not ex.input_lengths.any()
    assert all(is_shuffle_dyck(ex.target(j), params, space) for j in range(len(ex)))
    assert all(TASK.check(ex.input(j), ex.target(j), params, space) for j in range(len(ex)))
    lengths = ex.target_lengths
    assert not (lengths % 2).any() and lengths.min() >= params.min_len and lengths.max() <= params.max_len
    depth = depths(ex.target_values, params.num_types, space)
    assert depth.min() >= 0 and depth.max() <= params.max_depth
    assert set(np.unique((ex.target_values - space.lo) % params.num_types)) == set(range(params.num_types))


def test_default_lengths_and_depths_fill_their_ranges():
    ex = TASK.generate_range(ShuffleDyckParams(), SPACE, 0, 0, 1024)
    assert ex.target_lengths.min() < 20 and ex.target_lengths.max() > 490
    assert abs(ex.target_lengths.mean() - 257) < 15
    assert depths(ex.target_values, 64, SPACE).max() == 16


def test_always_opening_climbs_to_max_depth():
    params = ShuffleDyckParams(num_types=5, min_len=40, max_len=40, open_prob=1.0, max_depth=4)
    ex = TASK.generate_range(params, SPACE, 0, 0, 50)
    # open to 4, then close one and open one until the remaining positions must close
    pattern = np.where(ex.target_values - SPACE.lo < 5, 1, -1).reshape(50, 40)
    assert (pattern == [1] * 4 + [-1, 1] * 16 + [-1] * 4).all()


def test_checker_accepts_interleaved_types_that_plain_dyck_rejects():
    k = 4
    for good in ["", "( )", "( [ ) ]", "[ ( ] )", "( ( [ ) ] )", "< { ( > } )", "( ) ( [ ] )"]:
        assert is_shuffle_dyck(word(good, k), ShuffleDyckParams(num_types=k), SPACE), good
    interleaved = word("( [ ) ]", k)
    assert not is_balanced(interleaved, DyckParams(num_pairs=k), SPACE)  # same token layout as Dyck
    assert TASK.check(np.zeros(0, np.int32), interleaved, ShuffleDyckParams(num_types=k), SPACE)


@pytest.mark.parametrize("bad", [") (", "( ] [ )", "( [ )", "( ( )", "[ ) ]"])
def test_checker_rejects_unbalanced_words(bad: str):
    assert not is_shuffle_dyck(word(bad, 4), ShuffleDyckParams(num_types=4), SPACE)


def test_checker_rejects_other_tokens_and_inputs():
    params = ShuffleDyckParams(num_types=4)
    good = word("( [ ) ]", 4)
    for other in [SPACE.lo - 1, SPACE.lo + 8, SPACE.hi, SPACE.sentinel(0)]:
        assert not is_shuffle_dyck(np.insert(good, 2, other), params, SPACE)
    assert not TASK.check(good[:1], good, params, SPACE)  # the input must be empty


def test_closes_pick_uniformly_among_open_types_not_the_innermost():
    params = ShuffleDyckParams(num_types=6, max_len=64)
    ex = TASK.generate_range(params, SPACE, 0, 0, 1024)
    innermost_closed = {2: [], 3: []}  # number of open types -> did the close take the innermost type?
    for j in range(len(ex)):
        open_brackets: list[int] = []  # types of the open brackets, in the order they opened
        for offset in (ex.target(j) - SPACE.lo).tolist():
            if offset < 6:
                open_brackets.append(offset)
                continue
            kind = offset - 6
            open_types = len(set(open_brackets))
            if open_types in innermost_closed:
                innermost_closed[open_types].append(kind == open_brackets[-1])
            del open_brackets[len(open_brackets) - 1 - open_brackets[::-1].index(kind)]
    for open_types, closed in innermost_closed.items():
        assert len(closed) > 2000
        assert abs(np.mean(closed) - 1 / open_types) < 0.04


def test_same_seed_same_bytes_for_any_index_split():
    params = ShuffleDyckParams(max_len=64)
    whole = TASK.generate_range(params, SPACE, 5, 0, 3 * 1024)
    again = TASK.generate_range(params, SPACE, 5, 0, 3 * 1024)
    assert np.array_equal(whole.target_values, again.target_values)
    assert np.array_equal(whole.target_offsets, again.target_offsets)
    shuffled = np.random.default_rng(0).permutation(3 * 1024)
    picked = TASK.generate(params, SPACE, 5, shuffled)
    assert picked.to_lists() == whole.take(shuffled).to_lists()
    other_seed = TASK.generate_range(params, SPACE, 6, 0, 1024)
    assert not np.array_equal(other_seed.target_offsets, whole.target_offsets[:1025])


def test_manifest_and_token_names():
    manifest = TASK.extra_manifest(ShuffleDyckParams(), SPACE)
    assert manifest == {"num_types": 64, "open_ids": [2, 65], "close_ids": [66, 129]}
    assert TASK.extra_manifest(ShuffleDyckParams(num_types=8), SMALL)["close_ids"] == [11, 18]
    tokens = word("[ ( ] )", 4).tolist()
    names = TASK.token_names(tokens, ShuffleDyckParams(num_types=4), SPACE)
    assert [names[t] for t in tokens] == ["(", "[", ")", "]"]  # named in order of first appearance


@pytest.mark.parametrize(
    ("bad", "space", "named"),
    [
        (dict(min_len=3), SPACE, "min_len"),
        (dict(max_len=7), SPACE, "max_len"),
        (dict(min_len=10, max_len=8), SPACE, "min_len"),
        (dict(open_prob=0.0), SPACE, "open_prob"),
        (dict(open_prob=1.5), SPACE, "open_prob"),
        (dict(max_depth=0), SPACE, "max_depth"),
        (dict(num_types=0), SPACE, "num_types"),
        (dict(), SMALL, "--vocab"),  # 64 types need 128 ids; 3..127 holds 125
        (dict(num_types=16_000), SPACE, "--vocab"),
    ],
)
def test_bad_parameters_name_the_setting(bad: dict, space: TokenSpace, named: str):
    with pytest.raises(UserError, match=re.escape(named)):
        ShuffleDyckParams(**bad).validate(space)


def test_cli_show_derives_the_task_options():
    from typer.testing import CliRunner

    from synthpre.cli import app

    args = ["show", "shuffle_dyck", "-n", "3", "--letters", "--max-len", "30", "--param", "num_types=3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    targets = re.findall(r"Source:\n\n\nTarget:\n(.*)\n", result.output)
    assert len(targets) == 3
    closing = {")": "(", "]": "[", "}": "{"}
    for target in targets:
        counts = dict.fromkeys("([{", 0)
        for bracket in target.split():
            counts[closing.get(bracket, bracket)] += -1 if bracket in closing else 1
            assert min(counts.values()) >= 0
        assert not any(counts.values())
    refused = CliRunner().invoke(app, ["show", "shuffle_dyck", "--vocab", "3:127"])
    assert isinstance(refused.exception, UserError) and "--vocab" in str(refused.exception)


def test_dyck_lm_form_targets_the_balanced_sentence():
    task, params = get_task("dyck"), DyckParams(max_len=64, form="lm")
    params.validate(SPACE)
    ex = task.generate_range(params, SPACE, 0, 0, 1024)
    sentences, offsets, _ = dyck_sentences(params, SPACE, np.random.default_rng([0, task.uid, 0]), 1024)
    assert not ex.input_lengths.any()
    assert np.array_equal(ex.target_values, sentences) and np.array_equal(ex.target_offsets, offsets)
    assert all(task.check(ex.input(j), ex.target(j), params, SPACE) for j in range(len(ex)))
    assert all(is_balanced(ex.target(j), params, SPACE) for j in range(len(ex)))
    assert not task.check(ex.target(0)[:1], ex.target(0), params, SPACE)  # the input must be empty
    corrupted = task.generate_range(DyckParams(max_len=64), SPACE, 0, 0, 5)
    assert not any(task.check(corrupted.input(j), corrupted.target(j), params, SPACE) for j in range(5))
    assert task.extra_manifest(params, SPACE)["sentinel_ids"] == []


def test_dyck_form_is_validated_and_lm_needs_no_sentinels():
    with pytest.raises(UserError, match="span_corruption, lm"):
        DyckParams(form="causal").validate(SPACE)
    with pytest.raises(UserError, match="sentinels"):
        DyckParams(max_len=4000).validate(SPACE)
    DyckParams(max_len=4000, form="lm").validate(SPACE)
