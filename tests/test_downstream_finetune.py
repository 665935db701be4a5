"""Fine-tuning a tiny T5 with the engine on every task's fixtures and both offline tasks; evaluation,
selection rules, learning-rate sweeps, init from checkpoints, and the command line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.evaluate import evaluate_run
from synthpre.downstream.finetune import choose_tokenizer, finetune, initial_model
from synthpre.downstream.registry import get_downstream_task
from synthpre.errors import UserError
from synthpre.tokenizer import CharTokenizer, train_sentencepiece
from synthpre.train.selection import SelectionRule

FIXTURES = Path(__file__).parent / "fixtures" / "downstream"
FIXTURE_DIRS = {
    "cnndm_10k": "cnndm", "mtop": "mtop", "webqsp": "webqsp", "squad": "squad",
    "code_translation": "code_translation", "retrosynthesis": "retrosynthesis",
}  # fmt: skip
TINY = {"model": "t5-tiny", "batch_size": 8, "max_input_len": 64, "max_target_len": 48, "max_decode_len": 12,
        "progress": False}  # fmt: skip


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", list(FIXTURE_DIRS))
def test_fine_tune_and_evaluate_every_fixture_task(name: str, tmp_path: Path) -> None:
    """SentencePiece trained on the fixture's text (no --tokenizer), 4 steps, then test-set decoding."""
    run = tmp_path / name
    config = FinetuneConfig(task=name, out_dir=str(run), data=str(FIXTURES / FIXTURE_DIRS[name]), max_steps=4,
                            eval_every=2, eval_decode=1, **TINY)  # fmt: skip
    results = finetune(config)
    task = get_downstream_task(name)
    assert results["rule"] == task.defaults.selection
    assert (run / results["selected"]["checkpoint"] / "model" / "model.safetensors").is_file()
    assert (run / "tokenizer" / "spiece.model").is_file()
    assert (
        f"val_{task.headline_metric}" in results["selected"]
        and 0 <= results["selected"]["val_token_accuracy"] <= 1
    )
    metrics = evaluate_run(run, "test", progress=False)
    records = _read_jsonl(run / "eval" / "test" / "predictions.jsonl")
    examples = task.examples(FIXTURES / FIXTURE_DIRS[name], "test")
    assert [r["id"] for r in records] == [e.id for e in examples]
    assert json.loads((run / "eval" / "test" / "metrics.json").read_text()) == metrics
    assert task.headline_metric in metrics


@pytest.fixture(scope="module")
def smiles_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small but real run on the offline SMILES task: 40 steps of a tiny model on 256 examples."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("smiles") / "run"
    finetune(FinetuneConfig(task="smiles_canonicalize", out_dir=str(run), tokenizer="chars", train_size=256,
                            val_size=32, max_steps=40, eval_every=20, eval_decode=8, learning_rate=1e-2,
                            **{**TINY, "max_decode_len": 64, "max_target_len": 64}))  # fmt: skip
    return run


def test_offline_smiles_task_learns(smiles_run: Path) -> None:
    results = json.loads((smiles_run / "results.json").read_text())
    evals = [r for r in _read_jsonl(smiles_run / "metrics.jsonl") if r["split"] == "val"]
    assert [r["step"] for r in evals] == [20, 40]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] and evals[-1]["val_token_accuracy"] > 0.3
    assert results["selected"]["val_token_accuracy"] == max(r["val_token_accuracy"] for r in evals)
    tokenizer = CharTokenizer.load(smiles_run / "tokenizer")
    assert tokenizer.FIRST_ID == 3 and "c" in tokenizer.alphabet and tokenizer.vocab_size < 60


