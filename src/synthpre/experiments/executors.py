"""``study run --executor local|slurm``: the study as a graph of jobs, one per run (``jobs.py``).

Every fine-tuning job depends on the job of its pre-training run.  ``slurm`` submits the whole graph at
once through submitit, each dependency an ``afterok`` (with ``kill-on-invalid-dep``, so a failed
pre-training cancels its fine-tuning jobs instead of leaving them pending forever); ``local`` runs the
same jobs as processes of this machine, a job once its pre-training job has finished.  Either way only
runs that are neither done nor queued/running are submitted, and a run whose pre-training failed is
``blocked``: it waits for ``--retry-failed``.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from synthpre.errors import UserError
from synthpre.experiments.jobs import (
    JOBS_DIR,
    JobCommand,
    default_launcher,
    job_command,
    job_status,
    read_job,
    write_job,
)
from synthpre.experiments.plan import PlannedRun
from synthpre.experiments.results import read_result, run_dir_of
from synthpre.experiments.runner import STOPPED, describe
from synthpre.experiments.spec import RunResources

SUBMITTABLE = ("pending", "interrupted")  # neither done, failed, blocked, nor queued / running
POLL_S = 0.5


@dataclass
class SubmitReport:
    """What one ``study run --executor ...`` did."""

    submitted: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # local jobs that finished with a result
    failed: list[str] = field(default_factory=list)  # local jobs that failed or ended without a result
    blocked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done, queued or running already


def _first_report(runs: list[PlannedRun], status: dict[str, str]) -> SubmitReport:
    return SubmitReport(
        blocked=[r.hash for r in runs if status[r.hash] == "blocked"],
        skipped=[r.hash for r in runs if status[r.hash] not in (*SUBMITTABLE, "blocked")],
    )


def _blocking_dep(run: PlannedRun, status: dict[str, str]) -> str | None:
    return next((dep for dep in run.deps if status[dep] in STOPPED), None)


def run_local(
    folder: Path, runs: list[PlannedRun], status: dict[str, str], launcher: list[str] | None,
    parallel: int, console: Console,
) -> SubmitReport:  # fmt: skip
    """Run the submittable runs as local jobs, at most ``parallel`` at a time, each fine-tuning job once
    its pre-training run is done; waits for them all."""
    status, by_hash = dict(status), {run.hash: run for run in runs}
    report = _first_report(runs, status)
    todo = [run for run in runs if status[run.hash] in SUBMITTABLE]
    status |= {run.hash: "to run" for run in todo}  # until its job ends here
    active: dict[str, subprocess.Popen] = {}
    total, started = len(todo), 0
    while todo or active:
        for run_hash, process in list(active.items()):
            if process.poll() is not None:
                del active[run_hash]
                status[run_hash] = _ended(folder, by_hash[run_hash], report, console)
        for run in list(todo):
            waiting = [dep for dep in run.deps if status[dep] != "done"]
            for dep in waiting:  # a pre-training job of an earlier `study run` may still be running
                if status[dep] in ("queued", "running"):
                    status[dep] = _refreshed(folder, by_hash[dep])
            if _blocking_dep(run, status) is not None:
                status[run.hash] = "blocked"
                report.blocked.append(run.hash)
                todo.remove(run)
            elif any(status[dep] == "interrupted" for dep in waiting):
                todo.remove(run)  # its pre-training job ended without a result: the next `study run`
            elif not waiting and len(active) < parallel:
                started += 1
                active[run.hash] = _start_local(folder, run, launcher, f"[{started}/{total}]", console)
                report.submitted.append(run.hash)
                todo.remove(run)
        if todo or active:
            time.sleep(POLL_S)
    return report


def _start_local(
    folder: Path, run: PlannedRun, launcher: list[str] | None, position: str, console: Console
) -> subprocess.Popen:
    command = job_command(folder, run.hash, launcher or default_launcher(1))
    log = folder / JOBS_DIR / "logs" / f"{run.hash}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as output:
        output.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
        output.flush()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    write_job(folder, run.hash, {
        "executor": "local", "job_id": f"{socket.gethostname()}:{process.pid}", "hash": run.hash,
        "host": socket.gethostname(), "pid": process.pid, "log": str(log), "command": command,
    })  # fmt: skip
    console.print(f"{escape(position)} {escape(describe(run))}  [dim]log {log}[/dim]")
    return process


def _ended(folder: Path, run: PlannedRun, report: SubmitReport, console: Console) -> str:
    """The state of a local job that has exited: its result's, or ``interrupted`` without one."""
    result = read_result(run_dir_of(folder, run))
    state = result["status"] if result else "interrupted"
    (report.done if state == "done" else report.failed).append(run.hash)
    if state != "done":
        error = (result or {}).get("error") or "the job ended without a result"
        log = (read_job(folder, run.hash) or {}).get("log")
        console.print(f"[red]  {run.hash} {state}: {escape(error.splitlines()[-1])} (log {log})[/red]")
    return state


