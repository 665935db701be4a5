"""Stage 7 commands: ``synthpre study plan|run|status|presets``, ``synthpre report`` and ``synthpre demo``."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

PROBE_STEPS = 20  # `study plan`: timed steps of the probe of each run shape

study_app = typer.Typer(
    help="Studies: grids of pre-training and fine-tuning runs, resumable and shardable, with results in "
    "DIR/results.sqlite. Specs: docs/studies.md; ready ones: `synthpre study presets`.",
    no_args_is_help=True,
)


EXECUTORS = ("in-process", "local", "slurm")


@study_app.command("run")
def study_run(
    spec: str = typer.Argument(..., help="a study spec (YAML file) or the name of a preset, e.g. tiny"),
    out: Path = typer.Option(..., "--out", help="the study folder (shared by all shards)"),
    shard: str = typer.Option(
        "0/1", "--shard", help="I/N: run every N-th run starting at I (one per machine; in-process only)"
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="run failed runs again (and so the runs they blocked)"
    ),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0: torch's default)"),
    launcher: str = typer.Option(
        None,
        "--launcher",
        help='run each run (each job) as LAUNCHER -m ..., e.g. "accelerate launch --num_processes 8" '
        "for multi-GPU, or python to isolate runs (default: in this process; a job: python, or accelerate "
        "launch of --slurm-gpus-per-run)",
    ),
    executor: str = typer.Option(
        "in-process",
        "--executor",
        help="in-process: the runs one after another in this process; local: one job (process) per run "
        "on this machine; slurm: one Slurm job per run (submitit), fine-tuning jobs afterok their "
        "pre-training job",
    ),
    jobs: int = typer.Option(1, "--jobs", help="--executor local: jobs at a time"),
    slurm_partition: str = typer.Option(
        None, "--slurm-partition", help="partition (default: the spec's resources:)"
    ),
    slurm_gpus: int = typer.Option(
        None, "--slurm-gpus-per-run", help="GPUs per job (default: resources:, or 1)"
    ),
    slurm_time: float = typer.Option(None, "--slurm-time", help="hours per job (default: resources:, or 24)"),
    slurm_cpus: int = typer.Option(None, "--slurm-cpus-per-run", help="CPUs per job (default: resources:)"),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="run and write nothing: print `synthpre study plan SPEC --out DIR` (the whole study)",
    ),
    probe_steps: int = typer.Option(
        PROBE_STEPS, "--probe-steps", help="with --dry-run: timed steps per run shape (0: no estimate)"
    ),
) -> None:
    """Run what is missing, resume what was interrupted and skip what is done (runs are identified by the
    hash of their resolved config). A failed run is recorded with its error; the study goes on, and the
    fine-tuning runs of a failed pre-training run are blocked. With --executor local|slurm, runs already
    queued or running are not submitted again."""
    from synthpre.experiments.plan import parse_shard
    from synthpre.experiments.spec import resolve_spec

    shard_spec = parse_shard(shard)
    given = {"partition": slurm_partition, "gpus": slurm_gpus, "hours": slurm_time, "cpus": slurm_cpus}
    slurm = {name: value for name, value in given.items() if value is not None}  # over the spec's resources
    _check_executor(executor, shard_spec, jobs, slurm)
    spec_path = resolve_spec(spec)
    _set_threads(threads)
    if dry_run:
        _print_plan(spec_path, out, probe_steps)
        return
    from synthpre.experiments.jobs import forget_job
    from synthpre.experiments.results import set_failures_aside
    from synthpre.experiments.runner import prepare_study

    study, runs = prepare_study(spec_path, out)
    if retry_failed:
        for run_hash in set_failures_aside(out, runs):
            forget_job(out, run_hash)  # the failed job is over: its record would read "queued"
    if executor == "in-process":
        _run_in_process(out, runs, launcher, shard_spec, shard)
    else:
        resources = {kind: getattr(study.resources, kind).model_copy(update=slurm) for kind in KINDS}
        _run_jobs(out, runs, executor, shlex.split(launcher) if launcher else None, jobs, resources)


KINDS = ("pretrain", "finetune")
SLURM_FLAGS = {"partition": "--slurm-partition", "gpus": "--slurm-gpus-per-run", "hours": "--slurm-time",
               "cpus": "--slurm-cpus-per-run"}  # fmt: skip


def _check_executor(executor: str, shard: tuple[int, int], jobs: int, slurm: dict) -> None:
    """Flags that do not go together fail before anything is written."""
    from synthpre.errors import UserError
    from synthpre.experiments.executors import check_slurm

    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: choose {', '.join(EXECUTORS)}")
    if executor != "in-process" and shard != (0, 1):
        raise UserError(f"--shard is for --executor in-process; --executor {executor} runs the whole study")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: at least 1")
    if slurm and executor != "slurm":
        raise UserError(f"{SLURM_FLAGS[next(iter(slurm))]} is for --executor slurm")
    limits = {"gpus": 0, "hours": 1e-9, "cpus": 1}
    for name, value in slurm.items():
        if name in limits and value < limits[name]:
            raise UserError(f"{SLURM_FLAGS[name]} {value}: must be {'>= 0' if name == 'gpus' else '> 0'}")
    if executor == "slurm":
        check_slurm()


def _run_in_process(
    out: Path, runs: list, launcher: str | None, shard_spec: tuple[int, int], shard: str
) -> None:
    from synthpre.experiments.execute import execute_run, launched_executor
    from synthpre.experiments.runner import run_study

    report = run_study(out, runs, launched_executor(launcher) if launcher else execute_run, shard_spec)
    blocked = f", {len(report.blocked)} blocked by a failed pre-training run" if report.blocked else ""
    typer.echo(
        f"shard {shard}: {len(report.executed)} run(s) done, {len(report.failed)} failed{blocked}, "
        f"{len(report.skipped)} already done or running elsewhere. `synthpre study status {out}` for all."
    )
    if report.failed:
        raise typer.Exit(1)


def _run_jobs(
    out: Path, runs: list, executor: str, launcher: list[str] | None, jobs: int, resources: dict
) -> None:
    """``--executor local|slurm``: submit what is neither done nor queued/running."""
    from rich.console import Console

    from synthpre.experiments.executors import run_local, submit_slurm
    from synthpre.experiments.runner import study_status

    console = Console(soft_wrap=True)
    _, rows = study_status(out)
    by_hash = {row["hash"]: row for row in rows}
    if executor == "local":
        status = {h: row["status"] for h, row in by_hash.items()}
        report = run_local(out, runs, status, launcher, jobs, console)
        what = f"{len(report.submitted)} job(s) run: {len(report.done)} done, {len(report.failed)} failed"
    else:
        report = submit_slurm(out, runs, by_hash, resources, launcher, console)
        what = f"{len(report.submitted)} Slurm job(s) submitted"
    typer.echo(
        f"{what}, {len(report.blocked)} blocked, {len(report.skipped)} already done, failed, queued or "
        f"running. `synthpre study status {out}` for all."
    )
    if report.failed:
        raise typer.Exit(1)


@study_app.command("plan")
def study_plan(
    spec: str = typer.Argument(..., help="a study spec (YAML file) or the name of a preset, e.g. tiny"),
    out: Path = typer.Option(None, "--out", help="the study folder: which runs are already done there"),
    probe_steps: int = typer.Option(
        PROBE_STEPS, "--probe-steps", help="timed steps of the probe of each run shape (0: no estimate)"
    ),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads, as for `study run` (0: default)"),
) -> None:
    """The runs a study would execute (kind, task, init, seed, steps), what is already done in --out, and
    an estimate of the time the rest takes on this machine, from a short probe of each distinct run shape
    (real steps in a temporary folder). Writes nothing into --out."""
    from synthpre.experiments.spec import resolve_spec

    _set_threads(threads)
    _print_plan(resolve_spec(spec), out, probe_steps)


def _print_plan(spec_path: Path, out: Path | None, probe_steps: int) -> None:
    """`study plan` and `study run --dry-run`: one function."""
    from synthpre.errors import UserError
    from synthpre.experiments.estimate import print_plan
    from synthpre.experiments.plan import build_plan
    from synthpre.experiments.spec import load_spec

    if probe_steps < 0 or probe_steps == 1:
        raise UserError(f"--probe-steps {probe_steps}: 0 (no estimate) or at least 2, e.g. {PROBE_STEPS}")
    spec = load_spec(spec_path)
    print_plan(spec, build_plan(spec), out, probe_steps, typer.echo)


@study_app.command("status")
def study_status_command(
    folder: Path = typer.Argument(..., help="a study folder"),
    runs: bool = typer.Option(False, "--runs", help="one line per run"),
) -> None:
    """How far a study is: done / running / queued / interrupted / failed / blocked / pending, with a
    progress bar; jobs from the folder's records and from squeue/sacct when they are on PATH. Failed
    runs show the last line of their error and their log."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn

    from synthpre.experiments.runner import STATUSES, study_status

    counts, rows = study_status(folder)
    console = Console(soft_wrap=True)
    total = len(rows)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console, transient=False) as progress:  # fmt: skip
        progress.add_task("done", total=total, completed=counts["done"])
    console.print("  ".join(f"{status}: {counts[status]}" for status in STATUSES))
    for row in rows:
        if runs or row["status"] in ("failed", "blocked", "interrupted"):
            console.print(escape(_status_line(row)))
            if row["status"] == "failed":
                last_line = (row["error"] or "").strip().splitlines()[-1:] or [""]
                console.print(f"  [red]{escape(last_line[0])}[/red]")


