"""Stage 7 commands: ``synthpre study run|status|presets``, ``synthpre report`` and ``synthpre demo``."""

from __future__ import annotations

from pathlib import Path

import typer

study_app = typer.Typer(
    help="Studies: grids of pre-training and fine-tuning runs, resumable and shardable, with results in "
    "DIR/results.sqlite. Specs: docs/studies.md; ready ones: `synthpre study presets`.",
    no_args_is_help=True,
)


@study_app.command("run")
def study_run(
    spec: str = typer.Argument(..., help="a study spec (YAML file) or the name of a preset, e.g. tiny"),
    out: Path = typer.Option(..., "--out", help="the study folder (shared by all shards)"),
    shard: str = typer.Option(
        "0/1", "--shard", help="I/N: run every N-th run starting at I (one per machine)"
    ),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run failed runs again"),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default)"),
    launcher: str = typer.Option(
        None,
        "--launcher",
        help='run each run as LAUNCHER -m ..., e.g. "accelerate launch --num_processes 8" '
        "for multi-GPU, or python to isolate runs (default: in this process)",
    ),
) -> None:
    """Run what is missing, resume what was interrupted and skip what is done (runs are identified by the
    hash of their resolved config). A failed run is recorded with its error; the study goes on."""
    from synthpre.experiments.plan import parse_shard
    from synthpre.experiments.runner import prepare_study, run_study
    from synthpre.experiments.spec import resolve_spec
    from synthpre.experiments.store import Store

    shard_spec = parse_shard(shard)
    spec_path = resolve_spec(spec)
    _set_threads(threads)
    _, runs = prepare_study(spec_path, out)
    if retry_failed:
        store = Store(out)
        store.retry_failed()
        store.close()
    from synthpre.experiments.execute import execute_run, launched_executor

    report = run_study(out, runs, launched_executor(launcher) if launcher else execute_run, shard_spec)
    typer.echo(
        f"shard {shard}: {len(report.executed)} run(s) done, {len(report.failed)} failed, "
        f"{len(report.skipped)} already done or running elsewhere. `synthpre study status {out}` for all."
    )
    if report.failed:
        raise typer.Exit(1)


@study_app.command("status")
def study_status_command(
    folder: Path = typer.Argument(..., help="a study folder"),
    runs: bool = typer.Option(False, "--runs", help="one line per run"),
) -> None:
    """How far a study is: done / running / interrupted / failed / pending, with a progress bar."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn

    from synthpre.experiments.runner import study_status

    counts, rows = study_status(folder)
    console = Console(soft_wrap=True)
    total = len(rows)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console, transient=False) as progress:  # fmt: skip
        progress.add_task("done", total=total, completed=counts["done"])
    console.print("  ".join(f"{status}: {counts[status]}" for status in
                            ("done", "running", "interrupted", "failed", "pending")))  # fmt: skip
    for row in rows:
        if runs or row["status"] == "failed":
            what = row["arm"] if row["kind"] == "finetune" else f"pre-train {row['task']}"
            where = f"{row['task']} lr {row['lr']:g} seed {row['seed']}" if row["kind"] == "finetune" else ""
            console.print(f"{row['hash']}  {row['status']:<11} {what}  {where}  {row['run_dir'] or ''}")
            if row["status"] == "failed":
                last_line = (row["error"] or "").strip().splitlines()[-1:] or [""]
                console.print(f"  [red]{escape(last_line[0])}[/red]")


@study_app.command("presets")
def study_presets() -> None:
    """The ready-made study specs (use a name as SPEC of `synthpre study run`)."""
    from synthpre.experiments.spec import preset_paths

    for path in preset_paths():
        first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "#")
        typer.echo(f"{path.stem:<14} {first.lstrip('# ')}")


def report(
    folder: Path = typer.Argument(..., help="a study folder"),
    table: int = typer.Option(1, "--table", help="the paper table whose layout to use: 1-9"),
    fmt: str = typer.Option("md", "--format", help="md, latex or csv"),
    metric: list[str] = typer.Option(None, "--metric", help="metric(s) to show, e.g. test_em (repeatable)"),
    lr_choice: str = typer.Option(None, "--lr-choice", help="row (default) or random_init (App. D.3)"),
    plot: Path = typer.Option(None, "--plot", help="also write the study's plots into this folder"),
) -> None:
    """Render a results table from DIR/results.sqlite in the layout of one of the paper's tables:
    1/6 init arms x tasks, 4 training-set sizes, 2/5/7 init schemes x pre-training tasks, 3/8 the
    pre-attention layer-norm sweep, 9 with the Average and % of the Random Init -> Pre-trained gap closed."""
    from synthpre.experiments.plots import write_plots
    from synthpre.experiments.report import build_table, render
    from synthpre.experiments.runner import load_study
    from synthpre.experiments.store import Store

    spec, runs = load_study(folder)
    store = Store(folder, read_only=True)  # a report writes nothing into the study folder
    try:
        results = store.results(hashes={run.hash for run in runs})
        text = render(
            build_table(results, table, metric or spec.report.metrics, lr_choice or spec.report.lr_choice),
            fmt,
        )
        typer.echo(text, nl=False)
        if plot is not None:
            for path in write_plots(store, plot):
                typer.echo(f"wrote {path}")
    finally:
        store.close()


def demo(
    more: bool = typer.Option(
        False, "--more", help="also Identity pre-training and pycode_summarize (longer)"
    ),
    out: Path = typer.Option(None, "--out", help="the study folder [default: runs/demo, or runs/demo-quick]"),
    quick: bool = typer.Option(
        False, "--quick", help="a smoke test: a few steps per run (numbers mean nothing)"
    ),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads"),
) -> None:
    """The end-to-end demo on a CPU: pre-train a tiny T5 on Set, fine-tune it on SMILES canonicalization
    from Random Init, Set Full Init and Set Per-Param Mean/SD, and print the table (about 7-10 minutes on
    2 cores; a study run by `synthpre study`, so an interrupted demo resumes where it stopped)."""
    from synthpre.experiments.demo import run_demo

    _set_threads(threads)
    default = Path("runs/demo-quick" if quick else "runs/demo-more" if more else "runs/demo")
    run_demo(out or default, more=more, quick=quick)


def _set_threads(threads: int) -> None:
    """torch's CPU threads here and in launched runs (which read ``OMP_NUM_THREADS``)."""
    if threads > 0:
        import os

        import torch

        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
    app.command("report")(report)
    app.command("demo")(demo)
