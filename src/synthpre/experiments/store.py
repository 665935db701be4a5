"""The results store: one SQLite file per study folder (``DIR/results.sqlite``).

Table ``runs``: one row per run (config hash, kind, labels, status, owner, heartbeat, attempts, error).
Table ``results``: one row per run and metric, with the fields a table is built from (model, init arm,
task, lr, seed, train size, selected step, selection rule, synthpre version, git commit, wall time).
Several processes (shards on several machines sharing DIR) claim runs through SQLite transactions.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthpre.errors import UserError
from synthpre.experiments.plan import PlannedRun

DB_NAME = "results.sqlite"
STALE_AFTER_S = 600.0  # a "running" run whose owner has not beaten for this long was interrupted
LABEL_COLUMNS = (
    "model", "task", "arm", "init_kind", "scheme", "pretrain_task", "ln_value", "lr", "seed", "train_size",
)  # fmt: skip

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT NOT NULL, deps TEXT NOT NULL,
    {", ".join(f"{c} {'REAL' if c in ('lr', 'ln_value') else ''}" for c in LABEL_COLUMNS)},
    status TEXT NOT NULL DEFAULT 'pending', owner TEXT, shard TEXT, heartbeat REAL,
    attempts INTEGER DEFAULT 0,
    started REAL, finished REAL, wall_time REAL, run_dir TEXT, checkpoint TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS results (
    run_hash TEXT NOT NULL, kind TEXT NOT NULL, metric TEXT NOT NULL, value REAL,
    {", ".join(f"{c} {'REAL' if c in ('lr', 'ln_value') else ''}" for c in LABEL_COLUMNS)},
    selected_step INTEGER, selection_rule TEXT, synthpre_version TEXT, git_commit TEXT, wall_time REAL,
    PRIMARY KEY (run_hash, metric)
);
CREATE TABLE IF NOT EXISTS curves (
    run_hash TEXT NOT NULL, metric TEXT NOT NULL, step INTEGER NOT NULL, value REAL,
    PRIMARY KEY (run_hash, metric, step)
);
"""


@dataclass
class Outcome:
    """What a finished run reports: metrics of the selected checkpoint and how it was selected."""

    metrics: dict[str, float]
    selected_step: int | None
    selection_rule: str
    checkpoint: str | None = None  # the selected checkpoint folder (pre-training runs)
    curves: dict[str, list[tuple[int, float]]] | None = None  # metric -> [(step, value)] for plots


