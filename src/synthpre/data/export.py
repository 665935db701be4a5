"""``synthpre generate``: a task's examples as JSONL or Parquet shards plus a self-describing manifest.

Example ``i`` of the train split is ``task.generate(params, space, seed, [i])``; the validation split
takes the indices ``VALIDATION_OFFSET + 0..M-1``, so the two never overlap.  Shards are contiguous
index ranges of a shard count that depends only on the number of examples (or is given), so the
bytes do not depend on how many worker processes write them.  Everything is
written into a temporary folder next to the destination and renamed at the end: an interrupted run
leaves no half dataset, and bad input is refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import multiprocessing
import os
import shutil
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import synthpre
from synthpre.errors import UserError
from synthpre.tasks.ragged import ragged_join
from synthpre.tasks.registry import BLOCK_SIZE, VALIDATION_OFFSET, Examples, Task, get_task
from synthpre.tokens import TokenSpace

FORMATS = ("jsonl", "parquet")
CHUNK_EXAMPLES = 64 * BLOCK_SIZE  # examples generated and written at a time
MAX_TABLE_IDS = 1 << 22  # largest id written through the JSONL piece table
SHARD_EXAMPLES = 50_000  # default shard size: the default shard count depends on --num alone


def default_shards(num_examples: int) -> int:
    """Train files written when ``shards`` is not given: one per started ``SHARD_EXAMPLES`` examples
    (never on the number of workers, so that any number of workers writes the same files)."""
    return max(1, -(-num_examples // SHARD_EXAMPLES))


def make_params(task: Task, space: TokenSpace, overrides: dict[str, Any]) -> Any:
    """The task's parameters with ``overrides`` (``None`` values ignored), validated against ``space``."""
    fields = {f.name: f for f in dataclasses.fields(task.params_cls)}
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise UserError(
            f"task {task.name!r} has no parameter {', '.join(unknown)}; its parameters are: "
            f"{', '.join(fields) or 'none'}"
        )
    params = task.params_cls(**given)
    validate = getattr(params, "validate", None)
    if validate is not None:
        try:
            validate(space)
        except UserError as error:
            raise UserError(f"task {task.name!r}: {error}") from None
    return params


def parse_param_overrides(task: Task, items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--param``) converted to the type of the parameter's field."""
    hints = typing.get_type_hints(task.params_cls)
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in hints:
            raise UserError(
                f"--param {item!r}: expected KEY=VALUE with KEY one of "
                f"{', '.join(f.name for f in dataclasses.fields(task.params_cls))}"
            )
        kind = hints[key]
        try:
            overrides[key] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
        except (TypeError, ValueError):
            raise UserError(f"--param {item!r}: {text!r} is not a valid {kind.__name__}") from None
    return overrides


@dataclass(frozen=True)
class ShardJob:
    """One output file: the examples ``first_index .. first_index + num_examples - 1``."""

    task: str
    params: Any
    space: TokenSpace
    seed: int
    first_index: int
    num_examples: int
    path: str
    format: str


def manifest(task: Task, params: Any, space: TokenSpace, seed: int, files: list[dict], fmt: str) -> dict:
    """The ``manifest.json`` that makes a dataset self-describing."""
    splits = {
        split: sum(f["num_examples"] for f in files if f["split"] == split)
        for split in ("train", "validation")
    }
    content = {
        "task": task.name,
        "definition": task.definition,
        "seed": seed,
        "num_examples": splits["train"],
        "params": dataclasses.asdict(params),
        "token_space": space.describe(),
        "prefix_ids": space.prefix_ids(task.name) if task.uses_prefix else [],
        "digit_ids": space.digit_ids.tolist(),
        "yes_id": space.yes,
        "no_id": space.no,
        "format": fmt,
        "files": files,
        "train_indices": [0, splits["train"]],
        "validation": (
            {
                "num_examples": splits["validation"],
                "indices": [VALIDATION_OFFSET, VALIDATION_OFFSET + splits["validation"]],
            }
            if splits["validation"]
            else None
        ),
        "block_size": BLOCK_SIZE,
        "synthpre_version": synthpre.__version__,
    }
    if task.extra_manifest is not None:
        content.update(task.extra_manifest(params, space))
    return content


