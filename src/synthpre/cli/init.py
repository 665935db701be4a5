"""``synthpre stats`` (parameter statistics, Figure 6) and ``synthpre init`` (initialization schemes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer
from rich.console import Console
from rich.table import Table
from tqdm import tqdm
from typer.core import TyperCommand

from synthpre.errors import UserError

if TYPE_CHECKING:
    from synthpre.init import ParamStats, Stats

# synthpre.init and synthpre.model import torch: they load inside the commands, so that the command
# line starts fast.

RANDOM_INIT_LABEL = "Random Init"


def _check_writable_file(path: Path | None, option: str) -> None:
    if path is not None and not path.parent.is_dir():
        raise UserError(f"{option} {path}: folder {path.parent} does not exist")


def _labels(checkpoints: list[Path], labels: list[str]) -> list[str]:
    if labels and len(labels) != len(checkpoints):
        raise UserError(
            f"--label given {len(labels)} times for {len(checkpoints)} checkpoints: give one each"
        )
    names = labels or [path.name for path in checkpoints]
    if len(set(names)) < len(names):
        names = [str(path) for path in checkpoints]
    return names


def stats_report(stats: Stats) -> dict:
    """One model's entry of ``stats.json``: every parameter, then the groupings of the schemes."""
    from synthpre.init import group_stats, stats_groups

    groups = {k: v for k, v in group_stats(stats, stats_groups(stats)).items() if k not in stats}
    return {
        "params": {name: _row(value) for name, value in stats.items()},
        "groups": {name: _row(value) for name, value in groups.items()},
    }


def _row(value: ParamStats) -> dict:
    row = {"mean": value.mean, "sd": value.sd, "min": value.min, "max": value.max, "count": value.count}
    return row if value.shape is None else {**row, "shape": list(value.shape)}


def _print_table(reports: dict[str, dict]) -> None:
    single = len(reports) == 1
    table = Table(title="parameter statistics (App. K names; groups below)", show_lines=False)
    table.add_column("parameter / group")
    for label in reports:
        columns = ("mean", "SD", "min", "max", "count") if single else ("mean", "SD")
        for column in columns:
            table.add_column(column if single else f"{label} {column}", justify="right")
    for section in ("params", "groups"):  # every model's rows: a T5 and a GPT-2 have different names
        for name in dict.fromkeys(name for report in reports.values() for name in report[section]):
            cells = []
            for report in reports.values():
                row = report[section].get(name)
                if row is None:
                    cells += ["-"] * (5 if single else 2)
                    continue
                cells += [f"{row['mean']:.4g}", f"{row['sd']:.4g}"]
                if single:
                    cells += [f"{row['min']:.4g}", f"{row['max']:.4g}", str(row["count"])]
            table.add_row(name, *cells)
        table.add_section()
    Console(width=max(Console().width, 70 + 24 * len(reports) * (3 if single else 2))).print(table)


