"""The speed-ups of the simple-task generators give the same results as the plain versions."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

from synthpre.tasks import get_task
from synthpre.tasks.ragged import offsets_from_lengths, ragged_join, rows_with_repeats
from synthpre.tasks.registry import Examples, add_prefix
from synthpre.tokens import TokenSpace


def _random_ragged(rng: np.random.Generator, n: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(0, 5, n)  # empty rows included
    return rng.integers(2, 99, lengths.sum()).astype(dtype), offsets_from_lengths(lengths)


@pytest.mark.parametrize("n", [0, 1, 50])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_ragged_join_fast_path_matches_the_general_join_and_plain_python(n: int, dtype: type) -> None:
    """``[ragged, token, ragged]`` takes the ``np.insert`` path; every other shape the general loop."""
    rng = np.random.default_rng(0)
    first, second = _random_ragged(rng, n, dtype), _random_ragged(rng, n, np.int32)
    no_tokens = (np.zeros(0, np.int32), np.zeros(n + 1, np.int64))  # joins nothing, forces the loop
    fast = ragged_join([first, 7, second])
    general = ragged_join([first, 7, second, no_tokens])
    expected = [
        [*first[0][first[1][r] : first[1][r + 1]], 7, *second[0][second[1][r] : second[1][r + 1]]]
        for r in range(n)
    ]
    for values, offsets in (fast, general):
        assert values.dtype == np.int32 and offsets.dtype == np.int64
        assert [values[offsets[r] : offsets[r + 1]].tolist() for r in range(n)] == expected
        np.testing.assert_array_equal(offsets, offsets_from_lengths(np.array([len(e) for e in expected])))


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
    rows = rows_with_repeats(values, offsets, space.lo, space.hi)
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
