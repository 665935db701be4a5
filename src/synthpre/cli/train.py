"""``synthpre pretrain`` (synthetic pre-training, App. A) and ``synthpre runs show`` (a run's summary)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from synthpre.errors import UserError
from synthpre.tokens import TokenSpace
from synthpre.train.config import TrainConfig

# Keys of a --config file besides the TrainConfig fields.
DATA_KEYS = ("task", "rates", "model", "vocab", "min_len", "max_len", "task_params", "threads")


def _help(field: str) -> str:
    info = TrainConfig.model_fields[field]
    default = "required" if info.is_required() else f"default {info.default}"
    return f"{info.description} ({default})"


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


def make_train_config(settings: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig(**{k: v for k, v in settings.items() if k in TrainConfig.model_fields})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise UserError(f"invalid training settings: {problems}") from None


def parse_task_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--param``; the value is read as YAML (numbers, booleans, strings)."""
    if "=" not in text:
        raise UserError(f"--param {text!r}: expected KEY=VALUE, e.g. --param max_depth=8")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def make_mixture(names: list[str], overrides: dict[str, Any], space: TokenSpace) -> list[tuple[Any, Any]]:
    """``(task, params)`` for each name; each override goes to every task whose parameters have it."""
    from synthpre.tasks import get_task

    tasks = [get_task(name) for name in names]
    used = set()
    mixture = []
    for task in tasks:
        fields = {f.name for f in dataclasses.fields(task.params_cls)}
        mine = {k: v for k, v in overrides.items() if k in fields}
        used |= set(mine)
        params = task.params_cls(**mine)
        if hasattr(params, "validate"):
            params.validate(space)
        mixture.append((task, params))
    unused = set(overrides) - used
    if unused:
        raise UserError(f"task options {sorted(unused)} apply to none of the tasks {names}")
    return mixture


def pretrain(
    task: str = typer.Option(None, help="task name, or a comma-separated mixture: lime_induct,lime_deduct"),
    rates: str = typer.Option(None, help="mixture rates, comma-separated (default: equal), e.g. 2,1,1"),
    model: str = typer.Option(None, help="named model config (`synthpre models`); default t5-small"),
    out: Path = typer.Option(None, "--out", help="the run folder"),
    config: Path = typer.Option(None, help="YAML/JSON file of settings; command-line options win"),
    resume: bool = typer.Option(False, help="continue the run in --out from its newest complete checkpoint"),
    overwrite: bool = typer.Option(False, help="delete the run files already in --out and start over"),
    vocab: str = typer.Option(None, help="content token ids LO:HI (default 2:31999, T5's)"),
    min_len: int = typer.Option(None, help="task option: minimum sequence length"),
    max_len: int = typer.Option(None, help="task option: maximum sequence length"),
    task_param: list[str] = typer.Option(
        None, "--param", help="other task option KEY=VALUE (repeatable), as `synthpre generate --param`"
    ),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's choice)"),
    seed: int = typer.Option(None, help=_help("seed")),
    max_steps: int = typer.Option(None, help=_help("max_steps")),
    batch_size: int = typer.Option(None, help=_help("batch_size")),
    max_input_len: int = typer.Option(None, help=_help("max_input_len")),
    max_target_len: int = typer.Option(None, help=_help("max_target_len")),
    dropout: float = typer.Option(None, help=_help("dropout")),
    lr_schedule: str = typer.Option(None, help=_help("lr_schedule")),
    learning_rate: float = typer.Option(None, help=_help("learning_rate")),
    z_loss: float = typer.Option(None, help=_help("z_loss")),
    eval_every: int = typer.Option(None, help=_help("eval_every")),
    save_every: int = typer.Option(None, help=_help("save_every")),
    num_val_examples: int = typer.Option(None, help=_help("num_val_examples")),
    eval_batch_size: int = typer.Option(None, help=_help("eval_batch_size")),
    keep_last_k: int = typer.Option(None, help=_help("keep_last_k")),
    selection: str = typer.Option(None, help=_help("selection")),
    selection_threshold: float = typer.Option(None, help=_help("selection_threshold")),
    stop_at_threshold: bool = typer.Option(None, help=_help("stop_at_threshold")),
    bucket_steps: int = typer.Option(None, help=_help("bucket_steps")),
    pad_multiple: int = typer.Option(None, help=_help("pad_multiple")),
    precision: str = typer.Option(None, help=_help("precision")),
    tf32: bool = typer.Option(None, help=_help("tf32")),
    compile: bool = typer.Option(None, help=_help("compile")),
    fsdp: bool = typer.Option(None, help=_help("fsdp")),
    log_every: int = typer.Option(None, help=_help("log_every")),
    progress: bool = typer.Option(None, help=_help("progress")),
) -> None:
    """Pre-train a T5 on synthetic tasks generated on the fly (App. A defaults: Adafactor, T5's
    1/sqrt(max(step, 10^4)) schedule, batch 128, lengths 512, dropout 0.1, evaluation and checkpoints
    every 5,000 steps, best.json = first checkpoint with >= 99% validation token accuracy).

    Several processes or GPUs: `accelerate launch --multi_gpu --num_processes N $(which synthpre)
    pretrain ...` (same global batch; without CUDA the processes run on CPUs over gloo); add `--fsdp`
    to shard the model over them instead of replicating it (FSDP2).

    CPU example: `synthpre pretrain --task set --model t5-tiny --vocab 3:127 --min-len 5 --max-len 30
    --batch-size 64 --dropout 0 --max-input-len 64 --max-target-len 64 --bucket-steps 16
    --eval-every 200 --num-val-examples 1000 --stop-at-threshold --out runs/set-tiny`.
    """
    given = {
        k: v for k, v in locals().items() if v is not None and k not in ("config", "resume", "overwrite")
    }
    settings = load_config_file(config) if config is not None else {}
    task_params = dict(settings.pop("task_params", None) or {})
    settings.update({k: v for k, v in given.items() if k != "task_param"})
    task_params.update(dict(parse_task_param(p) for p in given.get("task_param") or []))
    for key in ("min_len", "max_len"):
        if key in settings:
            task_params[key] = settings.pop(key)
    if settings.get("out") is not None:
        settings["out_dir"] = str(settings.pop("out"))
    if "out_dir" not in settings:
        raise UserError("no run folder: pass --out DIR (or out_dir in --config)")
    if not settings.get("task"):
        raise UserError(
            "no task: pass --task NAME (or a comma-separated mixture); `synthpre tasks` lists them"
        )
    run_pretraining(settings, task_params, resume=resume, overwrite=overwrite)


