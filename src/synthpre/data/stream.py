"""Training streams that are pure functions of (seed, step, rank): nothing but the step is saved to resume.

The engine never iterates a stateful DataLoader.  For global step ``s`` every process builds the
whole GLOBAL batch of ``B = global_batch`` examples, ``BatchStream.global_examples(s)``:
``source.examples(batch_indices(seed, s, 0, 1, B))``, or with ``bucket_steps > 1`` one batch of the
length-bucketed window of steps holding ``s``.  It then keeps its own contiguous slice,
``BatchStream.share`` (rows ``rank * B / world`` up to ``(rank + 1) * B / world``);
``BatchStream.batch(s)`` does both.  The engine also counts the step's target and input tokens on the
CPU from the global batch, so no process needs a collective for them.  Sources:

- ``MixtureSource``: tasks with rates, generated on the fly (seqio-style mixture).  Which task serves
  example ``i`` is drawn block-wise from ``(seed, i // BLOCK_SIZE)``, and task ``k``'s example ``i`` is
  ``task.generate(params, space, seed, [i])``, so the stream is infinite and needs no disk.
- ``DatasetSource``: a finite ``Examples`` (fine-tuning data); ``batch_indices`` reshuffles it every
  epoch from the seed.

``collate`` appends EOS, truncates, and pads to the longest example of the batch rounded up to a
multiple of 8 (dynamic padding: the reference padded everything to 512/512, App. A).  A decoder-only
model reads one row per example instead, ``collate_causal``: input, EOS, target, EOS (the first EOS
separates the prompt from what is learned; with an empty input it starts the sequence, as GPT-2's
``<|endoftext|>``).  :class:`Collator` is the engine's choice between the two, made by the model kind;
with ``pack_length`` it packs the decoder-only rows (``pack_causal``: document masking and positions
that restart with every example).
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

import numpy as np
import torch

from synthpre.errors import UserError
from synthpre.tasks.ragged import offsets_from_lengths
from synthpre.tasks.registry import BLOCK_SIZE, VALIDATION_OFFSET, Examples, Task
from synthpre.tokens import EOS_ID, PAD_ID, TokenSpace

LABEL_IGNORE = -100  # the label of padding positions: no loss, no accuracy
_MIXTURE_SALT = zlib.crc32(b"synthpre.mixture")
_SHUFFLE_SALT = zlib.crc32(b"synthpre.shuffle")
_BUCKET_SALT = zlib.crc32(b"synthpre.bucket")


class ExampleSource(Protocol):
    """Anything the engine can train or validate on."""

    @property
    def num_examples(self) -> int | None:
        """``None`` for an infinite synthetic stream, else the dataset size."""

    def examples(self, indices: np.ndarray) -> Examples:
        """The examples at ``indices`` (any order); a pure function of the indices."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description, written into the run's ``config.json``."""


@dataclass
class MixtureSource:
    """An infinite stream mixing ``tasks`` (each a ``(Task, params)``) with ``rates`` (default: equal).

    ``index_offset`` shifts every index; the validation stream is the same mixture at
    ``VALIDATION_OFFSET`` (``validation()``), so training and validation examples never overlap.
    """

    tasks: Sequence[tuple[Task, Any]]
    space: TokenSpace
    seed: int = 0
    rates: Sequence[float] | None = None
    index_offset: int = 0
    cache_blocks: int = 16
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise UserError("a mixture needs at least one task, e.g. --task set")
        rates = [1.0] * len(self.tasks) if self.rates is None else [float(r) for r in self.rates]
        if len(rates) != len(self.tasks):
            raise UserError(f"{len(rates)} rates for {len(self.tasks)} tasks: give one rate per task")
        if any(r < 0 for r in rates) or sum(rates) <= 0:
            raise UserError(f"rates {rates}: need non-negative rates with a positive sum")
        self.rates = [r / sum(rates) for r in rates]

    @property
    def num_examples(self) -> None:
        return None

    def validation(self) -> MixtureSource:
        """The same mixture over the held-out index range (``VALIDATION_OFFSET`` on)."""
        return dataclasses.replace(self, index_offset=VALIDATION_OFFSET)

    def task_choice(self, indices: np.ndarray) -> np.ndarray:
        """Which task (position in ``tasks``) serves each global index; drawn block-wise from the seed."""
        if len(self.tasks) == 1:
            return np.zeros(len(indices), dtype=np.int64)
        blocks = indices // BLOCK_SIZE
        unique_blocks, inverse = np.unique(blocks, return_inverse=True)
        bounds = np.cumsum(self.rates)[:-1]
        draws = np.stack(
            [
                np.random.default_rng([self.seed, _MIXTURE_SALT, int(b)]).random(BLOCK_SIZE)
                for b in unique_blocks
            ]
        )
        return np.searchsorted(bounds, draws[inverse, indices % BLOCK_SIZE], side="right")

    def examples(self, indices: np.ndarray) -> Examples:
        indices = np.asarray(indices, dtype=np.int64) + self.index_offset
        choice = self.task_choice(indices)
        parts, rows = [], []
        for k in np.unique(choice):
            (positions,) = np.nonzero(choice == k)
            parts.append(self._task_examples(int(k), indices[positions]))
            rows.append(positions)
        whole = Examples.concat(parts)
        order = np.empty(len(indices), dtype=np.int64)
        order[np.concatenate(rows)] = np.arange(len(indices))
        return whole.take(order)

    def _task_examples(self, k: int, indices: np.ndarray) -> Examples:
        """``Task.generate`` with an LRU cache of whole blocks (a step touches the same block many times)."""
        blocks = indices // BLOCK_SIZE
        unique_blocks, inverse = np.unique(blocks, return_inverse=True)
        made = [self._block(k, int(b)) for b in unique_blocks]
        return Examples.concat(made).take(inverse * BLOCK_SIZE + indices % BLOCK_SIZE)

    def _block(self, k: int, block: int) -> Examples:
        key = (k, block)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        task, params = self.tasks[k]
        examples = task.generate_one_block(params, self.space, self.seed, block)
        self._cache[key] = examples
        if len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return examples

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "mixture",
            "tasks": [task.name for task, _ in self.tasks],
            "params": [dataclasses.asdict(params) for _, params in self.tasks],
            "rates": list(self.rates or []),
            "token_space": self.space.describe(),
            "seed": self.seed,
            "index_offset": self.index_offset,
        }


