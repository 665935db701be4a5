"""``synthpre study run`` / ``status``: run what is missing, resume what was interrupted, skip what is done.

A study folder holds ``spec.yaml`` (the spec as given), ``results.sqlite`` (the store) and one folder per
run, ``runs/<kind>-<hash>/``, with its result file (``results.py``).  Shards (``--shard i/n``) on several
machines share the folder: each run is claimed in a SQLite transaction, so it runs once even when a
shard needs another shard's pre-training run first (it then runs it itself, or waits while its owner is
alive).  A failed run is recorded with its error and the study goes on; the fine-tuning runs of a failed
pre-training run are ``blocked``.  ``--executor local|slurm`` runs the same graph as jobs (``executors.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

import synthpre
from synthpre.errors import UserError
from synthpre.experiments.execute import RULE_MET
from synthpre.experiments.plan import PlannedRun, build_plan, shard_runs
from synthpre.experiments.results import (
    done_result,
    failed_result,
    read_result,
    record,
    run_dir_of,
    sync_results,
    write_result,
)
from synthpre.experiments.spec import StudySpec, load_spec
from synthpre.experiments.store import DB_NAME, Outcome, Store, check_database

SPEC_NAME = "spec.yaml"
CLAIMS_DIR = "claims"  # DIR/claims/<hash>/.lock: the flock of the process that runs <hash>
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
    blocked: list[str]


def prepare_study(spec_path: Path, folder: Path) -> tuple[StudySpec, list[PlannedRun]]:
    """Validate the spec (before writing anything), then copy it into the folder and register its runs."""
    spec = load_spec(spec_path)
    return spec, register_study(spec, spec_path.read_text(), folder)


def register_study(spec: StudySpec, spec_text: str, folder: Path) -> list[PlannedRun]:
    """Copy the spec into the folder and register its runs; a folder whose ``results.sqlite`` is not a
    results database is a ``UserError`` before anything is written."""
    runs = build_plan(spec)
    if (folder / DB_NAME).exists():
        check_database(folder / DB_NAME)
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
    """Execute this shard's runs (and any pre-training run they need that nobody has started); runs that
    jobs finished (their result files) count as done."""
    sync_results(folder, runs)
    runner = _ShardRunner(
        folder, runs, executor, f"{shard[0]}/{shard[1]}", console or Console(soft_wrap=True)
    )
    mine = shard_runs(runs, *shard)
    try:
        for position, run in enumerate(mine, 1):
            runner.run_with_dependencies(run, f"[{position}/{len(mine)}]")
    finally:
        runner.store.close()
    return runner.report


class _ShardRunner:
    """One ``study run`` process: claims runs in the store, executes them, records their outcome."""

    def __init__(
        self, folder: Path, runs: list[PlannedRun], executor: Executor, shard: str, console: Console
    ):
        self.folder, self.executor, self.shard, self.console = folder, executor, shard, console
        self.store = Store(folder)
        self.by_hash = {run.hash: run for run in runs}
        self.report = StudyReport([], [], [], [])
        self.provenance = provenance()

    def run_with_dependencies(self, run: PlannedRun, position: str) -> None:
        if all(self._ensure_done(dep) for dep in run.deps):
            self._execute(run, position)
        else:  # blocked (its status says so) until --retry-failed runs its pre-training again
            self.report.blocked.append(run.hash)

    def _ensure_done(self, dep_hash: str) -> bool:
        """Run a dependency here, or wait while its live owner runs it; False when it failed."""
        announced = False
        while True:
            row = self.store.run(dep_hash)
            status = self.store.effective_status(row)
            if status in ("done", "failed"):
                return status == "done"
            if status == "running":
                if not announced:
                    self.console.print(f"waiting for pre-training run {dep_hash} (owner {row['owner']})")
                    announced = True
                time.sleep(WAIT_POLL_S)
            else:
                self._execute(self.by_hash[dep_hash], "(needed first)")

    def _execute(self, run: PlannedRun, position: str) -> None:
        """Claim the run (an flock on ``DIR/claims/<hash>`` for as long as it runs, then the store's
        row), execute it and record the outcome.  The flock keeps a second process out of the run
        even where SQLite's locking fails (network filesystems); its ``rmtree`` of a stale folder
        included."""
        from synthpre.train.runlock import RunLock

        claim = RunLock(self.folder / CLAIMS_DIR / run.hash)
        try:
            claim.acquire()
        except UserError:  # another process runs it
            self.report.skipped.append(run.hash)
            return
        try:
            self._execute_claimed(run, position)
        finally:
            claim.release()

    def _execute_claimed(self, run: PlannedRun, position: str) -> None:
        store = self.store
        if store.claim(run.hash, self.shard) != "claimed":
            self.report.skipped.append(run.hash)
            return
        run_dir = run_dir_of(self.folder, run)
        resume = store.run(run.hash)["attempts"] > 1 and run_dir.exists()
        note = " (resuming)" if resume else ""
        self.console.print(f"{escape(position)} {escape(describe(run))}  [dim]{run_dir}{note}[/dim]")
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        store.set_run_dir(run.hash, run_dir)
        deps = {h: store.run(h)["checkpoint"] for h in run.deps}
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(self.folder, run.hash, store.owner, stop), daemon=True
        )
        beat.start()
        started = time.perf_counter()
        try:
            outcome = self.executor(run, run_dir, deps, resume)
        except KeyboardInterrupt:
            store.release(run.hash, "interrupted by the user")
            raise
        except Exception as error:  # a failed run is recorded and the study goes on
            wall = time.perf_counter() - started
            result = failed_result(run, error, wall, None)
            write_result(run_dir, result)
            record(store, run_dir, result)
            self.console.print(
                f"[red]  failed after {wall:.0f} s: {escape(result['error'].splitlines()[-1])}[/red]"
            )
            self.report.failed.append(run.hash)
            return
        finally:
            stop.set()
            beat.join()
        wall = time.perf_counter() - started
        result = done_result(run, outcome, wall, self.provenance)
        write_result(run_dir, result)
        record(store, run_dir, result)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(outcome.metrics.items()) if k.startswith("val"))
        rule = escape(outcome.selection_rule)
        self.console.print(f"  done in {wall:.0f} s (step {outcome.selected_step}, {rule}): {shown}")
        if outcome.metrics.get(RULE_MET) == 0.0:
            self.console.print(
                "[yellow]  this pre-training did not meet the study's rule (pretraining.rule); the report "
                "flags its rows[/yellow]"
            )
        self.report.executed.append(run.hash)


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


STATUSES = ("done", "running", "queued", "interrupted", "failed", "blocked", "pending")
STOPPED = ("failed", "blocked")  # a pre-training run in these states blocks its fine-tuning runs


def study_status(folder: Path) -> tuple[Counter, list[dict]]:
    """Counts by status (``STATUSES``) and one dict per run of the study's current spec (runs of an
    earlier version of the spec stay in the store, unlisted).  New result files are entered into the
    store first (``results.sync_results``)."""
    if not (folder / DB_NAME).is_file():
        raise UserError(f"{folder} is not a study folder (no {DB_NAME}); start one with `synthpre study run`")
    _, runs = load_study(folder)
    sync_results(folder, runs)
    rows = run_states(folder, runs)
    return Counter(row["status"] for row in rows), rows


def run_states(folder: Path, runs: list[PlannedRun]) -> list[dict]:
    """The store's rows with the state of each run's job where it has one (``jobs.job_status``: queued,
    running or interrupted while it has left no result), and ``blocked`` where a pre-training run the
    run needs failed.  Each row also has ``job`` (its record or None) and ``detail``."""
    from synthpre.experiments.jobs import job_status, queue_states, read_job

    rows = {row["hash"]: row for row in run_rows(folder, runs)}
    records = {run.hash: read_job(folder, run.hash) for run in runs}
    unfinished = [records[h] for h, row in rows.items() if row["status"] in ("pending", "interrupted")]
    queue = queue_states([record for record in unfinished if record])
    by_hash: dict[str, dict] = {}
    for run in (run for run in runs if run.hash in rows):
        row = rows[run.hash] | {"job": records[run.hash], "detail": ""}
        if row["status"] in ("pending", "interrupted") and row["job"]:
            row["status"], row["detail"] = job_status(row["job"], queue)
        failed = next((d for d in run.deps if by_hash.get(d, {}).get("status") in STOPPED), None)
        if failed and row["status"] in ("pending", "interrupted", "queued"):
            row["status"], row["detail"] = "blocked", f"pre-training run {failed} failed"
        by_hash[run.hash] = row
    return list(by_hash.values())


def run_rows(folder: Path, runs: list[PlannedRun]) -> list[dict]:
    """The store's row of each of ``runs`` that it knows, with its effective status (read only): that
    of the run's result file where it has one, which the store may not have entered yet."""
    by_hash = {run.hash: run for run in runs}
    store = Store(folder, read_only=True)
    try:
        rows = []
        for row in store.runs(list(by_hash)):
            result = read_result(run_dir_of(folder, by_hash[row["hash"]]))
            rows.append(dict(row) | {"status": result["status"] if result else store.effective_status(row)})
        return rows
    finally:
        store.close()


def load_study(folder: Path) -> tuple[StudySpec, list[PlannedRun]]:
    """The spec stored in a study folder and its runs."""
    spec_path = folder / SPEC_NAME
    if not spec_path.is_file():
        raise UserError(f"{folder} holds no {SPEC_NAME}; run `synthpre study run SPEC --out {folder}` first")
    spec = load_spec(spec_path)
    return spec, build_plan(spec)


def provenance() -> dict[str, str]:
    """What made a result: the synthpre version and commit (stored with every result)."""
    return {"synthpre_version": synthpre.__version__, "git_commit": git_commit()}


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