def run_pretraining(settings: dict[str, Any], task_params: dict[str, Any], resume: bool, overwrite: bool):
    """Resolve the settings, build the data and the model, and train (UserError before any write)."""
    import torch

    from synthpre.data.stream import MixtureSource
    from synthpre.model import build_model, get_spec, vocab_size_for
    from synthpre.train.engine import train

    train_config = make_train_config(settings)
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    space = TokenSpace.parse(settings["vocab"]) if settings.get("vocab") else TokenSpace()
    names = [name.strip() for name in str(settings["task"]).split(",") if name.strip()]
    rates = None
    if settings.get("rates") is not None:
        text = settings["rates"]
        try:
            rates = [float(r) for r in (text.split(",") if isinstance(text, str) else text)]
        except ValueError:
            raise UserError(f"--rates {text!r}: expected comma-separated numbers, e.g. 2,1,1") from None
    mixture = make_mixture(names, task_params, space)
    source = MixtureSource(mixture, space, seed=train_config.seed, rates=rates)
    model_name = settings.get("model") or "t5-small"
    spec = get_spec(model_name)
    vocab_size = vocab_size_for(space) if model_name == "t5-tiny" else spec.vocab_size
    if space.vocab_size > vocab_size:
        raise UserError(
            f"--vocab {space.lo}:{space.hi} needs {space.vocab_size} token ids but {model_name} has "
            f"{vocab_size}; lower HI to at most {vocab_size - 101}"
        )
    model = build_model(model_name, vocab_size, dropout_rate=train_config.dropout, seed=train_config.seed)
    extra = {"command": "pretrain", "model_name": model_name, "task": names, "task_params": task_params}
    result = train(
        train_config,
        model,
        source,
        source.validation(),
        resume=resume,
        overwrite=overwrite,
        extra_config=extra,
    )
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
    what = f"{full.get('command', 'train')} of {full.get('model_name', 'a model')}"
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