def export_dataset(
    task_name: str,
    out: Path,
    num_examples: int,
    seed: int = 0,
    fmt: str = "jsonl",
    space: TokenSpace | None = None,
    params: Any = None,
    val_num: int = 0,
    workers: int = 1,
    shards: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write ``out/`` (data files + ``manifest.json``) atomically and return the manifest.

    ``shards`` defaults to :func:`default_shards` of ``num_examples``; the files and their bytes are
    the same for any ``workers``.  ``progress(k)`` is called as ``k`` more examples are written.
    """
    task = get_task(task_name)
    space = space or TokenSpace()
    params = params if params is not None else make_params(task, space, {})
    shards = default_shards(num_examples) if shards is None else shards
    check_request(out, num_examples, fmt, val_num, workers, shards, overwrite, seed=seed)
    temporary = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    jobs = _shard_jobs(task.name, params, space, seed, num_examples, val_num, shards, temporary, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary.mkdir()
    try:
        _run_jobs(jobs, workers, progress)
        files = [
            {
                "path": Path(job.path).name,
                "split": "train" if job.first_index < VALIDATION_OFFSET else "validation",
                "first_index": job.first_index,
                "num_examples": job.num_examples,
                "bytes": Path(job.path).stat().st_size,
            }
            for job in jobs
        ]
        content = manifest(task, params, space, seed, files, fmt)
        (temporary / "manifest.json").write_text(json.dumps(content, indent=2) + "\n")
        _replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return content


def check_request(
    out: Path,
    num_examples: int,
    fmt: str,
    val_num: int,
    workers: int,
    shards: int,
    overwrite: bool,
    seed: int = 0,
) -> None:
    """``UserError`` on a bad export request, before anything is created."""
    check_seed(seed)
    if num_examples <= 0:
        raise UserError(f"--num {num_examples}: the number of examples must be positive")
    if val_num < 0:
        raise UserError(f"--val-num {val_num}: must be 0 (no validation split) or positive")
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if workers < 1:
        raise UserError(f"--workers {workers}: need at least 1")
    if not 1 <= shards <= num_examples:
        raise UserError(f"--shards {shards}: need 1 <= shards <= --num ({num_examples})")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} exists and is not empty; pass --overwrite to replace it")


def check_seed(seed: int) -> None:
    """``UserError`` unless ``seed`` is a non-negative integer (numpy's seeds are)."""
    if seed < 0:
        raise UserError(f"--seed {seed}: the seed must be a non-negative integer (0, 1, 2, ...)")


def _shard_jobs(
    task: str,
    params: Any,
    space: TokenSpace,
    seed: int,
    num: int,
    val_num: int,
    shards: int,
    folder: Path,
    fmt: str,
) -> list[ShardJob]:
    """Contiguous index ranges of (nearly) equal size, then the validation split."""
    bounds = [num * k // shards for k in range(shards + 1)]
    jobs = [
        ShardJob(
            task, params, space, seed, a, b - a, str(folder / f"train-{k:05d}-of-{shards:05d}.{fmt}"), fmt
        )
        for k, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    if val_num:
        path = str(folder / f"validation.{fmt}")
        jobs.append(ShardJob(task, params, space, seed, VALIDATION_OFFSET, val_num, path, fmt))
    return jobs


def _run_jobs(jobs: list[ShardJob], workers: int, progress: Callable[[int], None] | None) -> None:
    report = progress or (lambda k: None)
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            for written in write_shard(job):
                report(written)
        return
    # fork where there is one: spawn would re-import the command line (and torch) in every worker.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(min(workers, len(jobs))) as pool:
        for written in pool.imap_unordered(_write_whole_shard, jobs):
            report(written)


def _write_whole_shard(job: ShardJob) -> int:
    return sum(write_shard(job))


def write_shard(job: ShardJob) -> Iterator[int]:
    """Generate and write one shard chunk by chunk; yields the number of examples written."""
    task = get_task(job.task)
    writer = _ParquetWriter(job.path) if job.format == "parquet" else _JsonlWriter(job.path)
    with writer:
        stop = job.first_index + job.num_examples
        for start in range(job.first_index, stop, CHUNK_EXAMPLES):
            end = min(start + CHUNK_EXAMPLES, stop)
            writer.write(task.generate_range(job.params, job.space, job.seed, start, end))
            yield end - start


class _JsonlWriter:
    """One ``{"inputs":[...],"targets":[...]}`` object per line."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed in __exit__

    def __enter__(self) -> _JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def write(self, examples: Examples) -> None:
        self.file.write(jsonl_bytes(examples))


def jsonl_bytes(examples: Examples) -> bytes:
    """The lines ``{"inputs":[...],"targets":[...]}`` of ``examples``, built with array operations.

    Each line is a sequence of "pieces" (a token with its comma, a token ending its list, or a few
    bytes of the fixed text), laid out with ``ragged_join``; a table holds every piece's bytes, so
    the text is one gather plus one compaction (no per-example Python).
    """
    values = [examples.input_values, examples.target_values]
    offsets = [examples.input_offsets, examples.target_offsets]
    size = 1 + max(int(v.max(initial=0)) for v in values)
    if size > MAX_TABLE_IDS:  # ids far beyond any vocabulary: plain formatting
        return "".join(
            json.dumps({"inputs": a, "targets": b}, separators=(",", ":")) + "\n"
            for a, b in zip(*examples.to_lists(), strict=True)
        ).encode()
    table, widths, text_pieces = _piece_table(size)
    pieces = []
    for value, offset in zip(values, offsets, strict=True):
        ids = value.astype(np.int32)
        ends_list = offset[1:][np.diff(offset) > 0] - 1
        ids[ends_list] += size  # the variant without a comma
        pieces.append((ids, offset))
    head, middle, tail = text_pieces
    line, _ = ragged_join([*head, pieces[0], *middle, pieces[1], *tail])
    return table[line][np.arange(table.shape[1]) < widths[line][:, None]].tobytes()


@functools.lru_cache(maxsize=4)
def _piece_table(size: int) -> tuple[np.ndarray, np.ndarray, tuple[list[int], ...]]:
    """Bytes (left-aligned rows) and widths of the pieces: ids ``0..size-1`` with a comma, then the
    same without it, then the fixed text cut into row-wide chunks (returned as piece ids)."""
    numbers = np.arange(size, dtype=np.int64)
    num_digits = 1 + np.searchsorted(10 ** np.arange(1, 19, dtype=np.int64), numbers, side="right")
    width = int(num_digits.max()) + 1
    digits = np.zeros((size, width), dtype=np.uint8)
    for k in range(width - 1):  # k-th digit from the left
        has = num_digits > k
        digits[has, k] = ord("0") + numbers[has] // 10 ** (num_digits[has] - 1 - k) % 10
    with_comma = digits.copy()
    with_comma[numbers, num_digits] = ord(",")
    texts = [b'{"inputs":[', b'],"targets":[', b"]}\n"]
    chunks = [text[k : k + width] for text in texts for k in range(0, len(text), width)]
    chunk_rows = np.zeros((len(chunks), width), dtype=np.uint8)
    for row, chunk in enumerate(chunks):
        chunk_rows[row, : len(chunk)] = list(chunk)
    table = np.concatenate([with_comma, digits, chunk_rows])
    widths = np.concatenate([num_digits + 1, num_digits, [len(c) for c in chunks]])
    ids, first = [], 2 * size
    for text in texts:
        count = -(-len(text) // width)
        ids.append(list(range(first, first + count)))
        first += count
    return table, widths, tuple(ids)


class _ParquetWriter:
    """Two ``list<int32>`` columns, built straight from the offsets and values."""

    def __init__(self, path: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        schema = pa.schema([("inputs", pa.list_(pa.int32())), ("targets", pa.list_(pa.int32()))])
        # Dictionary pages do not pay for ids drawn from 32K values: zstd alone writes 1.4x faster.
        self.writer = pq.ParquetWriter(path, schema, use_dictionary=False, compression="zstd")

    def __enter__(self) -> _ParquetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()

    def write(self, examples: Examples) -> None:
        if max(len(examples.input_values), len(examples.target_values)) >= 2**31 and len(examples) > 1:
            half = len(examples) // 2  # list<int32> offsets are int32: write very long chunks in halves
            self.write(examples.take(np.arange(half)))
            self.write(examples.take(np.arange(half, len(examples))))
            return
        pa = self.pa

        def column(values: np.ndarray, offsets: np.ndarray) -> Any:
            return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, pa.int32()))

        self.writer.write_table(
            pa.table(
                {
                    "inputs": column(examples.input_values, examples.input_offsets),
                    "targets": column(examples.target_values, examples.target_offsets),
                }
            )
        )


def _replace(temporary: Path, out: Path) -> None:
    """Move the finished folder into place; an old ``out`` is removed only after the rename."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(temporary, out)
    if old is not None:
        shutil.rmtree(old)


def read_dataset(folder: Path, split: str = "train") -> Examples:
    """Read a split of an exported dataset back (JSONL or Parquet) as ``Examples``."""
    content = json.loads((folder / "manifest.json").read_text())
    parts = []
    for entry in content["files"]:
        if entry["split"] != split:
            continue
        path = folder / entry["path"]
        if content["format"] == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            inputs, targets = (_ragged(table.column(name).combine_chunks()) for name in ("inputs", "targets"))
            parts.append(Examples(*inputs, *targets))
        else:
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            parts.append(Examples.from_lists([r["inputs"] for r in rows], [r["targets"] for r in rows]))
    if not parts:
        raise UserError(f"{folder} has no {split!r} split")
    return Examples.concat(parts)


def _ragged(column: Any) -> tuple[np.ndarray, np.ndarray]:
    offsets = column.offsets.to_numpy().astype(np.int64)
    return column.flatten().to_numpy().astype(np.int32), offsets - offsets[0]