@dataclass
class DatasetSource:
    """A finite dataset; ``batch_indices`` reshuffles it every epoch from the seed."""

    data: Examples
    name: str = "dataset"

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def examples(self, indices: np.ndarray) -> Examples:
        return self.data.take(np.asarray(indices, dtype=np.int64))

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for array in dataclasses.fields(self.data):
            digest.update(np.ascontiguousarray(getattr(self.data, array.name)).tobytes())
        return {
            "kind": "dataset",
            "name": self.name,
            "num_examples": len(self.data),
            "sha256": digest.hexdigest(),
        }


def check_batch_split(global_batch: int, world_size: int) -> int:
    """The per-process batch; a ``UserError`` when the global batch does not split evenly."""
    if global_batch <= 0 or global_batch % world_size:
        raise UserError(
            f"batch size {global_batch} is not divisible by the {world_size} processes: every process "
            f"takes batch/processes examples; choose a multiple of {world_size}"
        )
    return global_batch // world_size


@lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    return np.random.default_rng([seed, _SHUFFLE_SALT, epoch]).permutation(num_examples)


def batch_indices(
    seed: int, step: int, rank: int, world_size: int, global_batch: int, num_examples: int | None = None
) -> np.ndarray:
    """Source indices of process ``rank``'s share of global step ``step`` (steps count from 0).

    The global batch of step ``s`` is stream positions ``s*B .. s*B + B - 1``; process ``r``'s share is
    the ``r``-th contiguous slice, so any number of processes sees the same global batch.  A finite source
    maps position ``p`` to row ``perm_e[p mod N]`` of epoch ``e = p // N``, a fresh permutation per epoch.
    ``BatchStream`` asks for the whole global batch (``rank=0, world_size=1``) and slices it afterwards.
    """
    per_process = check_batch_split(global_batch, world_size)
    positions = step * global_batch + rank * per_process + np.arange(per_process, dtype=np.int64)
    if num_examples is None:
        return positions
    epochs, offsets = np.divmod(positions, num_examples)
    rows = np.empty_like(positions)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        rows[here] = _epoch_permutation(seed, int(epoch), num_examples)[offsets[here]]
    return rows


