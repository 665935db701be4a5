"""One job per run: its record in ``DIR/jobs/<hash>.json``, its state, and its entry point.

A job runs ``python -m synthpre.experiments.jobs DIR HASH`` (under ``accelerate launch`` for several
GPUs): it loads ``DIR/spec.yaml``, finds the run, executes it as the in-process runner would and writes
the run's result file (``results.py``) — on failure a failure record with the error's last lines and
the job's log, and a non-zero exit so that Slurm holds back the fine-tuning jobs that depend on it
(``afterok``).  It writes nothing else into the study folder: no database on another machine.

The record (``executor``, ``job_id``, ``log``, ``command``, ``submitted``) tells ``study status`` and
the next ``study run`` where the job is: ``squeue`` / ``sacct`` for a Slurm job (when they are on
PATH), the process id for a local one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthpre.experiments.plan import PlannedRun
from synthpre.experiments.results import (
    RESULT_FILE,
    done_result,
    failed_result,
    read_result,
    run_dir_of,
    write_result,
)
from synthpre.train.checkpoints import write_json_atomic

JOBS_DIR = "jobs"
QUEUE_TIMEOUT_S = 30.0
SLURM_QUEUED = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")
SLURM_RUNNING = ("RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "RESIZING", "SIGNALING")


def job_path(folder: Path, run_hash: str) -> Path:
    return folder / JOBS_DIR / f"{run_hash}.json"


def read_job(folder: Path, run_hash: str) -> dict[str, Any] | None:
    try:
        return json.loads(job_path(folder, run_hash).read_text())
    except (OSError, ValueError):
        return None


def write_job(folder: Path, run_hash: str, record: dict[str, Any]) -> None:
    """Record a submitted job (after its submission: the record never names a job that does not exist)."""
    previous = read_job(folder, run_hash) or {}
    record = {"submitted": time.time(), "attempt": previous.get("attempt", 0) + 1, **record}
    job_path(folder, run_hash).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(job_path(folder, run_hash), record)


def forget_job(folder: Path, run_hash: str) -> None:
    job_path(folder, run_hash).unlink(missing_ok=True)


def job_command(folder: Path, run_hash: str, launcher: list[str]) -> list[str]:
    """The command of a run's job: ``LAUNCHER -m synthpre.experiments.jobs DIR HASH``."""
    return [*launcher, "-m", "synthpre.experiments.jobs", str(folder.resolve()), run_hash]


def default_launcher(processes: int) -> list[str]:
    """This Python for one process; ``accelerate launch`` of ``processes`` for several GPUs (DDP)."""
    if processes <= 1:
        return [sys.executable]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            str(processes), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no"]  # fmt: skip


@dataclass
class JobCommand:
    """What a Slurm job runs (submitit pickles it): the job's command, its output in the job's log.
    A non-zero exit fails the job, so that the jobs that depend on it (``afterok``) do not start."""

    command: list[str]

    def __call__(self) -> None:
        code = subprocess.run(self.command, check=False).returncode
        if code != 0:
            raise RuntimeError(f"the run's job command exited with code {code}: {' '.join(self.command)}")


# ---- where a job is


def queue_states(records: list[dict[str, Any]]) -> dict[str, str]:
    """Slurm's state of each Slurm job id (``squeue``, then ``sacct`` for jobs no longer queued), or
    nothing where those commands are not on PATH."""
    ids = [r["job_id"] for r in records if r.get("executor") == "slurm"]
    states: dict[str, str] = {}
    if ids and shutil.which("squeue"):
        out = _query(["squeue", "--noheader", "--format=%i|%T", f"--jobs={','.join(ids)}"])
        states |= _parse_states(out)
    rest = [i for i in ids if i not in states]
    if rest and shutil.which("sacct"):
        out = _query(
            ["sacct", "--noheader", "--parsable2", "--format=JobID,State", f"--jobs={','.join(rest)}"]
        )
        states |= {k: v for k, v in _parse_states(out).items() if k in rest}
    return states


