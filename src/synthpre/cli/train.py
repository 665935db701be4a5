"""``synthpre pretrain`` (synthetic pre-training, App. A) and ``synthpre runs show`` (a run's summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from synthpre.cli.options import invalid_settings, model_options, with_options
from synthpre.errors import UserError
from synthpre.recipes import Pretraining
from synthpre.train.config import TrainConfig

# Keys of a --config file besides the TrainConfig fields: the Pretraining fields, the --min-len /
# --max-len shorthands of task_params, and --threads.
DATA_KEYS = (*(name for name in Pretraining.model_fields if name != "train"), "min_len", "max_len", "threads")
ENGINE_OPTIONS = model_options(TrainConfig, exclude=("out_dir",), aliases={"learning_rate": ["--lr"]})
PRETRAINING_OPTIONS = model_options(
    Pretraining, only=("model", "vocab"), help={"vocab": "content token ids LO:HI"},
    defaults_text={"vocab": "2:31999, T5's"},
)  # fmt: skip


def load_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping of TrainConfig fields and the data keys of ``synthpre pretrain``."""
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        data = (
            yaml.safe_load(path.read_text())
            if path.suffix in (".yaml", ".yml")
            else json.loads(path.read_text())
        )
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise UserError(f"--config {path}: cannot parse it ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of settings, got {type(data).__name__}")
    unknown = set(data) - set(TrainConfig.model_fields) - set(DATA_KEYS)
    if unknown:
        raise UserError(
            f"--config {path}: unknown keys {sorted(unknown)}; valid: TrainConfig fields and {DATA_KEYS}"
        )
    return data