def _refreshed(folder: Path, run: PlannedRun) -> str:
    """The state of a job not started by this process: from its result file, else its record."""
    result = read_result(run_dir_of(folder, run))
    if result is not None:
        return result["status"]
    record = read_job(folder, run.hash)
    return job_status(record, {})[0] if record else "pending"


# ---- Slurm


def check_slurm() -> None:
    """Slurm's commands are here (submitit needs ``srun`` to be, ``sbatch`` submits)."""
    for command in ("sbatch", "srun"):
        if shutil.which(command) is None:
            raise UserError(
                f"--executor slurm: `{command}` is not on PATH; run `study run` on a Slurm login node"
            )


def submit_slurm(
    folder: Path, runs: list[PlannedRun], rows: dict[str, dict[str, Any]], resources: dict[str, RunResources],
    launcher: list[str] | None, console: Console,
) -> SubmitReport:  # fmt: skip
    """Submit one Slurm job per submittable run (pre-training first), each fine-tuning job ``afterok``
    its pre-training job when that one is not done yet."""
    check_slurm()
    import submitit

    executor = submitit.SlurmExecutor(folder=folder.resolve() / JOBS_DIR / "slurm")
    status = {h: row["status"] for h, row in rows.items()}
    job_ids = {h: row["job"]["job_id"] for h, row in rows.items() if status[h] in ("queued", "running")}
    report = _first_report(runs, status)
    for run in runs:
        if status[run.hash] not in SUBMITTABLE:
            continue
        if _blocking_dep(run, status) is not None:
            status[run.hash] = "blocked"
            report.blocked.append(run.hash)
            continue
        after = [job_ids[dep] for dep in run.deps if status[dep] != "done" and dep in job_ids]
        wanted = resources[run.kind]
        command = job_command(folder, run.hash, launcher or default_launcher(wanted.gpus))
        executor.update_parameters(**slurm_parameters(run, wanted, after, command))
        job = executor.submit(JobCommand(command))
        write_job(folder, run.hash, {
            "executor": "slurm", "job_id": str(job.job_id), "hash": run.hash, "log": str(job.paths.stdout),
            "command": command, "dependency": after,
        })  # fmt: skip
        job_ids[run.hash], status[run.hash] = str(job.job_id), "queued"
        report.submitted.append(run.hash)
        waits = f" after {','.join(after)}" if after else ""
        console.print(f"slurm job {job.job_id}{waits}: {escape(describe(run))}")
    return report


def slurm_parameters(run: PlannedRun, wanted: RunResources, after: list[str], command: list[str]) -> dict:
    """submitit's ``SlurmExecutor`` parameters of one run's job (``None`` clears a previous job's)."""
    return {
        "job_name": f"synthpre-{run.kind}-{run.hash}",
        "partition": wanted.partition,
        "gpus_per_node": wanted.gpus or None,
        "ntasks_per_node": 1,  # one task; `accelerate launch` starts a process per GPU
        "cpus_per_task": wanted.cpus,
        "mem": f"{wanted.mem_gb}GB" if wanted.mem_gb else None,
        "time": max(1, round(wanted.hours * 60)),
        "dependency": f"afterok:{':'.join(after)}" if after else None,
        "additional_parameters": {"kill-on-invalid-dep": "yes", **wanted.extra},
        "setup": [f"# synthpre run {run.hash}: {shlex.join(command)}"],
        "stderr_to_stdout": True,  # one log per job, the one its record names
    }