def _query(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=QUEUE_TIMEOUT_S, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _parse_states(text: str) -> dict[str, str]:
    """``ID|STATE`` lines (job steps like ``12.batch`` skipped; ``CANCELLED by 0`` -> ``CANCELLED``)."""
    states = {}
    for line in text.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and "." not in job_id and state:
            states[job_id] = state.split()[0].rstrip("+")
    return states


def job_status(record: dict[str, Any], queue: dict[str, str]) -> tuple[str, str]:
    """(``queued`` | ``running`` | ``interrupted``, detail) of a job that has left no result (yet).

    A Slurm job that Slurm no longer runs, or a local process that is gone, was interrupted (killed,
    out of time or memory): the next ``study run`` submits it again and it resumes.  A Slurm job
    neither ``squeue`` nor ``sacct`` can tell about counts as queued."""
    if record.get("executor") == "slurm":
        state = queue.get(record["job_id"])
        if state is None or state in SLURM_QUEUED:
            return "queued", f"slurm {state or 'submitted'}"
        if state in SLURM_RUNNING:
            return "running", f"slurm {state}"
        return "interrupted", f"slurm {state}, no result"
    if record.get("host") != socket.gethostname():
        return "running", f"on {record.get('host')}"
    alive = _is_job_process(int(record["pid"]), record["hash"])
    return ("running", "local") if alive else ("interrupted", "local process gone, no result")


def _is_job_process(pid: int, run_hash: str) -> bool:
    """The process ``pid`` lives and is this run's job (not a later process with the same id)."""
    try:
        return run_hash in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


# ---- the job itself


def exec_job(folder: Path, run_hash: str) -> int:
    """Run one run of the study in ``folder`` and write its result file; the exit code of the job."""
    from synthpre.errors import UserError
    from synthpre.experiments.runner import CLAIMS_DIR, load_study
    from synthpre.train.runlock import RunLock

    _, runs = load_study(folder)
    by_hash = {run.hash: run for run in runs}
    if run_hash not in by_hash:
        raise UserError(f"{folder / 'spec.yaml'} has no run {run_hash} (was the spec changed?)")
    run = by_hash[run_hash]
    if os.environ.get("WORLD_SIZE", "1") != "1":  # several processes: the engine's lock of the run
        return _exec_claimed(folder, run, by_hash)  # folder stops them all alike when it is in use
    claim = RunLock(folder / CLAIMS_DIR / run_hash)
    try:
        claim.acquire()  # the same claim as an in-process shard's: one process per run
    except UserError as busy:
        print(f"not run: {busy}", file=sys.stderr)
        return 0
    try:
        return _exec_claimed(folder, run, by_hash)
    finally:
        claim.release()


def _exec_claimed(folder: Path, run: PlannedRun, by_hash: dict[str, PlannedRun]) -> int:
    from synthpre.experiments.execute import execute_run, is_main_process
    from synthpre.experiments.runner import provenance

    run_dir = run_dir_of(folder, run)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        deps = {dep: _checkpoint_of(folder, by_hash[dep]) for dep in run.deps}
        outcome = execute_run(run, run_dir, deps, run_dir.exists())
    except Exception as error:
        if is_main_process():
            log = (read_job(folder, run.hash) or {}).get("log")
            write_result(run_dir, failed_result(run, error, time.perf_counter() - started, log))
        raise
    if is_main_process():
        write_result(run_dir, done_result(run, outcome, time.perf_counter() - started, provenance()))
    return 0


def _checkpoint_of(folder: Path, pretraining: PlannedRun) -> str:
    from synthpre.errors import UserError

    result = read_result(run_dir_of(folder, pretraining))
    if result is None or result["status"] != "done":
        raise UserError(f"pre-training run {pretraining.hash} is not done: its fine-tuning cannot start")
    return result["outcome"]["checkpoint"]


def main(argv: list[str] | None = None) -> None:
    """``python -m synthpre.experiments.jobs DIR HASH``: a ``UserError`` exits 2, any failure 1."""
    from synthpre.cli import show_library_messages
    from synthpre.errors import UserError

    folder, run_hash = (argv or sys.argv[1:])[:2]
    show_library_messages()
    try:
        sys.exit(exec_job(Path(folder), run_hash))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
