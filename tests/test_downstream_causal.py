"""Downstream tasks on decoder-only models: fine-tuning (prompt ``input EOS``, loss on the target) and
evaluation end to end, left-padded batched decoding equal to decoding each prompt alone, ``--init-from`` a
causal checkpoint with a statistics scheme, and lengths the model cannot hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.tiny_runs import run_cli
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.decoding import DecodeOptions, decode
from synthpre.downstream.finetune import initial_model
from synthpre.downstream.registry import get_downstream_task
from synthpre.model import build_model, load_model, named_weights
from synthpre.tokenizer import CharTokenizer

SMILES = ["finetune", "--task", "smiles_canonicalize", "--tokenizer", "chars", "--train-size", "64",
          "--val-size", "8", "--batch-size", "8", "--max-steps", "4", "--eval-every", "2",
          "--eval-decode", "4", "--max-decode-len", "16", "--no-progress"]  # fmt: skip
TEST_EXAMPLES = 12


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test on one thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4-step SMILES fine-tuning run of gpt2-tiny and of llama-tiny (characters as tokens)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("causal")
    found = {model: folder / model for model in ("gpt2-tiny", "llama-tiny")}
    for model, run in found.items():
        result = CliRunner().invoke(app, [*SMILES, "--model", model, "--out", str(run)])
        assert result.exit_code == 0, result.output
    torch.set_num_threads(threads)
    return found


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
def test_fine_tune_and_evaluate_a_decoder_only_model(model: str, runs: dict[str, Path], capsys) -> None:
    run = runs[model]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["model_type"] == model.removesuffix("-tiny")
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["split"] == "val"]
    assert [e["step"] for e in evals] == [2, 4]  # the generation hook decoded at every evaluation
    assert all({"val_em", "val_canonical_top1", "val_valid_smiles"} <= set(e) for e in evals)
    args = ["evaluate", str(run), "--split", "test", "--limit", str(TEST_EXAMPLES), "--no-progress"]
    code, err = run_cli(args, capsys)
    assert code == 0, err
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["num_examples"] == TEST_EXAMPLES
    assert {"em", "canonical_top1", "valid_smiles"} <= set(metrics)
    records = [
        json.loads(line) for line in (run / "eval" / "test" / "predictions.jsonl").read_text().splitlines()
    ]
    test = get_downstream_task("smiles_canonicalize").examples(None, "test")[:TEST_EXAMPLES]
    assert [r["id"] for r in records] == [e.id for e in test]
    assert all(r["references"] == [e.target] for r, e in zip(records, test, strict=True))


@pytest.mark.parametrize("model", ["gpt2-tiny", "pythia-tiny", "llama-tiny"])
def test_a_batch_of_prompts_decodes_as_each_prompt_alone(model: str) -> None:
    """Left padding with an attention mask, and the positions transformers derives from it (GPT-2's
    absolute table; rotary Pythia and Llama): the batch changes nothing, greedy or beam search."""
    tokenizer = CharTokenizer("abcdefghijklmnopqrstuvwxyz ")
    texts = ["a", "hello world", "xyz", "the quick brown fox jumps over", "mm", "abcdefghijklmnopqrst"]
    network = build_model(model, vocab_size=32, seed=1)
    with torch.no_grad():  # sharper than a fresh model's near-uniform logits: no near ties
        for weight in network.parameters():
            if weight.dim() > 1:
                weight.mul_(5.0)
    for beams in (1, 3):
        options = DecodeOptions(max_input_len=24, max_decode_len=10, beams=beams, batch_size=len(texts))
        together = decode(network, tokenizer, texts, options)
        assert len({outputs[0] for outputs in together}) > 1  # not one degenerate output
        assert together == [decode(network, tokenizer, [text], options)[0] for text in texts], beams


def test_init_from_a_causal_checkpoint_with_a_statistics_scheme(runs: dict[str, Path], capsys) -> None:
    source = load_model(runs["gpt2-tiny"])
    tokenizer = CharTokenizer.load(runs["gpt2-tiny"] / "tokenizer")
    base = {
        "task": "smiles_canonicalize",
        "out_dir": "unused",
        "model": "gpt2-tiny",
        "init_from": str(runs["gpt2-tiny"]),
    }
    full = initial_model(FinetuneConfig(**base), tokenizer)
    assert all(
        torch.equal(a, b)
        for a, b in zip(full.state_dict().values(), source.state_dict().values(), strict=True)
    )
    drawn = named_weights(
        initial_model(FinetuneConfig(**base, init_scheme="per_param_mean_sd", seed=1), tokenizer)
    )
    name = "decoder/layers_0/mlp/wi/kernel"
    original = named_weights(source)[name]
    assert not torch.equal(drawn[name], original)
    assert drawn[name].std().item() == pytest.approx(original.std().item(), rel=0.1)
    run = runs["gpt2-tiny"].parent / "from-stats"
    args = [*SMILES, "--model", "gpt2-tiny", "--init-from", str(runs["gpt2-tiny"]), "--init-scheme",
            "per_param_mean_sd", "--max-steps", "2", "--out", str(run)]  # fmt: skip
    code, err = run_cli(args, capsys)
    assert code == 0, err
    assert json.loads((run / "results.json").read_text())["init_scheme"] == "per_param_mean_sd"


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (
            ["--max-input-len", "800", "--max-target-len", "300"],
            "max_input_len + max_target_len = 1100 is above",
        ),
        (
            ["--max-input-len", "96", "--max-decode-len", "1000"],
            "max_input_len + max_decode_len = 1096 is above",
        ),
    ],
)
def test_lengths_the_model_cannot_hold_exit_2_and_write_nothing(
    lengths: list[str], message: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    code, err = run_cli([*SMILES, "--model", "gpt2-tiny", *lengths, "--out", str(out)], capsys)
    assert code == 2 and message in err and "(1024)" in err, err
    assert not out.exists()
