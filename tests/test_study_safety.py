"""Bad study input fails before anything is written: wrong types in ``train:`` blocks (with their line), a
``results.sqlite`` that is not a results database, and read-only commands that never create files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.errors import UserError
from synthpre.experiments.runner import SPEC_NAME, prepare_study, study_status
from synthpre.experiments.spec import parse_spec
from synthpre.experiments.store import DB_NAME, Store

SPEC = """\
name: safety-test
model: t5-tiny
vocab: "3:127"
pretraining:
  train: {{max_steps: {pre_steps}, batch_size: 16}}
  tasks:
    Set:
      task: set
      train: {{eval_every: {set_eval}}}
baselines: {{random_init: true}}
downstream:
  tasks:
    smiles_canonicalize:
      train: {{batch_size: {task_batch}}}
  tokenizer: chars
  lrs: [0.01, 0.001]
  seeds: [0, 1]
  train: {{max_steps: {down_steps}, eval_decode: 0}}
"""
GOOD = {"pre_steps": 12, "set_eval": 6, "task_batch": 16, "down_steps": 8}


def _text(**changes: object) -> str:
    return SPEC.format(**{**GOOD, **changes})


def _write(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(_text(**changes))
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _error(result) -> str:
    assert isinstance(result.exception, UserError), result.output
    return str(result.exception)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"pre_steps": '"sixty"'}, "study.yaml:5: pretraining.train.max_steps: Input should be a valid int"),
        ({"set_eval": '"often"'}, "study.yaml:9: pretraining.tasks.Set.train.eval_every: Input should be"),
        ({"down_steps": '"ten"'}, "study.yaml:18: downstream.train.max_steps: Input should be a valid int"),
        ({"task_batch": "-4"}, "study.yaml:14: downstream.tasks.smiles_canonicalize.train.batch_size: Input"),
    ],
)
def test_wrong_types_in_train_blocks_fail_with_their_line(changes: dict, expected: str) -> None:
    with pytest.raises(UserError) as error:
        parse_spec(_text(**changes), "study.yaml")
    assert expected in str(error.value)
    assert str(error.value).count("\n") == 1  # one message, not one per run of the grid


def test_a_valid_spec_still_parses() -> None:
    assert parse_spec(_text(), "study.yaml").name == "safety-test"


def test_study_run_with_a_bad_train_block_writes_nothing(tmp_path: Path) -> None:
    spec, out = _write(tmp_path, pre_steps='"sixty"'), tmp_path / "study"
    result = CliRunner().invoke(app, ["study", "run", str(spec), "--out", str(out)])
    assert "pretraining.train.max_steps" in _error(result)
    assert not out.exists()
    with pytest.raises(UserError, match="max_steps"):
        prepare_study(spec, out)
    assert not out.exists()


def _folder_with_text_database(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / SPEC_NAME).write_text("# an older spec\n" + _text())
    (folder / DB_NAME).write_text("these are my notes, not a database\n")
    return folder


@pytest.mark.parametrize("command", [["report"], ["study", "status"], ["study", "run"]])
def test_a_results_file_that_is_not_sqlite_is_a_user_error(tmp_path: Path, command: list[str]) -> None:
    folder = _folder_with_text_database(tmp_path)
    before = _files(folder)
    args = [*command, str(folder)]
    if command == ["study", "run"]:
        args = [*command, str(_write(tmp_path)), "--out", str(folder)]
    message = _error(CliRunner().invoke(app, args))
    assert f"{folder / DB_NAME} is not a results database (" in message
    assert "move it away or choose another --out" in message
    assert _files(folder) == before  # spec.yaml not rewritten, the file left as it was


def test_a_sqlite_file_of_something_else_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    connection = sqlite3.connect(folder / DB_NAME)
    connection.execute("CREATE TABLE photos (name TEXT)")
    connection.commit()
    connection.close()
    with pytest.raises(UserError, match="its tables: photos"):
        prepare_study(_write(tmp_path), folder)
    assert not (folder / SPEC_NAME).exists()


@pytest.mark.parametrize("command", [["report"], ["study", "status"]])
def test_read_only_commands_create_nothing(tmp_path: Path, command: list[str]) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / SPEC_NAME).write_text(_text())
    result = CliRunner().invoke(app, [*command, str(folder)])
    assert "no results.sqlite" in _error(result)
    assert sorted(p.name for p in folder.iterdir()) == [SPEC_NAME]
    missing = tmp_path / "nowhere"
    assert isinstance(CliRunner().invoke(app, [*command, str(missing)]).exception, UserError)
    assert not missing.exists()


def test_read_only_store_reads_a_study_without_writing(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    _, runs = prepare_study(_write(tmp_path), folder)
    before = _files(folder)
    counts, rows = study_status(folder)
    assert counts["pending"] == len(runs) == len(rows)
    store = Store(folder, read_only=True)
    try:
        assert store.results() == []
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.retry_failed()
    finally:
        store.close()
    assert _files(folder) == before
    (folder / DB_NAME).write_bytes(b"")  # an empty file: SQLite, but not a results database yet
    with pytest.raises(UserError, match=r"not a results database \(its tables: none\)"):
        study_status(folder)
    assert (folder / DB_NAME).read_bytes() == b""


def test_a_run_claimed_by_another_process_is_skipped_until_its_lock_is_released(tmp_path: Path) -> None:
    """The claim of a run is also an flock on DIR/claims/<hash> (held while it runs), so a second
    process keeps out of it even where SQLite's locking fails; a released claim is taken normally."""
    from rich.console import Console

    from synthpre.experiments.execute import execute_run
    from synthpre.experiments.runner import CLAIMS_DIR, prepare_study, run_study, study_status
    from synthpre.train.runlock import RunLock

    spec = tmp_path / "study.yaml"
    spec.write_text(
        "name: claims\nmodel: t5-tiny\nvocab: '3:127'\nbaselines: {random_init: true}\n"
        "downstream:\n  tasks: [smiles_canonicalize]\n  tokenizer: chars\n  lrs: [0.01]\n"
        "  train: {max_steps: 2, eval_every: 2, batch_size: 8, val_size: 8, eval_decode: 0,"
        " max_decode_len: 4, progress: false}\n  test_examples: 2\n"
    )
    out = tmp_path / "study"
    _, runs = prepare_study(spec, out)
    (run,) = runs
    other = RunLock(out / CLAIMS_DIR / run.hash)  # another process's claim (flock: per open file)
    other.acquire()

    def must_not_run(*args):
        raise AssertionError("a claimed run was executed twice")

    report = run_study(out, runs, must_not_run, console=Console(quiet=True))
    assert report.skipped == [run.hash] and report.executed == []
    assert study_status(out)[0]["pending"] == 1
    other.release()
    report = run_study(out, runs, execute_run, console=Console(quiet=True))
    assert report.executed == [run.hash] and study_status(out)[0]["done"] == 1
    assert not (out / CLAIMS_DIR).exists()  # released claims leave nothing behind
