"""``synthpre study run`` / ``status``: run what is missing, resume what was interrupted, skip what is done.

A study folder holds ``spec.yaml`` (the spec as given), ``results.sqlite`` (the store) and one folder per
run, ``runs/<kind>-<hash>/``.  Shards (``--shard i/n``) on several machines share the folder: each run is
claimed in a SQLite transaction, so it runs once even when a shard needs another shard's pre-training
run first (it then runs it itself, or waits while its owner is alive).  A failed run is recorded with
its error and the study goes on.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

import synthpre
from synthpre.errors import UserError
from synthpre.experiments.plan import PlannedRun, build_plan, shard_runs
from synthpre.experiments.spec import StudySpec, load_spec
from synthpre.experiments.store import Outcome, Store

SPEC_NAME = "spec.yaml"
HEARTBEAT_S = 30.0
WAIT_POLL_S = 5.0

# execute(run, run_dir, dependency run folders and checkpoints, resume) -> Outcome
Executor = Callable[[PlannedRun, Path, dict[str, str], bool], Outcome]


@dataclass
class StudyReport:
    """What one ``study run`` invocation did."""

    executed: list[str]
    failed: list[str]
    skipped: list[str]


def run_dir_of(folder: Path, run: PlannedRun) -> Path:
    return folder / "runs" / f"{run.kind}-{run.hash}"


def prepare_study(spec_path: Path, folder: Path) -> tuple[StudySpec, list[PlannedRun]]:
    """Validate the spec (before writing anything), then copy it into the folder and register its runs."""
    spec = load_spec(spec_path)
    return spec, register_study(spec, spec_path.read_text(), folder)


def register_study(spec: StudySpec, spec_text: str, folder: Path) -> list[PlannedRun]:
    runs = build_plan(spec)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_NAME).write_text(spec_text)
    store = Store(folder)
    store.register(runs)
    store.close()
    return runs


def run_study(
    folder: Path,
    runs: list[PlannedRun],
    executor: Executor,
    shard: tuple[int, int] = (0, 1),
    console: Console | None = None,
) -> StudyReport:
    """Execute this shard's runs (and any pre-training run they need that nobody has started)."""
    console = console or Console()
    store = Store(folder)
    by_hash = {run.hash: run for run in runs}
    mine = shard_runs(runs, *shard)
    shard_name = f"{shard[0]}/{shard[1]}"
    report = StudyReport([], [], [])
    provenance = {"synthpre_version": synthpre.__version__, "git_commit": git_commit()}
    try:
        for position, run in enumerate(mine, 1):
            failed_dep = _ensure_dependencies(store, run, by_hash, executor, folder, shard_name, provenance,
                                              console, report)  # fmt: skip
            if failed_dep:
                if store.claim(run.hash, shard_name) == "claimed":
                    store.fail(run.hash, f"pre-training run {failed_dep} failed", 0.0)
                    report.failed.append(run.hash)
                continue
            _execute_one(store, run, executor, folder, shard_name, provenance, console, report,
                         f"[{position}/{len(mine)}]")  # fmt: skip
    finally:
        store.close()
    return report


def _ensure_dependencies(
    store: Store, run: PlannedRun, by_hash: dict[str, PlannedRun], executor: Executor, folder: Path,
    shard_name: str, provenance: dict[str, str], console: Console, report: StudyReport,
) -> str | None:  # fmt: skip
    """Make every dependency done (run it here, or wait for its live owner); the failed one's hash, if any."""
    for dep_hash in run.deps:
        announced = False
        while True:
            status = store.effective_status(store.run(dep_hash))
            if status == "done":
                break
            if status == "failed":
                return dep_hash
            if status == "running":
                if not announced:
                    console.print(
                        f"waiting for pre-training run {dep_hash} (owner {store.run(dep_hash)['owner']})"
                    )
                    announced = True
                time.sleep(WAIT_POLL_S)
                continue
            _execute_one(store, by_hash[dep_hash], executor, folder, shard_name, provenance, console, report,
                         "[dependency]")  # fmt: skip
    return None


