"""``synthpre tasks | show | generate``: list, inspect and export the synthetic tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from synthpre.data.export import SHARD_EXAMPLES
from synthpre.errors import UserError
from synthpre.tasks.registry import Task, all_tasks, get_task
from synthpre.tokens import PREFIX_BASE, SENTINEL_ROLES, TASK_PREFIX_ORDER, TokenSpace

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SEPARATORS = ("task_sep", "word_sep", "arg_sep", "lime_sep")

MIN_LEN = typer.Option(None, "--min-len", help="Shortest payload, separators included (default 10).")
MAX_LEN = typer.Option(None, "--max-len", help="Longest payload, separators included (default 220).")
VOCAB = typer.Option("2:31999", "--vocab", help="Content token ids LO:HI; sentinels sit above HI.")
PARAM = typer.Option([], "--param", help="Another generation parameter KEY=VALUE (repeatable).")
SEED = typer.Option(0, "--seed", help="Random seed (0 or more): same seed, same bytes.")


def list_tasks() -> None:
    """List every registered task, one line each: name and definition."""
    tasks = all_tasks()
    width = max(len(name) for name in tasks)
    for name, task in tasks.items():
        typer.echo(f"{name:<{width}}  {task.definition}")


def show(
    task_name: str = typer.Argument(..., metavar="TASK", help="Task name, see `synthpre tasks`."),
    num: int = typer.Option(3, "-n", "--num", help="How many examples to print."),
    letters: bool = typer.Option(
        False, "--letters", help="Paper notation (App. G): tokens as a b c ..., separators as <s>."
    ),
    seed: int = SEED,
    min_len: int = MIN_LEN,
    max_len: int = MAX_LEN,
    vocab: str = VOCAB,
    param: list[str] = PARAM,
) -> None:
    """Print examples of a task, as token ids or (--letters) in the notation of App. G."""
    from synthpre.data.export import check_seed, make_params, parse_param_overrides

    check_seed(seed)
    task = get_task(task_name)
    space = TokenSpace.parse(vocab)
    overrides = {"min_len": min_len, "max_len": max_len, **parse_param_overrides(task, param)}
    params = make_params(task, space, overrides)
    if num <= 0:
        raise UserError(f"-n {num}: the number of examples must be positive")
    examples = task.generate(params, space, seed, np.arange(num))
    for j in range(len(examples)):
        source, target = examples.input(j).tolist(), examples.target(j).tolist()
        if letters:
            source, target = as_letters(task, space, source, target, params)
        else:
            source, target = " ".join(map(str, source)), " ".join(map(str, target))
        typer.echo(f"Source:\n{source}\n\nTarget:\n{target}\n")


def as_letters(
    task: Task, space: TokenSpace, source: list[int], target: list[int], params: object = None
) -> tuple[str, str]:
    """App. G notation: content ids as letters in order of first appearance in the example,
    separators as ``<s>``, digits as digits, other specials by name; the task prefix is left out.
    A task's own ``token_names`` (App. E notation) take precedence."""
    if task.uses_prefix and space.task_sep in source:
        source = source[source.index(space.task_sep) + 1 :]
    names = _special_names(space)
    if task.token_names is not None:
        names.update(task.token_names(source + target, params, space))
    letters: dict[int, str] = {}

    def word(token: int) -> str:
        if token in names:
            return names[token]
        if token not in letters:
            k = len(letters)
            letters[token] = LETTERS[k] if k < len(LETTERS) else f"t{k}"
        return letters[token]

    return " ".join(map(word, source)), " ".join(map(word, target))


def _special_names(space: TokenSpace) -> dict[int, str]:
    names = {space.sentinel(k): f"<extra_id_{k}>" for k in range(100)}
    for role, k in SENTINEL_ROLES.items():
        if role in _SEPARATORS:
            names[space.sentinel(k)] = "<s>"
        elif role.startswith("digit_"):
            names[space.sentinel(k)] = role.removeprefix("digit_")
        else:
            names[space.sentinel(k)] = f"<{role}>"
    for position, name in enumerate(TASK_PREFIX_ORDER):
        names[space.sentinel(PREFIX_BASE + position)] = f"<{name}>"
    names[space.yes], names[space.no] = "yes", "no"
    return names


def generate(
    task_name: str = typer.Argument(..., metavar="TASK", help="Task name, see `synthpre tasks`."),
    num: int = typer.Option(..., "--num", help="Number of training examples (indices 0..N-1)."),
    out: Path = typer.Option(..., "--out", help="Output folder (created; must be empty or --overwrite)."),
    seed: int = SEED,
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or parquet (two list<int32> columns)."),
    min_len: int = MIN_LEN,
    max_len: int = MAX_LEN,
    vocab: str = VOCAB,
    param: list[str] = PARAM,
    workers: int = typer.Option(
        1, "--workers", help="Processes writing the files: any number writes the same files, byte for byte."
    ),
    shards: int = typer.Option(
        None,
        "--shards",
        help=f"Number of train files (default: one per started {SHARD_EXAMPLES:,} of --num; not --workers).",
    ),
    val_num: int = typer.Option(0, "--val-num", help="Validation examples, from a disjoint index range."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Generate a dataset: data files plus manifest.json, written atomically into --out.

    Example i is a pure function of (task, parameters, vocabulary, seed, i); the validation split
    uses indices 2**40 + 0..M-1, so it never overlaps the training split.  The files written (names,
    number and bytes) depend on the task, its parameters, --vocab, --seed, --num, --val-num, --format
    and --shards (default: from --num alone), never on --workers.
    """
    from tqdm import tqdm

    from synthpre.data.export import (
        check_request,
        check_seed,
        default_shards,
        export_dataset,
        make_params,
        parse_param_overrides,
    )

    check_seed(seed)
    task = get_task(task_name)
    space = TokenSpace.parse(vocab)
    overrides = {"min_len": min_len, "max_len": max_len, **parse_param_overrides(task, param)}
    params = make_params(task, space, overrides)
    shards = default_shards(num) if shards is None else shards
    check_request(out, num, fmt, val_num, workers, shards, overwrite, seed=seed)  # before the progress bar
    with tqdm(total=num + val_num, unit="ex", unit_scale=True, disable=quiet, desc=task.name) as bar:
        content = export_dataset(
            task.name,
            out,
            num,
            seed=seed,
            fmt=fmt,
            space=space,
            params=params,
            val_num=val_num,
            workers=workers,
            shards=shards,
            overwrite=overwrite,
            progress=bar.update,
        )
    if not quiet:
        typer.echo(f"wrote {len(content['files'])} {fmt} file(s) and manifest.json to {out}")


def register(app: typer.Typer) -> None:
    app.command("tasks")(list_tasks)
    app.command("show")(show)
    app.command("generate")(generate)
