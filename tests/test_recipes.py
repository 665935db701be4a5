"""One path from a config to a run: the command line and a study spec with the same settings train the
same model (same resolved config, same shapes, same weights), and test decoding inside a study is
``synthpre evaluate``'s (the same predictions file, byte for byte); best.json and results.json name
the same checkpoint, also under App. B's fixed-step rule."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.downstream import registry
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.finetune import finetune
from synthpre.experiments.execute import execute_run
from synthpre.experiments.plan import build_plan
from synthpre.experiments.spec import parse_spec
from synthpre.train.selection import FIXED_STEP

runner = CliRunner()

PRETRAIN = {"max_steps": 1, "batch_size": 2, "max_input_len": 16, "max_target_len": 16, "eval_every": 1,
            "num_val_examples": 2, "progress": False}  # fmt: skip
FINETUNE = {"max_steps": 2, "eval_every": 2, "batch_size": 4, "val_size": 4, "max_decode_len": 8,
            "progress": False}  # fmt: skip
TEST_EXAMPLES = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _flags(settings: dict) -> list[str]:
    args = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        args += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return args


def _study(model: str, vocab: str | None) -> list:
    vocab_line = f'vocab: "{vocab}"\n' if vocab else ""
    text = (
        f"name: same\nmodel: {model}\n{vocab_line}"
        f"pretraining:\n  train: {json.dumps(PRETRAIN)}\n"
        "  tasks:\n    Set: {task: set, params: {min_len: 3, max_len: 6}}\n"
        "baselines: {random_init: true}\n"
        "downstream:\n  tasks: [smiles_canonicalize]\n  tokenizer: chars\n  lrs: [0.01]\n"
        f"  train: {json.dumps(FINETUNE)}\n  test_examples: {TEST_EXAMPLES}\n"
    )
    return build_plan(parse_spec(text, "same.yaml"))


def _config(run: Path) -> dict:
    """config.json without what names the folder or the study."""
    config = json.loads((run / "config.json").read_text())
    config.pop("study_run", None)
    config["train"].pop("out_dir")
    if "finetune" in config:
        config["finetune"].pop("out_dir")
    return config


def _weights(run: Path) -> dict[str, torch.Tensor]:
    best = json.loads((run / "best.json").read_text())
    return load_file(run / best["checkpoint"] / "model" / "model.safetensors")


def _assert_same_run(cli_run: Path, study_run: Path) -> dict[str, torch.Tensor]:
    assert _config(cli_run) == _config(study_run)
    cli_weights, study_weights = _weights(cli_run), _weights(study_run)
    assert {k: v.shape for k, v in cli_weights.items()} == {k: v.shape for k, v in study_weights.items()}
    assert all(torch.equal(cli_weights[k], study_weights[k]) for k in cli_weights)
    return cli_weights


@pytest.mark.parametrize(("model", "vocab", "rows"), [("t5-small", "3:127", 32128), ("t5-tiny", None, 32104)])
def test_cli_and_study_pretrain_the_same_model(model: str, vocab: str | None, rows: int, tmp_path: Path):
    """The vocabulary rule once: t5-small keeps T5's 32,128 rows with --vocab 3:127; t5-tiny without
    --vocab holds T5's whole token space (32,100 ids, to /8)."""
    pretrain_run = next(run for run in _study(model, vocab) if run.kind == "pretrain")
    execute_run(pretrain_run, tmp_path / "study", {}, resume=False)
    args = ["pretrain", "--task", "set", "--model", model, "--min-len", "3", "--max-len", "6",
            "--out", str(tmp_path / "cli"), *_flags(PRETRAIN)]  # fmt: skip
    args += ["--vocab", vocab] if vocab else []
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    weights = _assert_same_run(tmp_path / "cli", tmp_path / "study")
    assert weights["shared.weight"].shape[0] == rows


@pytest.mark.parametrize(("model", "vocab"), [("t5-small", "3:127"), ("t5-tiny", None)])
def test_cli_and_study_finetune_and_evaluate_the_same(model: str, vocab: str | None, tmp_path: Path):
    """Random Init fine-tuning through `synthpre finetune` and through a study, then test decoding:
    the study's goes through `synthpre evaluate`'s function, so the predictions are the same bytes."""
    finetune_run = next(run for run in _study(model, vocab) if run.kind == "finetune")
    outcome = execute_run(finetune_run, tmp_path / "study", {}, resume=False)
    args = ["finetune", "--task", "smiles_canonicalize", "--model", model, "--tokenizer", "chars",
            "--lr", "0.01", "--out", str(tmp_path / "cli"), *_flags(FINETUNE),
            *(["--vocab", vocab] if vocab else [])]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    weights = _assert_same_run(tmp_path / "cli", tmp_path / "study")
    if vocab:  # Random Init has the shape of the arms pre-trained on the same token space
        assert weights["shared.weight"].shape[0] == 32128
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "cli"),
            "--split",
            "test",
            "--limit",
            str(TEST_EXAMPLES),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    predictions = [
        (tmp_path / run / "eval" / "test" / "predictions.jsonl").read_bytes() for run in ("cli", "study")
    ]
    assert predictions[0] == predictions[1]
    assert len(predictions[0].splitlines()) == TEST_EXAMPLES
    metrics = json.loads((tmp_path / "cli" / "eval" / "test" / "metrics.json").read_text())
    assert outcome.metrics["test_em"] == metrics["em"]


def test_best_json_and_results_json_name_the_same_fixed_step(tmp_path: Path, monkeypatch) -> None:
    """App. B's fixed-step rule (CNNDM-10K's) on a tiny task: best.json and results.json both name the
    checkpoint of the fixed step, although a later checkpoint has a higher validation accuracy."""
    smiles = registry.DOWNSTREAM_TASKS["smiles_canonicalize"]
    fixed = dataclasses.replace(
        smiles, defaults=dataclasses.replace(smiles.defaults, selection=FIXED_STEP, selection_step=2)
    )
    monkeypatch.setitem(registry.DOWNSTREAM_TASKS, "smiles_canonicalize", fixed)
    run = tmp_path / "run"
    config = FinetuneConfig(task="smiles_canonicalize", out_dir=str(run), model="t5-tiny", tokenizer="chars",
                            max_steps=8, eval_every=2, batch_size=8, val_size=8, max_decode_len=8,
                            eval_decode=0, progress=False)  # fmt: skip
    results = finetune(config)
    best = json.loads((run / "best.json").read_text())
    assert best["step"] == results["selected"]["step"] == 2
    assert results["selected"]["checkpoint"] == best["checkpoint"]
    state = json.loads((run / "checkpoints" / "step_8" / "trainer_state.json").read_text())
    accuracies = {e["step"]: e["val_token_accuracy"] for e in state["evals"]}
    assert max(accuracies.values()) > accuracies[2]  # a later checkpoint was better: the rule, not the max
