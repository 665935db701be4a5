"""The task registry and the ragged example batches that every generator returns.

The ragged-array operations themselves (values + offsets) are in ``synthpre.tasks.ragged``.

A task bundles (seqio style) its generator, its reference ``solve``, a one-line definition and its
input-generation parameters.  Determinism contract: example ``i`` of a task is a pure function of
(task, parameters, seed, i).  Generators are vectorized over *blocks* of ``BLOCK_SIZE`` consecutive
indices: block ``b`` is drawn from ``numpy.random.default_rng([seed, task_uid, b])``, and any index
set is served by generating the blocks it touches and picking rows.  So the bytes do not depend on
how the indices are split into shards, workers or processes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthpre.errors import lookup
from synthpre.tasks.ragged import ragged_concat, ragged_from_lists, ragged_take
from synthpre.tokens import TokenSpace

BLOCK_SIZE = 1024
# Validation examples come from this index on, far beyond any training index (2**40 examples).
VALIDATION_OFFSET = 2**40


@dataclass
class Examples:
    """A batch of examples as two ragged int32 arrays (values + offsets, like Arrow list arrays).

    Example ``j`` has inputs ``input_values[input_offsets[j]:input_offsets[j+1]]``.  No EOS is stored.
    """

    input_values: np.ndarray
    input_offsets: np.ndarray
    target_values: np.ndarray
    target_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.input_offsets) - 1

    @classmethod
    def from_lists(cls, inputs: Iterable[Iterable[int]], targets: Iterable[Iterable[int]]) -> Examples:
        inp, tgt = ragged_from_lists(inputs), ragged_from_lists(targets)
        return cls(inp[0], inp[1], tgt[0], tgt[1])

    def input(self, j: int) -> np.ndarray:
        return self.input_values[self.input_offsets[j] : self.input_offsets[j + 1]]

    def target(self, j: int) -> np.ndarray:
        return self.target_values[self.target_offsets[j] : self.target_offsets[j + 1]]

    @property
    def input_lengths(self) -> np.ndarray:
        return np.diff(self.input_offsets)

    @property
    def target_lengths(self) -> np.ndarray:
        return np.diff(self.target_offsets)

    def take(self, rows: np.ndarray) -> Examples:
        """The examples at ``rows`` (any order, repeats allowed), vectorized."""
        iv, io = ragged_take(self.input_values, self.input_offsets, rows)
        tv, to = ragged_take(self.target_values, self.target_offsets, rows)
        return Examples(iv, io, tv, to)

    @staticmethod
    def concat(parts: list[Examples]) -> Examples:
        iv, io = ragged_concat([(p.input_values, p.input_offsets) for p in parts])
        tv, to = ragged_concat([(p.target_values, p.target_offsets) for p in parts])
        return Examples(iv, io, tv, to)

    def to_lists(self) -> tuple[list[list[int]], list[list[int]]]:
        return (
            [self.input(j).tolist() for j in range(len(self))],
            [self.target(j).tolist() for j in range(len(self))],
        )


# A generator draws ``n`` examples from ``rng`` for the given parameters and token space.
Generator = Callable[[Any, TokenSpace, np.random.Generator, int], Examples]


@dataclass(frozen=True)
class Task:
    """One registered task.

    ``params_cls`` is a (frozen) dataclass of input-generation parameters with defaults; it may
    define ``validate(space)`` raising ``UserError`` for impossible settings (e.g. lengths too short).
    ``solve`` maps one input (without EOS) to its target; ``None`` when a task has only a ``check``.
    ``check(inputs, targets)`` -> bool verifies an example where the target is not unique.
    """

    name: str
    definition: str
    generate_block: Generator
    params_cls: type
    solve: Callable[[np.ndarray, Any, TokenSpace], np.ndarray] | None = None
    check: Callable[[np.ndarray, np.ndarray, Any, TokenSpace], bool] | None = None
    uses_prefix: bool = True
    extra_manifest: Callable[[Any, TokenSpace], dict] | None = field(default=None, repr=False)
    # ``token_names(tokens, params, space)``: names for ``show --letters`` of some tokens of one example
    # (source + target), e.g. App. E.1's ``{ : }`` for LIME; the other tokens get letters.
    token_names: Callable[[list[int], Any, TokenSpace], dict[int, str]] | None = field(
        default=None, repr=False
    )

    @property
    def uid(self) -> int:
        """A stable 32-bit id of the task name, mixed into every block seed."""
        return zlib.crc32(self.name.encode())

    def generate(self, params: Any, space: TokenSpace, seed: int, indices: np.ndarray) -> Examples:
        """Examples at ``indices`` (any order); a pure function of (task, params, space, seed, index)."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return Examples.from_lists([], [])
        blocks = indices // BLOCK_SIZE
        unique_blocks, inverse = np.unique(blocks, return_inverse=True)
        made = [self.generate_one_block(params, space, seed, int(b)) for b in unique_blocks]
        whole = Examples.concat(made)
        rows = inverse * BLOCK_SIZE + indices % BLOCK_SIZE
        if len(rows) == len(whole) and np.array_equal(rows, np.arange(len(rows))):  # whole blocks, in order
            return whole
        return whole.take(rows)

    def generate_range(self, params: Any, space: TokenSpace, seed: int, start: int, stop: int) -> Examples:
        return self.generate(params, space, seed, np.arange(start, stop, dtype=np.int64))

    def generate_one_block(self, params: Any, space: TokenSpace, seed: int, block: int) -> Examples:
        rng = np.random.default_rng([seed, self.uid, block])
        examples = self.generate_block(params, space, rng, BLOCK_SIZE)
        if self.uses_prefix:
            examples = add_prefix(examples, [*space.prefix_ids(self.name), space.task_sep])
        return examples


def add_prefix(examples: Examples, prefix: list[int]) -> Examples:
    """Prepend the same tokens to every input (vectorized; ``np.insert`` is ~3x a ``ragged_join`` here)."""
    n, k = len(examples), len(prefix)
    starts = np.repeat(examples.input_offsets[:-1], k)
    values = np.insert(examples.input_values, starts, np.tile(np.asarray(prefix, np.int32), n))
    offsets = examples.input_offsets + k * np.arange(n + 1, dtype=np.int64)
    return Examples(values, offsets, examples.target_values, examples.target_offsets)


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called ``name``; a ``UserError`` naming the nearest task otherwise."""
    _load_builtin_tasks()
    return lookup(TASKS, name, "task", "`synthpre tasks` lists them all.")


def all_tasks() -> dict[str, Task]:
    _load_builtin_tasks()
    return dict(TASKS)


def _load_builtin_tasks() -> None:
    """Import the task modules, which register their tasks on import."""
    import importlib

    for module in ("simple", "lime", "dyck", "nonsense", "text"):
        importlib.import_module(f"synthpre.tasks.{module}")