def stats(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="HF model folders, step_N checkpoints or run folders (safetensors)")
    ],
    out: Annotated[Path | None, typer.Option(help="write every statistic as JSON here")] = None,
    plot: Annotated[Path | None, typer.Option(help="draw Figure 6 (pre-attention norm means) here")] = None,
    label: Annotated[list[str], typer.Option(help="name of each checkpoint in the table and plot")] = [],  # noqa: B006
    random_init: Annotated[
        bool, typer.Option(help="add a freshly initialized model of the first checkpoint's config")
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of the --random-init model")] = 0,
) -> None:
    """Per-parameter statistics (mean, SD, min, max, count, by App. K name) of one or more checkpoints.

    T5 or decoder-only (GPT-2, Pythia, Llama: App. K-style names, a fused q/k/v as query, key and
    value).  Several checkpoints print side by side.  Below the parameters come the groupings of the
    init schemes: per TYPE across layers (type/query, type/query_bias, ...), per layer
    (encoder/layers_0/weights, /norms, /biases) and whole model.  --plot draws Figure 6 of the paper:
    per layer, the mean of the pre-attention layer-norm scale (T5: encoder, decoder pre-self- and
    pre-cross-attention; decoder-only: pre-self-attention), one line per model, e.g. `synthpre stats
    runs/set/best runs/lime/best --label Set --label LIME --random-init --plot fig6.png`.
    """
    from synthpre.init import parameter_stats, plot_figure6
    from synthpre.model import build_from_config, check_checkpoint, load_model

    for checkpoint in checkpoints:
        check_checkpoint(checkpoint)
    _check_writable_file(out, "--out")
    _check_writable_file(plot, "--plot")
    names = _labels(checkpoints, label)
    all_stats: dict[str, Stats] = {}
    for name, path in tqdm(list(zip(names, checkpoints, strict=True)), desc="statistics", unit="checkpoint"):
        model = load_model(path)
        if random_init and not all_stats:
            all_stats[RANDOM_INIT_LABEL] = parameter_stats(build_from_config(model.config, seed=seed))
        all_stats[name] = parameter_stats(model)
    reports = {name: stats_report(value) for name, value in all_stats.items()}
    sources = dict(zip(names, map(str, checkpoints), strict=True))
    for name, report in reports.items():
        report["source"] = sources.get(name, f"fresh init, seed {seed}")
    _print_table(reports)
    if out is not None:
        out.write_text(json.dumps(reports, indent=1))
        print(f"statistics written to {out}")
    if plot is not None:
        plot_figure6(all_stats, plot)
        print(f"Figure 6 written to {plot}")


def _schemes_help() -> str:
    from synthpre.init import SCHEMES

    lines = [f"{name}: {scheme.description}" for name, scheme in SCHEMES.items()]
    return "Schemes (docs/init_schemes.md has the paper's names):\n\n" + "\n\n".join(lines)


class _ListsTheSchemes(TyperCommand):
    """``synthpre init --help`` ends with the list of schemes, built when the help is shown."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.epilog = _schemes_help()
        super().format_help(ctx, formatter)


def init(
    out: Annotated[Path, typer.Option(help="new checkpoint folder (must not exist or be empty)")],
    source: Annotated[
        Path | None, typer.Option("--from", help="pre-trained checkpoint whose weights or statistics to use")
    ] = None,
    scheme: Annotated[str | None, typer.Option(help="initialization scheme (listed below)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the fresh init and of the statistics draws")] = 0,
    model: Annotated[
        str | None, typer.Option(help="target named config (default: the source checkpoint's config)")
    ] = None,
    vocab_size: Annotated[int | None, typer.Option(help="target vocabulary (default: the source's)")] = None,
    fresh_embeddings: Annotated[
        bool, typer.Option(help="scheme full: keep the token embedding fresh (the authors' fine-tuning)")
    ] = False,
    pre_attn_ln_value: Annotated[
        float | None,
        typer.Option(help="no checkpoint: set every pre-attention norm scale to V (Table 3; App. Table 8)"),
    ] = None,
) -> None:
    """Initialize a model from a pre-trained checkpoint's weights or statistics (Sec. 5, App. H).

    T5 or decoder-only (GPT-2, Pythia, Llama).  Every scheme starts from a fresh initialization of the
    target config (its family's own, seeded by --seed) and overwrites only the parameters it covers; the
    token embedding is never set from statistics; a scheme that covers no parameter of the target
    (relpos_* on a rotary model) is an error.
    Writes a Hugging Face checkpoint folder and init_config.json.  Examples:
    `synthpre init --from runs/set/best --scheme per_param_mean_sd --seed 1 --out init/set-meansd`;
    `synthpre init --model t5-small --pre-attn-ln-value 0.2 --out init/ln-0.2`.
    """
    from synthpre.init import InitConfig, initialize
    from synthpre.model import save_checkpoint

    config = InitConfig(
        seed=seed,
        scheme=scheme,
        source=str(source) if source is not None else None,
        model=model,
        vocab_size=vocab_size,
        fresh_embeddings=fresh_embeddings,
        pre_attn_ln_value=pre_attn_ln_value,
    )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty: choose a new folder")
    initialized = initialize(config)
    save_checkpoint(initialized, out)
    (out / "init_config.json").write_text(json.dumps(config.to_dict(), indent=1))
    print(f"initialized model written to {out}")


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
    app.command("init", cls=_ListsTheSchemes)(init)