def parse_task_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--param``; the value is read as YAML (numbers, booleans, strings)."""
    if "=" not in text:
        raise UserError(f"--param {text!r}: expected KEY=VALUE, e.g. --param max_depth=8")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def pretraining_from_settings(settings: dict[str, Any], task_params: dict[str, Any]) -> Pretraining:
    """The recipe of ``synthpre pretrain``: Pretraining fields, and TrainConfig fields for the engine."""
    mine = {k: v for k, v in settings.items() if k in Pretraining.model_fields}
    engine = {k: v for k, v in settings.items() if k in TrainConfig.model_fields}
    try:
        return Pretraining(**mine, task_params=task_params, train=TrainConfig(**engine))
    except ValidationError as error:
        raise invalid_settings(error, "pre-training") from None


@with_options(PRETRAINING_OPTIONS, ENGINE_OPTIONS)
def pretrain(
    task: str = typer.Option(None, help="task name, or a comma-separated mixture: lime_induct,lime_deduct"),
    rates: str = typer.Option(None, help="mixture rates, comma-separated (default: equal), e.g. 2,1,1"),
    out: Path = typer.Option(None, "--out", help="the run folder"),
    config: Path = typer.Option(None, help="YAML/JSON file of settings; command-line options win"),
    resume: bool = typer.Option(False, help="continue the run in --out from its newest complete checkpoint"),
    overwrite: bool = typer.Option(False, help="delete the run files already in --out and start over"),
    min_len: int = typer.Option(None, help="task option: minimum sequence length"),
    max_len: int = typer.Option(None, help="task option: maximum sequence length"),
    task_param: list[str] = typer.Option(
        None, "--param", help="other task option KEY=VALUE (repeatable), as `synthpre generate --param`"
    ),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's choice)"),
    **given: Any,
) -> None:
    """Pre-train a T5 or a decoder-only model (`synthpre models`) on synthetic tasks generated on the
    fly (App. A defaults: Adafactor, T5's 1/sqrt(max(step, 10^4)) schedule, batch 128, lengths 512,
    dropout 0.1, evaluation and checkpoints every 5,000 steps, best.json = first checkpoint with >= 99%
    validation token accuracy).  A decoder-only model reads `input EOS target EOS` and learns the target
    (`--loss-on all`: every token, for language-like streams); its rows must fit its positions
    (max-input-len + max-target-len); these families pre-train without dropout (`--dropout 0`).

    Several processes or GPUs: `accelerate launch --multi_gpu --num_processes N $(which synthpre)
    pretrain ...` (same global batch; without CUDA the processes run on CPUs over gloo); add `--fsdp`
    to shard the model over them instead of replicating it (FSDP2).

    CPU example: `synthpre pretrain --task set --model t5-tiny --vocab 3:127 --min-len 5 --max-len 30
    --batch-size 64 --dropout 0 --max-input-len 64 --max-target-len 64 --bucket-steps 16
    --eval-every 200 --num-val-examples 1000 --stop-at-threshold --out runs/set-tiny`.

    Pre-pretraining (Hu et al. 2025): `synthpre pretrain --task shuffle_dyck --model pythia-tiny
    --vocab 3:255 --loss-on all --dropout 0 --max-input-len 2 --max-target-len 130 --param max_len=128
    --batch-size 32 --max-steps 300 --out runs/sd-tiny`.
    """
    settings = load_config_file(config) if config is not None else {}
    task_params = dict(settings.pop("task_params", None) or {})
    flags = {"task": task, "rates": rates, "min_len": min_len, "max_len": max_len, "threads": threads}
    settings.update({k: v for k, v in flags.items() if v is not None} | given)
    for key in ("min_len", "max_len"):
        if key in settings:
            task_params[key] = settings.pop(key)
    task_params.update(dict(parse_task_param(p) for p in task_param or []))
    if out is not None:
        settings["out_dir"] = str(out)
    if "out_dir" not in settings:
        raise UserError("no run folder: pass --out DIR (or out_dir in --config)")
    if not settings.get("task"):
        raise UserError(
            "no task: pass --task NAME (or a comma-separated mixture); `synthpre tasks` lists them"
        )
    if settings.get("threads"):
        import torch

        torch.set_num_threads(int(settings["threads"]))
    run_pretraining(pretraining_from_settings(settings, task_params), resume=resume, overwrite=overwrite)


def run_pretraining(settings: Pretraining, resume: bool, overwrite: bool):
    """Train through the recipe (UserError before any write) and say what was selected."""
    from synthpre import recipes

    result = recipes.pretrain(settings, resume=resume, overwrite=overwrite)
    best = result.best or {}
    print(f"done: step {result.step}, {result.seconds:.0f} s, {result.tokens_per_second:,.0f} tokens/s")
    if best:
        print(f"selected {best['checkpoint']}: {best['reason']}")
    return result


def show_run(
    run_dir: Path = typer.Argument(..., help="a run folder written by `synthpre pretrain` or fine-tuning"),
    plot: Path = typer.Option(None, help="where to write the curve plot (default RUN_DIR/curves.png)"),
) -> None:
    """Summarise a run: settings, evaluations, the selected checkpoint (best.json) and a curve plot."""
    from rich.console import Console
    from rich.table import Table

    from synthpre.train.metrics import read_metrics

    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.json)")
    full = json.loads(config_file.read_text())
    rows = read_metrics(run_dir)
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    console = Console()
    data = full.get("train_data", {})
    model_name = full.get("pretraining", full.get("finetune", {})).get("model", "a model")
    what = f"{full.get('command', 'fine-tuning')} of {model_name}"
    planned = full["train"]["max_steps"]
    trained_on = data.get("tasks") or data.get("name")
    console.print(f"[bold]{run_dir}[/bold]: {what} on {trained_on}, {planned:,} steps planned")
    if train_rows:
        last = train_rows[-1]
        console.print(
            f"last training step {last['step']:,}: loss {last['loss']:.4f}, token accuracy "
            f"{last['token_accuracy']:.4f}, {last['tokens_per_s']:,.0f} tokens/s, {last['elapsed_s']:.0f} s"
        )
    table = Table(title="evaluations")
    metric_names = sorted({k for r in val_rows for k in r if k not in ("step", "split")})
    for column in ("step", *metric_names):
        table.add_column(column, justify="right")
    for row in val_rows:
        table.add_row(str(row["step"]), *(f"{row[m]:.4f}" if m in row else "" for m in metric_names))
    console.print(table)
    best_file = run_dir / "best.json"
    if best_file.is_file():
        best = json.loads(best_file.read_text())
        console.print(f"selected checkpoint: [bold]{best['checkpoint']}[/bold] - {best['reason']}")
    else:
        console.print("no checkpoint selected yet (no best.json)")
    if train_rows or val_rows:
        target = plot or run_dir / "curves.png"
        plot_curves(train_rows, val_rows, target)
        console.print(f"curves: {target}")


def plot_curves(train_rows: list[dict], val_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    for rows, key, label in ((train_rows, "loss", "train"), (val_rows, "val_loss", "validation")):
        if rows:
            loss_ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=label)
    for rows, key, label in (
        (train_rows, "token_accuracy", "train"),
        (val_rows, "val_token_accuracy", "validation"),
    ):
        if rows:
            acc_ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=label)
    loss_ax.set(xlabel="step", ylabel="loss", yscale="log")
    acc_ax.set(xlabel="step", ylabel="token accuracy", ylim=(0, 1))
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
    runs = typer.Typer(help="Inspect training runs.", no_args_is_help=True)
    runs.command("show")(show_run)
    app.add_typer(runs, name="runs")
