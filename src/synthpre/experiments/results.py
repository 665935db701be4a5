"""Per-run result files: what a finished or failed run leaves in its folder, ``RUN/result.json``.

Whatever executes a run (this process, a local job, a Slurm job on another machine) writes its result
file with an atomic rename, and nothing else: the results database ``DIR/results.sqlite`` is built from
these files by the one process that reads them (``study run`` / ``status``, ``report``), because SQLite's
locking is not to be trusted across the machines of a cluster (its documentation warns about NFS).
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from pathlib import Path
from typing import Any

from synthpre.experiments.plan import PlannedRun
from synthpre.experiments.store import Outcome, Store
from synthpre.train.checkpoints import write_json_atomic

RESULT_FILE = "result.json"
PREVIOUS_FAILURE = "previous-failure.json"  # a failure record set aside by --retry-failed
ERROR_LINES = 20  # of a failure's traceback, kept in its record


def run_dir_of(folder: Path, run: PlannedRun) -> Path:
    return folder / "runs" / f"{run.kind}-{run.hash}"


def done_result(run: PlannedRun, outcome: Outcome, wall_time: float, provenance: dict[str, str]) -> dict:
    return {
        "hash": run.hash, "kind": run.kind, "status": "done", "finished": time.time(),
        "wall_time": wall_time, "outcome": dataclasses.asdict(outcome), "provenance": provenance,
    }  # fmt: skip


def failed_result(run: PlannedRun, error: BaseException, wall_time: float, log: str | None) -> dict:
    """A failure record: the error's message (a ``UserError``) or the last lines of its traceback."""
    from synthpre.errors import UserError

    if isinstance(error, UserError):
        text = "".join(traceback.format_exception_only(error)).strip()
    else:
        text = "".join(traceback.format_exception(error)).strip()
    lines = text.splitlines()[-ERROR_LINES:]
    return {
        "hash": run.hash, "kind": run.kind, "status": "failed", "finished": time.time(),
        "wall_time": wall_time, "error": "\n".join(lines), "log": log,
    }  # fmt: skip


def write_result(run_dir: Path, result: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / RESULT_FILE, result)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The run's result record, or None (none yet; a file that is not one is not a result)."""
    try:
        result = json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") in ("done", "failed") else None


def record(store: Store, run_dir: Path, result: dict) -> None:
    """Enter a result record into the results database (its time of finishing kept as it is)."""
    run_hash, finished, wall = result["hash"], result["finished"], result["wall_time"]
    store.set_run_dir(run_hash, run_dir)
    if result["status"] == "done":
        store.finish(run_hash, Outcome(**result["outcome"]), wall, result["provenance"], finished)
    else:
        log = f"log: {result['log']}\n" if result.get("log") else ""
        store.fail(run_hash, log + result["error"], wall, finished)


def sync_results(folder: Path, runs: list[PlannedRun]) -> int:
    """Bring the results database up to date with the runs' result files; returns how many were new.

    Reads the database first and opens it for writing only when a file is new, so that a study with
    nothing new stays untouched (``status`` and ``report`` write nothing then)."""
    found = {run.hash: (run_dir_of(folder, run), read_result(run_dir_of(folder, run))) for run in runs}
    found = {h: (d, r) for h, (d, r) in found.items() if r is not None}
    if not found:
        return 0
    store = Store(folder, read_only=True)
    try:
        rows = {row["hash"]: row for row in store.runs(list(found))}
    finally:
        store.close()
    new = [
        (run_dir, result)
        for h, (run_dir, result) in found.items()
        if h in rows and (rows[h]["status"], rows[h]["finished"]) != (result["status"], result["finished"])
    ]
    if new:
        store = Store(folder)
        try:
            for run_dir, result in new:
                record(store, run_dir, result)
        finally:
            store.close()
    return len(new)


def set_failures_aside(folder: Path, runs: list[PlannedRun]) -> list[str]:
    """``--retry-failed``: each failure record becomes ``previous-failure.json`` (kept to read) and the
    database forgets the failures; returns the hashes of the failed runs."""
    failed = []
    for run in runs:
        run_dir = run_dir_of(folder, run)
        result = read_result(run_dir)
        if result is not None and result["status"] == "failed":
            (run_dir / RESULT_FILE).replace(run_dir / PREVIOUS_FAILURE)
            failed.append(run.hash)
    store = Store(folder)
    try:
        store.retry_failed()
    finally:
        store.close()
    return failed