@dataclass
class BatchStream:
    """Process ``rank``'s batches of a source; ``batch(step)`` is a pure function of (seed, step, rank).

    Every process builds the whole global batch of a step (``global_examples``) and keeps its slice
    (``share``), so the global batch is the same for any number of processes.  With
    ``bucket_steps > 1``, the global batches of each window of ``bucket_steps`` steps are sorted by
    length, cut into ``bucket_steps`` batches of similar lengths and served in an order shuffled from
    the seed: less padding, same examples per window.
    """

    source: ExampleSource
    seed: int
    global_batch: int
    rank: int = 0
    world_size: int = 1
    bucket_steps: int = 1
    _window: tuple[int, list[Examples]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.per_process = check_batch_split(self.global_batch, self.world_size)

    def batch(self, step: int) -> Examples:
        """This process's share of the global batch of ``step``."""
        return self.share(self.global_examples(step))

    def global_examples(self, step: int) -> Examples:
        """The whole global batch of ``step`` (every process's share, in rank order)."""
        if self.bucket_steps <= 1:
            return self.source.examples(self._indices(step))
        window, position = divmod(step, self.bucket_steps)
        return self._bucketed_window(window)[position]

    def share(self, global_examples: Examples) -> Examples:
        """This process's contiguous slice (``per_process`` rows, rank order) of a global batch."""
        return global_examples.take(
            np.arange(self.rank * self.per_process, (self.rank + 1) * self.per_process)
        )

    def _indices(self, step: int) -> np.ndarray:
        return batch_indices(self.seed, step, 0, 1, self.global_batch, self.source.num_examples)

    def _bucketed_window(self, window: int) -> list[Examples]:
        if self._window is not None and self._window[0] == window:
            return self._window[1]
        first = window * self.bucket_steps
        indices = np.concatenate([self._indices(s) for s in range(first, first + self.bucket_steps)])
        examples = self.source.examples(indices)
        by_length = np.argsort(examples.input_lengths + examples.target_lengths, kind="stable")
        chunks = by_length.reshape(self.bucket_steps, self.global_batch)
        order = np.random.default_rng([self.seed, _BUCKET_SALT, window]).permutation(self.bucket_steps)
        batches = [examples.take(chunks[k]) for k in order]
        self._window = (window, batches)
        return batches


def _dense(
    values: np.ndarray, offsets: np.ndarray, max_len: int, pad_multiple: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows -> a [rows, width] matrix: each row truncated to ``max_len - 1``, then EOS, then PAD."""
    lengths = np.minimum(np.diff(offsets), max_len - 1)
    n = len(lengths)
    longest = int(lengths.max()) + 1 if n else 1
    width = -(-longest // pad_multiple) * pad_multiple
    dense = np.full((n, width), PAD_ID, dtype=np.int64)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
        offsets_from_lengths(lengths)[:-1], lengths
    )
    dense[rows, cols] = values[np.repeat(offsets[:-1], lengths) + cols]
    dense[np.arange(n), lengths] = EOS_ID
    return dense, lengths + 1


def collated_lengths(lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Tokens of each sequence once collated: truncated to ``max_len - 1``, then EOS."""
    return np.minimum(lengths, max_len - 1) + 1


def collate(
    examples: Examples, max_input_len: int, max_target_len: int, pad_multiple: int = 8
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on padding) as int64 tensors.

    EOS is appended after truncating to ``max_len - 1`` tokens (seqio's order), and the batch is padded
    to its longest sequence rounded up to ``pad_multiple``.
    """
    inputs, input_lengths = _dense(examples.input_values, examples.input_offsets, max_input_len, pad_multiple)
    targets, target_lengths = _dense(
        examples.target_values, examples.target_offsets, max_target_len, pad_multiple
    )
    attention_mask = np.arange(inputs.shape[1]) < input_lengths[:, None]
    labels = np.where(np.arange(targets.shape[1]) < target_lengths[:, None], targets, LABEL_IGNORE)
    return {
        "input_ids": torch.from_numpy(inputs),
        "attention_mask": torch.from_numpy(attention_mask.astype(np.int64)),
        "labels": torch.from_numpy(labels),
    }


def collate_causal(
    examples: Examples,
    max_input_len: int,
    max_target_len: int,
    pad_multiple: int = 8,
    loss_on: str = "target",
) -> dict[str, torch.Tensor]:
    """Decoder-only rows ``input EOS target EOS PAD...`` with ``input_ids``, ``attention_mask`` and
    ``labels`` ALIGNED WITH THE LOGITS: ``labels[t]`` is the token at ``t + 1`` where that token is
    learned, else ``-100``.  Learned: the target and its EOS (``loss_on="target"``), or every token
    after the first (``"all"``, for language-like streams).  The input and the target are truncated
    as by :func:`collate` (to ``max_len - 1`` tokens, then EOS), so a row has at most
    ``max_input_len + max_target_len`` tokens.
    """
    inputs, input_lengths = _dense(examples.input_values, examples.input_offsets, max_input_len, 1)
    targets, target_lengths = _dense(examples.target_values, examples.target_offsets, max_target_len, 1)
    lengths = input_lengths + target_lengths
    n = len(lengths)
    longest = int(lengths.max()) if n else 1
    width = -(-longest // pad_multiple) * pad_multiple
    columns = np.arange(width)[None, :]
    ids = np.full((n, width), PAD_ID, dtype=np.int64)
    # Row-major boolean masks enumerate each row's tokens in order, with the same count per row.
    ids[columns < input_lengths[:, None]] = inputs[np.arange(inputs.shape[1]) < input_lengths[:, None]]
    in_target = (columns >= input_lengths[:, None]) & (columns < lengths[:, None])
    ids[in_target] = targets[np.arange(targets.shape[1]) < target_lengths[:, None]]
    following = np.concatenate([ids[:, 1:], np.full((n, 1), PAD_ID, dtype=np.int64)], axis=1)
    next_position = columns + 1
    learned = next_position < lengths[:, None]
    if loss_on == "target":
        learned &= next_position >= input_lengths[:, None]
    labels = np.where(learned, following, LABEL_IGNORE)
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy((columns < lengths[:, None]).astype(np.int64)),
        "labels": torch.from_numpy(labels),
    }


def pack_causal(batch: dict[str, torch.Tensor], pack_length: int) -> dict[str, torch.Tensor]:
    """A :func:`collate_causal` batch packed into rows of exactly ``pack_length`` tokens: ``input_ids``,
    ``labels`` and ``position_ids``, no ``attention_mask``.

    Each row (document) is placed whole, in batch order, into the first packed row with room for it
    (first fit), after the documents already there; the rest of a packed row is PAD (label -100).
    Positions restart at 0 with every document (padding: 0), and a document's last label is already
    -100, so no label crosses documents.  Given ``position_ids``, no ``attention_mask`` and no cache
    (``use_cache=False``, as the engine's forward pass), transformers
    (``masking_utils.find_packed_sequence_indices``) starts a new sequence wherever a position does not
    follow its predecessor and lets each token attend, causally, to its own sequence only: packed rows
    compute what the unpacked rows compute.  ``pack_length`` must hold the longest row.
    """
    lengths = batch["attention_mask"].sum(1).numpy()
    if len(lengths) and lengths.max() > pack_length:
        raise ValueError(f"a row of {lengths.max()} tokens does not fit in pack_length {pack_length}")
    free = np.full(len(lengths), pack_length)
    rows, starts = np.empty((2, len(lengths)), dtype=np.int64)  # each document's packed row and column
    for i, length in enumerate(lengths.tolist()):
        row = int(np.argmax(free >= length))  # the first packed row with room (a fresh one always has)
        rows[i], starts[i] = row, pack_length - free[row]
        free[row] -= length
    num_rows = int(rows.max()) + 1 if len(rows) else 0
    position = np.arange(int(lengths.sum())) - np.repeat(offsets_from_lengths(lengths)[:-1], lengths)
    flat = np.repeat(rows * pack_length + starts, lengths) + position
    real = np.arange(batch["input_ids"].shape[1]) < lengths[:, None]  # row-major: documents in order
    packed = {}
    for key, pad in (("input_ids", PAD_ID), ("labels", LABEL_IGNORE), ("position_ids", 0)):
        values = np.full(num_rows * pack_length, pad, dtype=np.int64)
        values[flat] = position if key == "position_ids" else batch[key].numpy()[real]
        packed[key] = torch.from_numpy(values.reshape(num_rows, pack_length))
    return packed


@dataclass(frozen=True)
class Collator:
    """How the engine turns examples into tensors and counts their tokens: :func:`collate` for an
    encoder-decoder model, :func:`collate_causal` for a decoder-only one (``causal``), whose loss is
    on the target or on every token (``loss_on``), packed into rows of ``pack_length`` tokens
    (:func:`pack_causal`) when that is set."""

    max_input_len: int
    max_target_len: int
    pad_multiple: int = 8
    causal: bool = False
    loss_on: Literal["target", "all"] = "target"
    pack_length: int | None = None

    def __call__(self, examples: Examples) -> dict[str, torch.Tensor]:
        if self.causal:
            batch = collate_causal(
                examples, self.max_input_len, self.max_target_len, self.pad_multiple, self.loss_on
            )
            return batch if self.pack_length is None else pack_causal(batch, self.pack_length)
        return collate(examples, self.max_input_len, self.max_target_len, self.pad_multiple)

    def unpacked(self) -> Collator:
        """The same collation without packing (validation: its sequence accuracy counts rows)."""
        return dataclasses.replace(self, pack_length=None)

    def token_counts(self, examples: Examples) -> tuple[int, int]:
        """(tokens the loss is on, real tokens) of a batch once collated, counted without collating."""
        inputs = int(collated_lengths(examples.input_lengths, self.max_input_len).sum())
        targets = int(collated_lengths(examples.target_lengths, self.max_target_len).sum())
        if self.causal and self.loss_on == "all":
            return inputs + targets - len(examples), inputs + targets
        return targets, inputs + targets

    @property
    def max_row_length(self) -> int:
        """The longest sequence a model reads: a causal row holds the input and the target."""
        if self.causal:
            return self.max_input_len + self.max_target_len
        return max(self.max_input_len, self.max_target_len)
