"""Downstream commands: ``finetune``, ``evaluate``, ``tokenizer train``, ``downstream list`` and
``downstream check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from synthpre.cli.options import invalid_settings, model_options, with_options
from synthpre.downstream.config import FinetuneConfig
from synthpre.errors import UserError

tokenizer_app = typer.Typer(help="Tokenizers for downstream tasks (trained offline, never downloaded).")
downstream_app = typer.Typer(help="The downstream (fine-tuning) task registry.")


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected comma-separated numbers, e.g. 1e-2,3e-3,1e-3") from None
    if not values or any(v <= 0 for v in values):
        raise UserError(f"{option} {text!r}: expected positive numbers")
    return values


def task_defaults_text(field: str) -> str:
    """The App. D.3 defaults of ``field`` over the registered tasks, e.g. "the task's: 128; webqsp 32"
    (a task without one, such as text_lm's max_decode_len, is left out)."""
    from collections import Counter

    from synthpre.downstream.registry import DOWNSTREAM_TASKS

    defaults = {name: getattr(task.defaults, field) for name, task in DOWNSTREAM_TASKS.items()}
    values = {name: value for name, value in defaults.items() if value is not None}
    common = Counter(values.values()).most_common(1)[0][0]
    others = ", ".join(f"{name} {value:,}" for name, value in values.items() if value != common)
    return f"the task's, App. D.3: {common:,}" + (f"; {others}" if others else "")


TASK_DEFAULTED = ("learning_rate", "max_steps", "eval_every", "batch_size", "max_input_len", "max_target_len",
                  "max_decode_len")  # fmt: skip
FINETUNE_OPTIONS = model_options(
    FinetuneConfig,
    exclude=("task", "out_dir", "lr_sweep"),
    aliases={"learning_rate": ["--lr"]},
    defaults_text={
        **{field: task_defaults_text(field) for field in TASK_DEFAULTED},
        "eval_decode": "all for SQuAD and the offline tasks, none otherwise",
    },
    help={"eval_decode": "validation examples decoded at each evaluation"},
)


@with_options(FINETUNE_OPTIONS)
def finetune(
    task: str = typer.Option(..., help="downstream task (`synthpre downstream list`)"),
    out: Path = typer.Option(..., "--out", help="the run folder"),
    lr_sweep: str = typer.Option(None, help="one run per learning rate, the best kept, e.g. 1e-2,3e-3,1e-3"),
    threads: int = typer.Option(None, help="torch CPU threads"),
    resume: bool = typer.Option(False, help="continue the run in --out from its newest checkpoint"),
    overwrite: bool = typer.Option(False, help="delete the run files already in --out and start over"),
    **given: Any,
) -> None:
    """Fine-tune a T5 or a decoder-only model (prompt `input EOS`, loss on the target) on a downstream
    task with the engine of `synthpre pretrain` (App. B / D.3 defaults: Adafactor with a constant learning
    rate, dropout 0.1, the task's batch, lengths and steps).

    The checkpoint chosen by the task's App. B rule goes into OUT/results.json.  Example on a CPU:
    `synthpre finetune --task smiles_canonicalize --model t5-tiny --tokenizer chars --out runs/smiles`.
    """
    from synthpre import recipes

    if threads:
        import torch

        torch.set_num_threads(threads)
    sweep = _floats(lr_sweep, "--lr-sweep") if lr_sweep else None
    try:
        config = FinetuneConfig(task=task, out_dir=str(out), lr_sweep=sweep, **given)
    except ValidationError as error:
        raise invalid_settings(error, "fine-tuning") from None
    results = recipes.finetune(config, resume=resume, overwrite=overwrite)
    selected = results["selected"]
    scores = ", ".join(f"{k} {v:.4g}" for k, v in selected.items() if k.startswith("val_"))
    print(f"selected {selected['checkpoint']} (step {selected['step']}; {results['rule']}): {scores}")
    print(f"results: {out / 'results.json'}")


def evaluate(
    run: Path = typer.Argument(..., help="a run folder written by `synthpre finetune`"),
    split: str = typer.Option("test", help="train, validation or test"),
    beams: int = typer.Option(1, help="1 = greedy; k > 1 = beam search (length penalty 0.6), top-k metrics"),
    batch_size: int = typer.Option(None, help="decoding batch (default: the run's batch size)"),
    data: Path = typer.Option(None, help="the task's data folder, if it moved since fine-tuning"),
    predictions: Path = typer.Option(None, help="only score this predictions JSONL against the split"),
    limit: int = typer.Option(None, min=1, help="decode only the first N examples of the split"),
    threads: int = typer.Option(None, help="torch CPU threads"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Decode a split with the run's selected checkpoint (batched greedy or beam search, up to the task's
    max decode length); writes RUN/eval/SPLIT/predictions.jsonl and metrics.json.  A language-modelling
    run (text_lm) is not decoded: metrics.json holds the split's loss, perplexity and token accuracy."""
    from synthpre import recipes

    if threads:
        import torch

        torch.set_num_threads(threads)
    if predictions is not None and not predictions.is_file():
        raise UserError(f"--predictions {predictions}: no such file")
    metrics = recipes.evaluate(
        run, split, beams=beams, limit=limit, batch_size=batch_size, data=data, predictions=predictions,
        progress=progress,
    )  # fmt: skip
    print(json.dumps(metrics, indent=2))


def train_tokenizer(
    task: str = typer.Option(..., help="downstream task whose training text trains the tokenizer"),
    out: Path = typer.Option(..., "--out", help="folder for spiece.model + Hugging Face tokenizer files"),
    data: Path = typer.Option(None, help="folder with the task's files (the six App. D tasks)"),
    vocab_size: int = typer.Option(32_000, help="SentencePiece pieces (T5: 32,000); 100 sentinels are added"),
    overwrite: bool = typer.Option(False, help="replace an existing --out folder"),
) -> None:
    """Train a SentencePiece unigram tokenizer offline on a task's training split, with T5's layout
    (pad 0, eos 1, unk 2, <extra_id_0..99> on top); pass it to `synthpre finetune --tokenizer OUT`."""
    from synthpre import recipes

    tokenizer = recipes.train_tokenizer(task, out, data, vocab_size, overwrite=overwrite)
    print(f"{out}: {tokenizer.vocab_size:,} ids ({tokenizer.vocab_size - 100:,} pieces + 100 sentinels)")


CHECK_OPTIONS = model_options(
    FinetuneConfig,
    only=("data", "data_format", "tokenizer", "init_from", "max_input_len", "max_target_len", "lowercase"),
    defaults_text={field: task_defaults_text(field) for field in ("max_input_len", "max_target_len")},
)


@with_options(CHECK_OPTIONS)
def check_downstream(
    task: str = typer.Option(..., help="downstream task (`synthpre downstream list`)"), **given: Any
) -> None:
    """Check a task's data before fine-tuning: the layout found in --data, examples per split, one
    formatted example, input/target lengths in tokens of the tokenizer `synthpre finetune` would use
    (the same options), and how many examples the max lengths truncate.  Writes nothing.

    Example: `synthpre downstream check --task squad --data ~/data/squad`.
    """
    from synthpre.downstream.check import check_data, format_check

    try:
        config = FinetuneConfig(task=task, out_dir="", **given)
    except ValidationError as error:
        raise invalid_settings(error, "the data check") from None
    print(format_check(check_data(config)))


def list_downstream() -> None:
    """List the downstream tasks with their App. D.3 hyper-parameters and metrics."""
    from rich.console import Console
    from rich.table import Table

    from synthpre.downstream.registry import DOWNSTREAM_TASKS

    table = Table(title="downstream tasks")
    for column in (
        "name",
        "data",
        "lr",
        "in/out len",
        "batch",
        "steps",
        "eval every",
        "decode",
        "selection",
        "metric",
    ):
        table.add_column(column)
    for task in DOWNSTREAM_TASKS.values():
        d = task.defaults
        data = "--data" if task.needs_data else "built in" + (" or --data" if task.layouts else "")
        table.add_row(
            task.name, data, f"{d.learning_rate:g}", f"{d.max_input_len}/{d.max_target_len}",
            str(d.batch_size), f"{d.max_steps:,}", f"{d.eval_every:,}", str(d.max_decode_len or "-"),
            d.selection + (f" {d.selection_step:,}" if d.selection_step else ""), task.headline_metric,
        )  # fmt: skip
    console = Console()
    console.print(table)
    for task in DOWNSTREAM_TASKS.values():
        console.print(f"[bold]{task.name}[/bold]: {task.description}")
        for layout in task.layouts:
            console.print(f"  --data-format {layout.name}: {layout.files}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
    app.command("evaluate")(evaluate)
    tokenizer_app.command("train")(train_tokenizer)
    downstream_app.command("list")(list_downstream)
    downstream_app.command("check")(check_downstream)
    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(downstream_app, name="downstream")
