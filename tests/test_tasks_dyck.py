"""Span corruption (T5) and the Dyck artificial language (App. E.2)."""

import re

import numpy as np
import pytest

from synthpre.errors import UserError
from synthpre.tasks import get_task
from synthpre.tasks.dyck import DyckParams, dyck_sentences, is_balanced
from synthpre.tasks.ragged import offsets_from_lengths
from synthpre.tasks.span_corruption import (
    noise_counts,
    random_compositions,
    reassemble,
    sentinel_ids,
    span_corruption,
)
from synthpre.tokens import TokenSpace

SPACE = TokenSpace()
SENTINELS = sentinel_ids(SPACE)


def test_sentinels_are_t5_extra_ids():
    assert SENTINELS[0] == 32099 and SENTINELS[1] == 32098 and SENTINELS[99] == 32000


def test_random_compositions_are_positive_and_sum_up():
    rng = np.random.default_rng(0)
    totals = rng.integers(1, 50, 500)
    parts = np.minimum(rng.integers(1, 10, 500), totals)
    sizes = random_compositions(totals, parts, rng)
    assert sizes.min() >= 1 and len(sizes) == parts.sum()
    bounds = offsets_from_lengths(parts)
    assert all(sizes[bounds[r] : bounds[r + 1]].sum() == totals[r] for r in range(500))
    # uniform over compositions: 4 items in 2 parts -> first part 1, 2 or 3 equally often
    first = random_compositions(np.full(30000, 4), np.full(30000, 2), rng)[0::2]
    assert np.allclose(np.bincount(first)[1:] / 30000, 1 / 3, atol=0.02)


def test_span_corruption_layout_and_round_trip():
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 700, 1000)
    offsets = offsets_from_lengths(lengths)
    values = rng.integers(SPACE.lo, SPACE.hi + 1, offsets[-1]).astype(np.int32)
    ex = span_corruption(values, offsets, rng, SENTINELS)
    noise, spans = noise_counts(lengths, 0.15, 3.0)
    np.testing.assert_array_equal(ex.input_lengths, lengths - noise + spans)
    np.testing.assert_array_equal(ex.target_lengths, noise + spans)
    for j in range(len(ex)):
        inputs, targets = ex.input(j), ex.target(j)
        np.testing.assert_array_equal(
            reassemble(inputs, targets, SENTINELS), values[offsets[j] : offsets[j + 1]]
        )
        used = SENTINELS[: spans[j]]
        np.testing.assert_array_equal(
            inputs[np.isin(inputs, SENTINELS)], used
        )  # <extra_id_0>, 1, ... in order
        np.testing.assert_array_equal(targets[np.isin(targets, SENTINELS)], used)
        assert targets[0] == SENTINELS[0] and inputs[-1] == used[-1]  # starts kept, ends with noise (T5)
        assert inputs[0] not in SENTINELS
    density = noise / lengths
    assert abs(density.mean() - 0.15) < 0.02
    assert abs((noise / spans)[lengths > 100].mean() - 3.0) < 0.2


def test_span_corruption_of_tiny_sequences():
    ex = span_corruption(np.array([5, 6], np.int32), np.array([0, 2]), np.random.default_rng(0), SENTINELS)
    assert ex.to_lists() == ([[5, SENTINELS[0]]], [[SENTINELS[0], 6]])
    with pytest.raises(ValueError):
        span_corruption(np.array([5], np.int32), np.array([0, 1]), np.random.default_rng(0), SENTINELS)


def test_dyck_reassembles_to_balanced_sentences_with_app_e2_lengths():
    task = get_task("dyck")
    params = DyckParams()
    params.validate(SPACE)
    ex = task.generate_range(params, SPACE, 0, 0, 2048)
    assert not task.uses_prefix
    assert all(task.check(ex.input(j), ex.target(j), params, SPACE) for j in range(len(ex)))
    # App. E.2 (EOS included): inputs 3..512, targets 3..114
    assert ex.input_lengths.min() + 1 >= 3 and ex.input_lengths.max() + 1 <= 512
    assert ex.target_lengths.min() + 1 >= 3 and ex.target_lengths.max() + 1 <= 114
    spans = np.array([np.isin(ex.target(j), SENTINELS).sum() for j in range(len(ex))])
    noise, originals = ex.target_lengths - spans, ex.input_lengths + ex.target_lengths - 2 * spans
    assert abs((noise / originals).mean() - 0.15) < 0.02