def _status_line(row: dict) -> str:
    """``hash status what where (job, detail) run folder`` of one run."""
    what = row["arm"] if row["kind"] == "finetune" else f"pre-train {row['task']}"
    where = f"{row['task']} lr {row['lr']:g} seed {row['seed']}" if row["kind"] == "finetune" else ""
    job = row["job"]
    about = [f"{job['executor']} job {job['job_id']}"] if job else []
    about += [row["detail"]] if row["detail"] else []
    if job and row["status"] in ("failed", "interrupted"):
        about.append(f"log {job['log']}")
    notes = f"  ({'; '.join(about)})" if about else ""
    return f"{row['hash']}  {row['status']:<11} {what}  {where}  {row['run_dir'] or ''}{notes}"


@study_app.command("presets")
def study_presets() -> None:
    """The ready-made study specs (use a name as SPEC of `synthpre study run`)."""
    from synthpre.experiments.spec import preset_paths

    for path in preset_paths():
        first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "#")
        typer.echo(f"{path.stem:<14} {first.lstrip('# ')}")


def report(
    folder: Path = typer.Argument(..., help="a study folder"),
    table: str = typer.Option(
        "1", "--table", help="the paper table whose layout to use: 1-9; or 'tokens': tokens saved (Hu et al.)"
    ),
    fmt: str = typer.Option("md", "--format", help="md, latex or csv"),
    metric: list[str] = typer.Option(None, "--metric", help="metric(s) to show, e.g. test_em (repeatable)"),
    lr_choice: str = typer.Option(None, "--lr-choice", help="row (default) or random_init (App. D.3)"),
    plot: Path = typer.Option(None, "--plot", help="also write the study's plots into this folder"),
) -> None:
    """Render a results table from DIR/results.sqlite in the layout of one of the paper's tables:
    1/6 init arms x tasks, 4 training-set sizes, 2/5/7 init schemes x pre-training tasks, 3/8 the
    pre-attention layer-norm sweep, 9 with the Average and % of the Random Init -> Pre-trained gap closed.
    Rows that start from a pre-training run show its checkpoint (val acc @ step), † where it did not meet
    the study's pre-training rule.  `--table tokens`: validation loss against natural-text tokens, Random
    Init vs each arm, and the tokens saved (Hu et al. 2025; e.g. a text_lm study)."""
    from synthpre.errors import UserError
    from synthpre.experiments.matched import pretraining_check
    from synthpre.experiments.plots import write_plots
    from synthpre.experiments.report import build_table, render
    from synthpre.experiments.results import sync_results
    from synthpre.experiments.runner import load_study
    from synthpre.experiments.store import Store
    from synthpre.experiments.tokens_saved import arm_curves, tokens_saved_table

    spec, runs = load_study(folder)
    sync_results(folder, runs)  # the results of jobs enter the store here, and only new ones
    store = Store(folder, read_only=True)
    try:
        hashes = {run.hash for run in runs}
        results = store.results(hashes=hashes)
        pretraining = pretraining_check(spec, runs, store.results("pretrain", hashes))
        metrics, choice = metric or spec.report.metrics, lr_choice or spec.report.lr_choice
        if table == "tokens":
            built = tokens_saved_table(arm_curves(store, hashes=hashes))
        elif table.isdigit():
            built = build_table(results, int(table), metrics, choice, pretraining=pretraining)
        else:
            raise UserError(f"--table {table!r}: a paper table 1-9, or 'tokens'")
        text = render(built, fmt)
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
    arch: str = typer.Option(
        "t5", "--arch", help="t5: the paper's encoder-decoder; causal: a decoder-only LM (Hu et al. 2025)"
    ),
) -> None:
    """The end-to-end demo on a CPU (a study run by `synthpre study`, so an interrupted demo resumes where
    it stopped).  --arch t5 (about 11 minutes on 2 cores): pre-train a tiny T5 on Set, fine-tune it on
    SMILES canonicalization from Random Init, Set Full Init and Set Per-Param Mean/SD, print the table.
    --arch causal: pre-pretrain a tiny decoder-only LM on k-Shuffle Dyck and on Set, train it on natural
    text (Python docstrings) from Random Init and from each, print validation loss at fixed token counts
    and the tokens saved."""
    from synthpre.experiments.demo import run_demo

    _set_threads(threads)
    name = "demo" if arch == "t5" else f"demo-{arch}"
    default = Path(f"runs/{name}-quick" if quick else f"runs/{name}-more" if more else f"runs/{name}")
    run_demo(out or default, more=more, quick=quick, arch=arch)


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
