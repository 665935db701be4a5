"""Studies really run (tiny T5, the real engine, a few steps): interrupted and resumed without redoing
finished runs; shards that together cover the study exactly once; failures recorded, not fatal, and the
fine-tuning runs of a failed pre-training run blocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from synthpre.experiments.execute import execute_run, launched_executor
from synthpre.experiments.runner import prepare_study, run_study, study_status
from synthpre.experiments.store import Store
from tiny_runs import tiny_study

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(tmp_path: Path, schemes: str = "[full]", steps: int = 8) -> Path:
    return tiny_study(tmp_path, schemes, steps)


def _runs_by_kind(folder: Path) -> dict[str, list[dict]]:
    _, rows = study_status(folder)
    return {kind: [r for r in rows if r["kind"] == kind] for kind in ("pretrain", "finetune")}


def test_interrupted_study_resumes_without_redoing_finished_runs(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, steps=40), tmp_path / "study"
    command = [sys.executable, "-c", "from synthpre.cli import main; main()", "study", "run", str(spec),
               "--out", str(out), "--threads", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # kill it (SIGKILL: no clean-up) while the fine-tuning run trains
            if (out / "results.sqlite").is_file():
                runs = _runs_by_kind(out)
                if runs["finetune"] and runs["finetune"][0]["status"] == "running":
                    metrics = Path(runs["finetune"][0]["run_dir"] or "/nonexistent") / "metrics.jsonl"
                    if metrics.is_file() and metrics.read_text():
                        break
            assert process.poll() is None, "the study ended before it could be interrupted"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    counts, _ = study_status(out)
    assert counts["done"] == 1 and counts["interrupted"] == 1
    pretrain_before = _runs_by_kind(out)["pretrain"][0]

    _, planned = prepare_study(spec, out)  # the same spec again: the same run identities
    report = run_study(out, planned, execute_run, console=Console(quiet=True))
    runs = _runs_by_kind(out)
    assert report.executed == [runs["finetune"][0]["hash"]], (report, runs["finetune"][0]["error"])
    assert (
        runs["pretrain"][0]["attempts"] == 1
        and runs["pretrain"][0]["finished"] == pretrain_before["finished"]
    )
    assert runs["finetune"][0]["attempts"] == 2 and runs["finetune"][0]["status"] == "done"
    store = Store(out)
    assert {r["metric"] for r in store.results()} >= {"val_token_accuracy", "val_loss", "test_em"}
    store.close()


def test_shards_cover_the_study_exactly_once(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, schemes="[full, per_param_mean_sd]"), tmp_path / "study"
    _, runs = prepare_study(spec, out)
    assert [r.kind for r in runs] == ["pretrain", "finetune", "finetune"]
    quiet = Console(quiet=True)
    # shard 1/2 holds only the Full Init fine-tuning run: it runs the pre-training run it needs itself
    second = run_study(out, runs, execute_run, (1, 2), quiet)
    assert second.executed == [runs[0].hash, runs[1].hash]
    first = run_study(out, runs, execute_run, (0, 2), quiet)
    assert first.executed == [runs[2].hash] and first.skipped == [runs[0].hash]
    _, rows = study_status(out)
    assert sorted(r["hash"] for r in rows) == sorted(r.hash for r in runs)
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in rows)
    assert {r["shard"] for r in rows} == {"0/2", "1/2"}
    again = run_study(out, runs, execute_run, (0, 1), quiet)  # everything done: nothing runs
    assert again.executed == [] and len(again.skipped) == 3


def test_a_failed_run_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, schemes="[full, per_param_mean_sd]"), tmp_path / "study"
    _, runs = prepare_study(spec, out)

    def broken_pretraining(run, run_dir, deps, resume):
        if run.kind == "pretrain":
            raise RuntimeError("disk full")
        return execute_run(run, run_dir, deps, resume)

    report = run_study(out, runs, broken_pretraining, console=Console(quiet=True))
    assert report.failed == [runs[0].hash] and report.blocked == [runs[1].hash, runs[2].hash]
    counts, rows = study_status(out)
    assert (counts["failed"], counts["blocked"]) == (1, 2)  # fine-tuning waits for its pre-training
    assert "disk full" in rows[0]["error"]
    assert all(row["detail"] == f"pre-training run {runs[0].hash} failed" for row in rows[1:])


def test_a_run_owned_by_a_live_process_is_not_taken(tmp_path: Path) -> None:
    _, runs = prepare_study(_spec(tmp_path), tmp_path / "study")
    store = Store(tmp_path / "study")
    assert store.claim(runs[0].hash, "0/1") == "claimed"
    other = Store(tmp_path / "study")
    assert other.claim(runs[0].hash, "0/1") == "busy"  # the owner (this process) is alive
    store.release(runs[0].hash, "interrupted")
    assert other.claim(runs[0].hash, "0/1") == "claimed"
    store.close()
    other.close()


def test_runs_launched_in_their_own_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--launcher python`` (``accelerate launch ...`` on GPUs): the run executes in a child process."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _, runs = prepare_study(_spec(tmp_path), tmp_path / "study")
    report = run_study(
        tmp_path / "study", runs, launched_executor(sys.executable), (0, 2), Console(quiet=True)
    )
    assert report.executed == [runs[0].hash]  # shard 0/2 of [pre-training, fine-tuning]
    store = Store(tmp_path / "study")
    row = store.run(runs[0].hash)
    assert row["status"] == "done" and Path(row["checkpoint"], "model", "model.safetensors").is_file()
    assert {r["metric"] for r in store.results("pretrain")} >= {"val_token_accuracy", "val_loss"}
    assert store.curves(runs[0].hash, "val_token_accuracy")[-1][0] == 12
    store.close()