class Store:
    """The study's SQLite database."""

    def __init__(self, folder: Path, read_only: bool = False) -> None:
        """Open (or create) ``folder/results.sqlite``; ``read_only``: open an existing one, write nothing.

        A file there that is not a results database is a ``UserError``, and nothing is written."""
        self.path = folder / DB_NAME
        if read_only and not self.path.is_file():
            raise UserError(
                f"{folder} is not a study folder (no {DB_NAME}); start one with `synthpre study run`"
            )
        if self.path.exists():
            check_database(self.path, empty_ok=not read_only)
        if not read_only:
            folder.mkdir(parents=True, exist_ok=True)
        self.connection = _connect(self.path, read_only)
        self.connection.row_factory = sqlite3.Row
        if not read_only:
            self.connection.executescript(_SCHEMA)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def register(self, runs: list[PlannedRun]) -> None:
        """Add the study's runs as ``pending`` (runs already known keep their state)."""
        columns = ("hash", "kind", "config", "deps", *LABEL_COLUMNS)
        rows = [
            (
                run.hash,
                run.kind,
                json.dumps(run.config, sort_keys=True),
                json.dumps(run.deps),
                *(run.labels.get(c) for c in LABEL_COLUMNS),
            )
            for run in runs
        ]
        with self.transaction() as db:
            db.executemany(
                f"INSERT OR IGNORE INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                rows,
            )

    def run(self, run_hash: str) -> sqlite3.Row:
        return self.connection.execute("SELECT * FROM runs WHERE hash = ?", (run_hash,)).fetchone()

    def runs(self, hashes: list[str] | None = None) -> list[sqlite3.Row]:
        rows = self.connection.execute("SELECT * FROM runs ORDER BY rowid").fetchall()
        if hashes is None:
            return rows
        by_hash = {row["hash"]: row for row in rows}
        return [by_hash[h] for h in hashes if h in by_hash]

    def effective_status(self, row: sqlite3.Row) -> str:
        """``running`` only while its owner lives; an abandoned run reads ``interrupted``."""
        if row["status"] == "running" and self._is_stale(row):
            return "interrupted"
        return row["status"]

    def _is_stale(self, row: sqlite3.Row) -> bool:
        host, _, pid = (row["owner"] or ":").rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            return True
        return time.time() - (row["heartbeat"] or 0.0) > STALE_AFTER_S

    def claim(self, run_hash: str, shard: str) -> str:
        """Atomically take a run: ``claimed``, ``done``, ``failed`` or ``busy`` (a live owner has it)."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM runs WHERE hash = ?", (run_hash,)).fetchone()
            status = self.effective_status(row)
            if status in ("done", "failed", "running"):
                return "busy" if status == "running" else status
            now = time.time()
            db.execute(
                "UPDATE runs SET status='running', owner=?, shard=?, heartbeat=?, started=?, "
                "attempts=attempts+1, error=NULL WHERE hash=?",
                (self.owner, shard, now, now, run_hash),
            )
        return "claimed"

    def heartbeat(self, run_hash: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET heartbeat=? WHERE hash=? AND owner=?", (time.time(), run_hash, self.owner)
            )

    def release(self, run_hash: str, error: str) -> None:
        """Give a run back as pending (the process was interrupted, e.g. Ctrl-C)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status='pending', owner=NULL, error=? WHERE hash=?", (error, run_hash)
            )

    def fail(self, run_hash: str, error: str, wall_time: float, finished: float | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status='failed', error=?, finished=?, wall_time=? WHERE hash=?",
                (error, finished or time.time(), wall_time, run_hash),
            )

    def retry_failed(self) -> int:
        with self.transaction() as db:
            return db.execute("UPDATE runs SET status='pending' WHERE status='failed'").rowcount

    def finish(
        self, run_hash: str, outcome: Outcome, wall_time: float, provenance: dict[str, str],
        finished: float | None = None,
    ) -> None:  # fmt: skip
        """Record a finished run: its status, one ``results`` row per metric and its curves."""
        row = self.run(run_hash)
        labels = tuple(row[c] for c in LABEL_COLUMNS)
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status='done', finished=?, wall_time=?, checkpoint=?, error=NULL "
                "WHERE hash=?",
                (finished or time.time(), wall_time, outcome.checkpoint, run_hash),
            )
            db.execute("DELETE FROM results WHERE run_hash = ?", (run_hash,))
            columns = (
                "run_hash", "kind", "metric", "value", *LABEL_COLUMNS, "selected_step", "selection_rule",
                "synthpre_version", "git_commit", "wall_time",
            )  # fmt: skip
            db.executemany(
                f"INSERT INTO results ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [
                    (run_hash, row["kind"], metric, float(value), *labels, outcome.selected_step,
                     outcome.selection_rule, provenance["synthpre_version"], provenance["git_commit"],
                     wall_time)
                    for metric, value in sorted(outcome.metrics.items())
                ],
            )  # fmt: skip
            db.execute("DELETE FROM curves WHERE run_hash = ?", (run_hash,))
            db.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?)",
                [
                    (run_hash, metric, int(step), float(value))
                    for metric, points in (outcome.curves or {}).items()
                    for step, value in points
                ],
            )

    def set_run_dir(self, run_hash: str, run_dir: Path) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET run_dir=? WHERE hash=?", (str(run_dir), run_hash))

    def results(self, kind: str = "finetune", hashes: set[str] | None = None) -> list[dict[str, Any]]:
        """Result rows of one kind of run; only those of ``hashes`` (the current spec's runs) when given."""
        rows = self.connection.execute("SELECT * FROM results WHERE kind = ? ORDER BY rowid", (kind,))
        return [dict(row) for row in rows if hashes is None or row["run_hash"] in hashes]

    def curves(self, run_hash: str, metric: str) -> list[tuple[int, float]]:
        rows = self.connection.execute(
            "SELECT step, value FROM curves WHERE run_hash=? AND metric=? ORDER BY step", (run_hash, metric)
        )
        return [(row["step"], row["value"]) for row in rows]


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:  # mode=ro: SQLite neither creates the file nor writes to it
        uri = f"{path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None)
    return sqlite3.connect(path, timeout=60.0, isolation_level=None)


_TABLES = "SELECT name FROM sqlite_master WHERE type='table'"


def check_database(path: Path, empty_ok: bool = True) -> None:
    """A ``UserError`` unless ``path`` is a results database: SQLite, with the store's tables (or none,
    when ``empty_ok``: an empty database becomes one)."""
    fix = "move it away or choose another --out"
    try:
        connection = _connect(path, read_only=True)
        try:
            tables = {row[0] for row in connection.execute(_TABLES)}
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise UserError(f"{path} is not a results database ({error}): {fix}") from None
    if (tables or not empty_ok) and not {"runs", "results"} <= tables:
        found = ", ".join(sorted(tables)) or "none"
        raise UserError(f"{path} is not a results database (its tables: {found}): {fix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
