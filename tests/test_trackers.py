"""Trackers through accelerate's tracker classes: TensorBoard really written (and purged on resume), a
missing wandb/mlflow a message that names the extra, and a study's tracker no part of its runs' hashes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from synthpre.downstream.config import FinetuneConfig
from synthpre.errors import UserError
from synthpre.experiments.plan import build_plan
from synthpre.experiments.spec import parse_spec
from synthpre.train import train
from tiny_runs import run_cli, tiny_run

PRETRAIN = ["pretrain", "--task", "identity", "--model", "t5-tiny", "--vocab", "3:12", "--min-len", "1",
            "--max-len", "6", "--batch-size", "4", "--max-input-len", "16", "--max-target-len", "16",
            "--eval-every", "2", "--save-every", "2", "--num-val-examples", "8", "--no-progress",
            "--threads", "1", "--max-steps", "2"]  # fmt: skip
STUDY = """\
name: trackers
model: t5-tiny
vocab: "3:127"
pretraining: {tasks: {Set: {task: set}}, train: {max_steps: 12}}
downstream: {tasks: [smiles_canonicalize], tokenizer: chars, lrs: [0.01], train: {max_steps: 8}}
"""


def _scalars(run_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_events_through_the_tracker_and_purged_on_resume(tmp_path: Path, one_thread) -> None:
    config, model, source = tiny_run(tmp_path, max_steps=4, log_every=2)
    train(config, model, source, source.validation())
    assert _scalars(tmp_path / "run")["train/loss"] == [2, 4]
    assert _scalars(tmp_path / "run")["val/val_token_accuracy"] == [2, 4]
    config, model, source = tiny_run(tmp_path, max_steps=6, log_every=2)
    train(config, model, source, source.validation(), resume=True)
    assert _scalars(tmp_path / "run")["train/loss"] == [2, 4, 6]


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_a_missing_tracker_names_its_extra(tmp_path: Path, capsys, tracker: str) -> None:
    if importlib.util.find_spec(tracker) is not None:
        pytest.skip(f"{tracker} is installed")
    out = tmp_path / "run"
    code, err = run_cli([*PRETRAIN, "--out", str(out), "--log-with", tracker], capsys)
    assert code == 2 and f"pip install 'synthpre[{tracker}]'" in err and "--log-with" in err
    assert not out.exists()


@pytest.mark.parametrize(("tracker", "folder"), [("wandb", "wandb"), ("mlflow", "mlruns")])
def test_an_installed_tracker_logs_offline_into_the_run_folder(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, tracker: str, folder: str
) -> None:
    pytest.importorskip(tracker)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run"
    assert run_cli([*PRETRAIN, "--out", str(out), "--log-with", tracker], capsys)[0] == 0
    assert (out / folder).is_dir() and (out / "tb").is_dir()


def test_fine_tuning_passes_its_tracker_to_the_engine() -> None:
    from synthpre.downstream.finetune import train_config

    config = FinetuneConfig(task="smiles_canonicalize", out_dir="x", log_with="mlflow").resolved()
    assert train_config(config, 8).log_with == "mlflow"


def test_a_study_tracker_is_no_part_of_the_runs_identity() -> None:
    plain, tracked = build_plan(parse_spec(STUDY)), build_plan(parse_spec("log_with: wandb\n" + STUDY))
    assert [run.hash for run in tracked] == [run.hash for run in plain]
    assert {run.config["log_with"] for run in tracked} == {"wandb"}
    with pytest.raises(UserError, match="`log_with:` at the top of the spec"):
        parse_spec(STUDY.replace("max_steps: 8}", "max_steps: 8, log_with: wandb}"))