def _execute_one(
    store: Store, run: PlannedRun, executor: Executor, folder: Path, shard_name: str,
    provenance: dict[str, str], console: Console, report: StudyReport, position: str,
) -> None:  # fmt: skip
    claim = store.claim(run.hash, shard_name)
    if claim != "claimed":
        report.skipped.append(run.hash)
        return
    row = store.run(run.hash)
    run_dir = run_dir_of(folder, run)
    resume = row["attempts"] > 1 and run_dir.exists()
    console.print(f"{position} {describe(run)}  [dim]{run_dir}{' (resuming)' if resume else ''}[/dim]")
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    store.set_run_dir(run.hash, run_dir)
    deps = {h: store.run(h)["checkpoint"] for h in run.deps}
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(folder, run.hash, store.owner, stop), daemon=True)
    beat.start()
    started = time.perf_counter()
    try:
        outcome = executor(run, run_dir, deps, resume)
    except KeyboardInterrupt:
        store.release(run.hash, "interrupted by the user")
        raise
    except Exception as error:  # a failed run is recorded and the study goes on
        wall = time.perf_counter() - started
        message = "".join(traceback.format_exception_only(error)).strip()
        store.fail(run.hash, message if isinstance(error, UserError) else traceback.format_exc(), wall)
        console.print(f"[red]  failed after {wall:.0f} s: {message}[/red]")
        report.failed.append(run.hash)
        return
    finally:
        stop.set()
        beat.join()
    wall = time.perf_counter() - started
    store.finish(run.hash, outcome, wall, provenance)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(outcome.metrics.items()) if k.startswith("val"))
    console.print(f"  done in {wall:.0f} s (step {outcome.selected_step}, {outcome.selection_rule}): {shown}")
    report.executed.append(run.hash)


def _heartbeat(folder: Path, run_hash: str, owner: str, stop: threading.Event) -> None:
    """Tell other shards this run's owner is alive (its own connection: sqlite objects stay in one thread)."""
    store = Store(folder)
    store.owner = owner
    try:
        while not stop.wait(HEARTBEAT_S):
            store.heartbeat(run_hash)
    finally:
        store.close()


def describe(run: PlannedRun) -> str:
    labels = run.labels
    if run.kind == "pretrain":
        return f"pre-train {labels['model']} on {labels['task']} (seed {labels['seed']}) [{run.hash}]"
    size = f", {labels['train_size']} examples" if labels["train_size"] else ""
    return (
        f"fine-tune {labels['model']} on {labels['task']} from {labels['arm']} "
        f"(lr {labels['lr']:g}, seed {labels['seed']}{size}) [{run.hash}]"
    )


def study_status(folder: Path) -> tuple[Counter, list[dict]]:
    """Counts by status (done / running / interrupted / failed / pending) and one dict per run."""
    if not (folder / "results.sqlite").is_file():
        raise UserError(
            f"{folder} is not a study folder (no results.sqlite); start one with `synthpre study run`"
        )
    store = Store(folder)
    try:
        rows = [dict(row) | {"status": store.effective_status(row)} for row in store.runs()]
    finally:
        store.close()
    return Counter(row["status"] for row in rows), rows


def load_study(folder: Path) -> tuple[StudySpec, list[PlannedRun]]:
    """The spec stored in a study folder and its runs."""
    spec_path = folder / SPEC_NAME
    if not spec_path.is_file():
        raise UserError(f"{folder} holds no {SPEC_NAME}; run `synthpre study run SPEC --out {folder}` first")
    spec = load_spec(spec_path)
    return spec, build_plan(spec)


def git_commit() -> str:
    """The commit of the synthpre source tree (``+dirty`` with local changes), or ``unknown``."""
    source = Path(synthpre.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=source, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