def test_check_rejects_unbalanced():
    task, params = get_task("dyck"), DyckParams(max_len=20)
    ex = task.generate_range(params, SPACE, 0, 0, 50)
    for j in range(len(ex)):
        target = ex.target(j).copy()
        target[1] = (
            SPACE.lo + params.num_pairs - 1 if target[1] != SPACE.lo + params.num_pairs - 1 else SPACE.lo
        )
        assert not task.check(ex.input(j), target, params, SPACE)


def test_nesting_process_is_configurable():
    rng = np.random.default_rng(0)
    values, offsets, depth = dyck_sentences(DyckParams(min_len=40, max_len=40), SPACE, rng, 500)
    assert all(is_balanced(values[offsets[j] : offsets[j + 1]], DyckParams(), SPACE) for j in range(500))
    assert set(np.diff(offsets)) == {40}
    _, _, flat = dyck_sentences(DyckParams(min_len=40, max_len=40, open_prob=0.2), SPACE, rng, 500)
    _, _, capped = dyck_sentences(DyckParams(min_len=40, max_len=40, max_depth=3), SPACE, rng, 500)
    assert flat.mean() < depth.mean() and capped.max() == 3
    _, _, chain = dyck_sentences(
        DyckParams(min_len=40, max_len=40, open_prob=1.0, max_depth=40), SPACE, rng, 5
    )
    assert set(chain) == {20}  # always open until the remaining positions must close


def test_pairs_manifest_and_small_vocabulary():
    manifest = get_task("dyck").extra_manifest(DyckParams(), SPACE)
    assert manifest["num_pairs"] == 15_999  # as many as 2..31999 holds
    assert manifest["open_ids"] == [2, 16_000] and manifest["close_ids"] == [16_001, 31_999]
    assert manifest["sentinel_ids"][:2] == [32099, 32098] and len(manifest["sentinel_ids"]) == 28
    space = TokenSpace(3, 127)
    params = DyckParams(max_len=64)
    ex = get_task("dyck").generate_range(params, space, 0, 0, 300)
    assert get_task("dyck").extra_manifest(params, space)["close_ids"] == [65, 126]
    assert all(get_task("dyck").check(ex.input(j), ex.target(j), params, space) for j in range(300))


@pytest.mark.parametrize(
    "bad", [dict(min_len=3), dict(max_len=4000), dict(open_prob=0.0), dict(min_len=10, max_len=8)]
)
def test_bad_parameters(bad):
    with pytest.raises(UserError):
        DyckParams(**bad).validate(SPACE)


def test_show_letters_prints_app_e2_shape():
    from typer.testing import CliRunner

    from synthpre.cli import app

    result = CliRunner().invoke(app, ["show", "dyck", "-n", "3", "--letters", "--param", "max_len=30"])
    assert result.exit_code == 0, result.output
    pairs = re.findall(r"Source:\n(.*)\n\nTarget:\n(.*)\n", result.output)
    assert len(pairs) == 3
    closing = {")": "(", "]": "[", "}": "{", ">": "<"}
    for source, target in pairs:
        spans = dict(re.findall(r"(<s\d+>)((?: [^<\s]+)*)", target))
        assert list(spans) == [f"<s{k}>" for k in range(len(spans))]  # <s0> span <s1> span ...
        sentence = " ".join(spans.get(t, f" {t}").strip() for t in source.split()).split()
        stack = []  # the reassembled sentence is balanced in the printed notation
        for token in sentence:
            if token in closing or token.isupper():
                assert stack.pop() == closing.get(token, token.lower())
            else:
                stack.append(token)
        assert not stack