def test_evaluate_with_beams_and_rescoring(smiles_run: Path, tmp_path: Path) -> None:
    metrics = evaluate_run(smiles_run, "validation", beams=2, batch_size=64, progress=False)
    assert metrics["num_examples"] == 500 and {"em", "canonical_top1", "canonical_top2"} <= set(metrics)
    assert metrics["canonical_top2"] >= metrics["canonical_top1"]
    predictions = smiles_run / "eval" / "validation-beam2" / "predictions.jsonl"
    records = _read_jsonl(predictions)
    assert all(len(r["candidates"]) == 2 and r["candidates"][0] == r["prediction"] for r in records)
    rescored = evaluate_run(smiles_run, "validation", predictions=predictions, progress=False)
    assert rescored["em"] == metrics["em"]
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_text("".join(json.dumps(r) + "\n" for r in records[1:]))
    with pytest.raises(UserError, match="499 predictions for 500 references"):
        evaluate_run(smiles_run, "validation", predictions=shifted, progress=False)
    swapped = [records[1], records[0], *records[2:]]
    shifted.write_text("".join(json.dumps(r) + "\n" for r in swapped))
    with pytest.raises(UserError, match="not aligned"):
        evaluate_run(smiles_run, "validation", predictions=shifted, progress=False)


def test_init_from_a_run_full_and_statistics(smiles_run: Path, tmp_path: Path) -> None:
    from synthpre.model import load_model

    source = load_model(smiles_run / "checkpoints" / "step_40" / "model")
    tokenizer = CharTokenizer.load(smiles_run / "tokenizer")
    base = {
        "task": "smiles_canonicalize",
        "out_dir": str(tmp_path / "x"),
        "init_from": str(smiles_run),
        **TINY,
    }
    full = initial_model(FinetuneConfig(**base), tokenizer)
    assert all(
        torch.equal(a, b)
        for a, b in zip(full.state_dict().values(), source.state_dict().values(), strict=True)
    )
    stats = initial_model(FinetuneConfig(**base, init_scheme="per_param_mean_sd", seed=1), tokenizer)
    name = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert not torch.equal(stats.state_dict()[name], source.state_dict()[name])
    assert stats.state_dict()[name].std().item() == pytest.approx(
        source.state_dict()[name].std().item(), rel=0.1
    )


