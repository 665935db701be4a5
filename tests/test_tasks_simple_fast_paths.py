"""The speed-ups of the simple-task generators give the same results as the plain versions."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

from synthpre.tasks import get_task
from synthpre.tasks.registry import Examples, add_prefix, offsets_from_lengths, ragged_join
from synthpre.tasks.simple import _join, _rows_with_repeats
from synthpre.tokens import TokenSpace


def test_join_matches_ragged_join_with_empty_rows() -> None:
    rng = np.random.default_rng(0)
    first_lengths, second_lengths = rng.integers(0, 5, 50), rng.integers(0, 5, 50)
    first = (rng.integers(2, 99, first_lengths.sum(), dtype=np.int32), offsets_from_lengths(first_lengths))
    second = (rng.integers(2, 99, second_lengths.sum(), dtype=np.int32), offsets_from_lengths(second_lengths))
    values, offsets = _join(first, 7, second)
    expected_values, expected_offsets = ragged_join([first, 7, second])
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(offsets, expected_offsets)
    assert values.dtype == np.int32


def test_add_prefix_matches_ragged_join() -> None:
    examples = Examples.from_lists([[5, 6], [], [7]], [[1], [2], [3]])
    prefixed = add_prefix(examples, [100, 101])
    assert prefixed.to_lists()[0] == [[100, 101, 5, 6], [100, 101], [100, 101, 7]]
    assert prefixed.input_values.dtype == np.int32


@pytest.mark.parametrize("space", [TokenSpace(2, 40), TokenSpace(2, 2**24)])  # 32-bit keys; 64-bit fallback
def test_rows_with_repeats_finds_every_row_with_a_repeat(space: TokenSpace) -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 12, 3000)
    values = rng.integers(space.lo, min(space.hi, 60) + 1, lengths.sum())
    offsets = offsets_from_lengths(lengths)
    rows = _rows_with_repeats(values, offsets, space)
    repeated = [r for r in range(len(lengths)) if len(set(values[offsets[r] : offsets[r + 1]])) < lengths[r]]
    assert set(rows.tolist()) >= set(repeated)
    if space.num_content <= 2**22:
        assert rows.tolist() == repeated


def test_benchmark_pure_python_generators_match_the_solvers() -> None:
    """The benchmark's pure-Python baselines generate the same tasks (valid targets, lengths in range)."""
    path = Path(__file__).parents[1] / "benchmarks" / "generate.py"
    spec = importlib.util.spec_from_file_location("benchmark_generate", path)
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    space = TokenSpace()
    for name, generate in benchmark.PURE_PYTHON.items():
        task, rng = get_task(name), random.Random(0)
        params = task.params_cls()
        for _ in range(50):
            payload, target = generate(rng)
            inputs = np.array([*space.prefix_ids(name), space.task_sep, *payload], dtype=np.int32)
            assert params.min_len <= len(payload) <= params.max_len
            assert task.solve(inputs, params, space).tolist() == target, name
