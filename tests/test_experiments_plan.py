"""`synthpre study plan` / `study run --dry-run`: the runs of a study, what is done in --out, and an estimate
from a real probe of each run shape (its accuracy is not asserted: its presence and the run list are)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.errors import UserError
from synthpre.experiments.estimate import probe_shape, run_steps, shape_of
from synthpre.experiments.plan import build_plan
from synthpre.experiments.runner import prepare_study
from synthpre.experiments.spec import load_spec, resolve_spec
from synthpre.experiments.store import Outcome, Store

runner = CliRunner()
ARMS = ["Random Init", "Set Full Init", "Set Per Param Mean/SD", "Identity Full Init",
        "Identity Per Param Mean/SD"]  # fmt: skip


def _run_lines(output: str) -> list[list[str]]:
    """The rows of the run listing: ``#  kind  task  init  seed  steps  status`` (cells 2+ spaces apart)."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if re.match(r"\s+\d+\s", line)]
    return [row for row in rows if row[1] in ("pretrain", "finetune")]


@pytest.mark.usefixtures("one_thread")
def test_plan_lists_the_runs_of_tiny_and_prints_an_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the probes' child processes
    result = runner.invoke(app, ["study", "plan", "tiny", "--probe-steps", "2"])
    assert result.exit_code == 0, result.output
    rows = _run_lines(result.output)
    assert [row[1] for row in rows] == ["pretrain"] * 2 + ["finetune"] * 15
    assert [row[2] for row in rows[:2]] == ["Set (set)", "Identity (identity)"]
    assert [row[5] for row in rows[:2]] == ["2500", "2500"]  # one fixed budget for both tasks
    finetune = {(row[3], row[4]) for row in rows[2:]}
    assert finetune == {(arm, seed) for arm in ARMS for seed in ("0", "1", "2")}
    assert all(
        row[2] == "smiles_canonicalize" and row[5] == "500" and row[6] == "pending" for row in rows[2:]
    )
    assert "Pre-training rule: every pre-training task trains 2500 steps" in result.output
    assert "Probing 3 run shape(s), 2 timed steps each:" in result.output
    assert re.search(r"Estimate: ≈ \d+(\.\d)? min on this machine for the 17 runs to do\.", result.output)


def test_plan_and_dry_run_show_what_is_done_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "study"
    _, runs = prepare_study(resolve_spec("tiny"), out)
    store = Store(out)
    for run in runs[:2]:  # the two pre-training runs finished (recorded as a study run records them)
        store.claim(run.hash, "0/1")
        store.finish(run.hash, Outcome({"val_token_accuracy": 80.0}, 2500, "fixed step", "ckpt"), 1.0,
                     {"synthpre_version": "0", "git_commit": "x"})  # fmt: skip
    store.close()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    plan = runner.invoke(app, ["study", "plan", "tiny", "--out", str(out), "--probe-steps", "0"])
    assert plan.exit_code == 0, plan.output
    assert f"in {out}: 2 done, 15 to run" in plan.output
    assert [row[-1] for row in _run_lines(plan.output)] == ["done"] * 2 + ["pending"] * 15
    assert "No estimate (--probe-steps 0)." in plan.output
    dry = runner.invoke(app, ["study", "run", "tiny", "--out", str(out), "--dry-run", "--probe-steps", "0"])
    assert dry.exit_code == 0 and dry.output == plan.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    fresh = tmp_path / "nothing-yet"
    fresh_dry = runner.invoke(
        app, ["study", "run", "tiny", "--out", str(fresh), "--dry-run", "--probe-steps", "0"]
    )
    assert fresh_dry.exit_code == 0 and "17 to run" in fresh_dry.output and not fresh.exists()


def test_bad_probe_steps_is_a_user_error() -> None:
    result = runner.invoke(app, ["study", "plan", "tiny", "--probe-steps", "1"])
    assert isinstance(result.exception, UserError) and "--probe-steps 1" in str(result.exception)


def test_run_shapes_and_steps() -> None:
    """Seeds, learning rates and init arms share a shape; pre-training tasks do not; the steps are those
    the run builds (threshold pre-training: at most its cap)."""
    tiny = build_plan(load_spec(resolve_spec("tiny")))
    assert len({shape_of(run) for run in tiny}) == 3
    assert run_steps(tiny[0]).text() == "2500" and run_steps(tiny[0]).evals == 10
    assert run_steps(tiny[-1]).text() == "500" and run_steps(tiny[-1]).evals == 2
    paper = build_plan(load_spec(resolve_spec("paper-table1")))
    dyck = next(run for run in paper if run.labels.get("pretrain_task") == "Dyck")
    assert run_steps(dyck).text() == "<=300000"


def test_a_probe_that_cannot_run_says_why() -> None:
    """paper-table2's fine-tuning reads local files that are not here: no estimate, and the reason."""
    paper = build_plan(load_spec(resolve_spec("paper-table2")))
    cnndm = next(run for run in paper if run.kind == "finetune")
    probe = probe_shape(cnndm, steps=2)
    assert probe.error is not None and "data" in probe.error and not probe.timed_out


def test_a_probe_over_its_time_limit_is_stopped_and_said() -> None:
    tiny = build_plan(load_spec(resolve_spec("tiny")))
    probe = probe_shape(tiny[0], steps=2, timeout_s=0.5)
    assert probe.timed_out and "its probe took over 0.5 s here (a GPU-scale run?)" in (probe.error or "")