def test_init_from_a_hugging_face_folder_uses_its_tokenizer(tmp_path: Path) -> None:
    """The "Pre-trained T5" rows: any local HF T5 folder (weights + tokenizer) is a starting point."""
    from synthpre.model import build_model, save_checkpoint

    folder = tmp_path / "hf-t5"
    texts = [
        e.input + "\n" + e.target for e in get_downstream_task("mtop").examples(FIXTURES / "mtop", "train")
    ]
    tokenizer = train_sentencepiece(texts, tmp_path / "tok", vocab_size=100)
    save_checkpoint(build_model("t5-tiny", vocab_size=-(-tokenizer.vocab_size // 8) * 8, seed=3), folder)
    tokenizer.save(folder)
    config = FinetuneConfig(task="mtop", out_dir=str(tmp_path / "run"), data=str(FIXTURES / "mtop"),
                            init_from=str(folder), max_steps=2, eval_every=2, **TINY)  # fmt: skip
    chosen = choose_tokenizer(config, [])
    assert chosen.encode("call mom") == tokenizer.encode("call mom")
    results = finetune(config)
    assert results["init_from"] == str(folder) and results["init_scheme"] == "full"


def test_offline_pycode_task_and_lr_sweep(tmp_path: Path) -> None:
    run = tmp_path / "sweep"
    results = finetune(FinetuneConfig(task="pycode_summarize", out_dir=str(run), lr_sweep=[1e-2, 1e-3],
                                      train_size=64, val_size=16, max_steps=2, eval_every=2, eval_decode=4,
                                      **TINY))  # fmt: skip
    assert [s["run"] for s in results["sweep"]] == ["lr_0.01", "lr_0.001"]
    best = max(results["sweep"], key=lambda s: s["selected"]["val_token_accuracy"])
    assert results["run"] == best["run"] and "val_rouge1" in results["selected"]
    assert json.loads((run / "results.json").read_text()) == json.loads(json.dumps(results))
    metrics = evaluate_run(run, "test", progress=False)
    assert {"rouge1", "em"} <= set(metrics) and (run / "eval" / "test" / "predictions.jsonl").is_file()


def test_selection_rules_of_app_b() -> None:
    evals = [
        {
            "step": s,
            "checkpoint": f"checkpoints/step_{s}",
            "val_token_accuracy": acc,
            "val_f1": f1,
            "val_rouge1": r,
        }
        for s, acc, f1, r in [(10_000, 0.5, 30.0, 20.0), (50_000, 0.7, 20.0, 25.0), (60_000, 0.6, 40.0, 30.0)]
    ]

    def select(task: str, records: list[dict]) -> dict:
        """The engine's selection (best.json) under the task's App. B settings."""
        settings = get_downstream_task(task).selection
        rule = SelectionRule(
            settings["selection_metric"], settings["selection"], step=settings["selection_step"]
        )
        return rule.select(records)

    assert select("mtop", evals)["step"] == 50_000  # max val token accuracy
    assert select("squad", evals)["step"] == 60_000  # best val F1
    assert select("cnndm_10k", evals)["step"] == 50_000  # step 50K
    assert select("cnndm_10k", evals[:1])["step"] == 10_000  # not reached: last


runner = CliRunner()


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    smiles = ["finetune", "--task", "smiles_canonicalize", "--out", str(out)]
    cases = [
        (["finetune", "--task", "squad", "--out", str(out)], "(--data DIR)"),
        (["finetune", "--task", "mtop", "--out", str(out), "--data", str(tmp_path)], "none of its layouts"),
        (["finetune", "--task", "smiles_canonicalize", "--out", str(out), "--tokenizer", str(tmp_path)],
         "no tokenizer.json"),
        (["finetune", "--task", "smiles_canonicalize", "--out", str(out), "--lr-sweep", "1e-2,x"],
         "comma-separated"),
        (["finetune", "--task", "smiles_canonicalize", "--out", str(out), "--max-steps", "0"], "max-steps"),
        ([*smiles, "--init-scheme", "per_param_mean_sd"], "needs init_from (--init-from"),
        ([*smiles, "--init-from", str(tmp_path / "none")], "does not exist"),
        ([*smiles, "--init-from", str(tmp_path)], "not a model folder"),
        (["evaluate", str(tmp_path)], "no results.json"),
        (["tokenizer", "train", "--task", "webqsp", "--out", str(out)], "(--data DIR)"),
    ]  # fmt: skip
    for args, message in cases:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, UserError), (args, result.output)
        assert message in str(result.exception), (args, str(result.exception))
        assert not out.exists()


def test_cli_tokenizer_train_and_finetune(tmp_path: Path) -> None:
    tok = tmp_path / "tok"
    train_args = ["tokenizer", "train", "--task", "code_translation", "--out", str(tok),
                  "--data", str(FIXTURES / "code_translation")]  # fmt: skip
    result = runner.invoke(app, [*train_args, "--vocab-size", "200"])
    assert result.exit_code == 0, result.output
    assert (tok / "spiece.model").is_file() and (tok / "tokenizer.json").is_file()
    again = runner.invoke(app, train_args)
    assert isinstance(again.exception, UserError) and "not empty" in str(again.exception)
    run = tmp_path / "run"
    args = ["finetune", "--task", "code_translation", "--data", str(FIXTURES / "code_translation"),
            "--tokenizer", str(tok), "--model", "t5-tiny", "--max-steps", "2", "--eval-every", "2",
            "--batch-size", "4", "--max-input-len", "48", "--max-target-len", "48", "--max-decode-len", "8",
            "--no-progress", "--out", str(run)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "selected checkpoints/step_2" in result.output
    evaluated = runner.invoke(app, ["evaluate", str(run), "--split", "test", "--beams", "2", "--no-progress"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((run / "eval" / "test-beam2" / "metrics.json").read_text())
    assert metrics["num_examples"] == 1 and metrics["beams"] == 2 and '"codexglue_bleu"' in evaluated.output
    assert len(_read_jsonl(run / "eval" / "test-beam2" / "predictions.jsonl")) == 1
    rerun = runner.invoke(app, args)  # the folder holds a run: refuse, change nothing
    assert isinstance(rerun.exception, UserError) and "--resume" in str(rerun.exception)
