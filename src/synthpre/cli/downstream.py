"""Downstream commands: ``finetune``, ``evaluate``, ``tokenizer train`` and ``downstream list``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import typer
from pydantic import ValidationError

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


def finetune(
    task: str = typer.Option(..., help="downstream task (`synthpre downstream list`)"),
    out: Path = typer.Option(..., "--out", help="the run folder"),
    model: str = typer.Option("t5-small", help="named model config for a random init / statistics schemes"),
    data: Path = typer.Option(None, help="folder with the task's downloaded files (the six App. D tasks)"),
    init_from: Path = typer.Option(None, help="checkpoint, pre-training run folder, or local HF T5 folder"),
    init_scheme: str = typer.Option(
        "full", help="full (copy all weights) or a statistics scheme (`synthpre init`)"
    ),
    tokenizer: str = typer.Option(
        None, help="'chars', or a local tokenizer folder; default: see docs/downstream.md"
    ),
    vocab_size: int = typer.Option(
        None, help="model vocabulary of a random init (default: the tokenizer's, /8)"
    ),
    lr: float = typer.Option(None, "--lr", help="constant learning rate (default: the task's, App. D.3)"),
    lr_sweep: str = typer.Option(None, help="one run per learning rate, the best kept, e.g. 1e-2,3e-3,1e-3"),
    train_size: int = typer.Option(None, help="fine-tune on a fixed subset of N training examples (Table 4)"),
    val_size: int = typer.Option(None, help="use only the first N validation examples (quick runs)"),
    max_steps: int = typer.Option(None, help="optimizer steps (default: the task's, App. B)"),
    eval_every: int = typer.Option(
        None, help="evaluate and checkpoint every N steps (default 10K; WebQSP 5K)"
    ),
    batch_size: int = typer.Option(
        None, help="global batch (default 128; 32 for WebQSP and code translation)"
    ),
    max_input_len: int = typer.Option(None, help="input length in tokens (default: the task's)"),
    max_target_len: int = typer.Option(None, help="target length in tokens (default: the task's)"),
    max_decode_len: int = typer.Option(None, help="max decoded tokens (default: the task's)"),
    eval_decode: int = typer.Option(
        None,
        help="validation examples decoded at each evaluation (default: all "
        "for SQuAD and the offline tasks, none otherwise)",
    ),
    dropout: float = typer.Option(0.1, help="dropout during fine-tuning (T5: 0.1)"),
    lowercase: bool = typer.Option(False, help="lower-case inputs and targets (Krishna et al.'s CNNDM-10K)"),
    seed: int = typer.Option(0, help="seed of the data order, dropout and a random init"),
    threads: int = typer.Option(None, help="torch CPU threads"),
    resume: bool = typer.Option(False, help="continue the run in --out from its newest checkpoint"),
    overwrite: bool = typer.Option(False, help="delete the run files already in --out and start over"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Fine-tune a T5 on a downstream task with the engine of `synthpre pretrain` (App. B / D.3 defaults:
    Adafactor with a constant learning rate, dropout 0.1, the task's batch, lengths and steps).

    The checkpoint chosen by the task's App. B rule goes into OUT/results.json.  Example on a CPU:
    `synthpre finetune --task smiles_canonicalize --model t5-tiny --tokenizer chars --out runs/smiles`.
    """
    from synthpre.downstream.finetune import FinetuneConfig
    from synthpre.downstream.finetune import finetune as run_finetune

    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        config = FinetuneConfig(
            task=task, out_dir=str(out), model=model, data=str(data) if data else None,
            init_from=str(init_from) if init_from else None, init_scheme=init_scheme, tokenizer=tokenizer,
            vocab_size=vocab_size, learning_rate=lr,
            lr_sweep=_floats(lr_sweep, "--lr-sweep") if lr_sweep else None, train_size=train_size,
            val_size=val_size, max_steps=max_steps, eval_every=eval_every, batch_size=batch_size,
            max_input_len=max_input_len, max_target_len=max_target_len, max_decode_len=max_decode_len,
            eval_decode=eval_decode, dropout=dropout, lowercase=lowercase, seed=seed, progress=progress,
        )  # fmt: skip
    except ValidationError as error:
        problems = "; ".join(
            f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in error.errors()
        )
        raise UserError(f"invalid fine-tuning settings: {problems}") from None
    results = run_finetune(config, resume=resume, overwrite=overwrite)
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
    threads: int = typer.Option(None, help="torch CPU threads"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Decode a split with the run's selected checkpoint (batched greedy or beam search, up to the task's
    max decode length); writes RUN/eval/SPLIT/predictions.jsonl and metrics.json."""
    from synthpre.downstream.evaluate import evaluate_run

    if threads:
        import torch

        torch.set_num_threads(threads)
    if predictions is not None and not predictions.is_file():
        raise UserError(f"--predictions {predictions}: no such file")
    metrics = evaluate_run(run, split, beams, batch_size, data, predictions, progress)
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
    from synthpre.downstream.finetune import FinetuneConfig, read_split
    from synthpre.downstream.registry import get_downstream_task
    from synthpre.tokenizer import train_sentencepiece

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} is not empty: pass --overwrite to replace it, or choose another --out")
    downstream_task = get_downstream_task(task)
    examples = read_split(
        downstream_task,
        FinetuneConfig(task=task, out_dir=str(out), data=str(data) if data else None),
        "train",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        tokenizer = train_sentencepiece([e.input + "\n" + e.target for e in examples], tmp, vocab_size)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    print(f"{out}: {tokenizer.vocab_size:,} ids ({tokenizer.vocab_size - 100:,} pieces + 100 sentinels)")


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
        table.add_row(
            task.name, "--data" if task.needs_data else "built in", f"{d.learning_rate:g}",
            f"{d.max_input_len}/{d.max_target_len}", str(d.batch_size), f"{d.max_steps:,}",
            f"{d.eval_every:,}",
            str(d.max_decode_len), d.selection + (f" {d.selection_step:,}" if d.selection_step else ""),
            task.headline_metric,
        )  # fmt: skip
    console = Console()
    console.print(table)
    for task in DOWNSTREAM_TASKS.values():
        console.print(f"[bold]{task.name}[/bold]: {task.description}")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
    app.command("evaluate")(evaluate)
    tokenizer_app.command("train")(train_tokenizer)
    downstream_app.command("list")(list_downstream)
    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(downstream_app, name="downstream")
