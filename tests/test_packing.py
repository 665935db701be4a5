"""Sequence packing (``pack_length``, ``pack_causal``): a packed batch holds the unpacked batch's
(token, label) pairs, no label or attention crosses a document, positions restart with every document,
and the three decoder-only families compute the unpacked batch's logits and loss from it."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.masking_utils import create_causal_mask

from synthpre.data import stream
from synthpre.data.stream import LABEL_IGNORE, MixtureSource, collate_causal, pack_causal
from synthpre.errors import UserError
from synthpre.model import build_model, vocab_size_for
from synthpre.tasks import Examples, get_task
from synthpre.train import TrainConfig, train
from synthpre.train.engine import forward_logits
from synthpre.train.metrics import read_metrics
from tiny_runs import DEFAULTS, SPACE, run_cli, tiny_run

FAMILIES = ("gpt2-tiny", "pythia-tiny", "llama-tiny")
MAX_INPUT, MAX_TARGET = 10, 12
PACK_LENGTH = MAX_INPUT + MAX_TARGET + 3  # rows of up to 22 tokens


def examples(n: int = 11, seed: int = 0) -> Examples:
    """Inputs of 0..13 tokens (some empty, some truncated), targets of 1..15 (some truncated)."""
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(3, 250, rng.integers(0, 14)).tolist() for _ in range(n)]
    targets = [rng.integers(3, 250, rng.integers(1, 16)).tolist() for _ in range(n)]
    return Examples.from_lists(inputs, targets)


def batches(loss_on: str = "target") -> tuple[dict, dict, dict]:
    """(unpacked batch, packed batch, document of each packed token: example index + 1, 0 on padding).

    The documents come from packing example tags in place of the tokens, not from the positions."""
    unpacked = collate_causal(examples(), MAX_INPUT, MAX_TARGET, loss_on=loss_on)
    tags = torch.arange(1, len(unpacked["input_ids"]) + 1)[:, None].expand_as(unpacked["input_ids"])
    documents = pack_causal({**unpacked, "input_ids": tags}, PACK_LENGTH)["input_ids"]
    return unpacked, pack_causal(unpacked, PACK_LENGTH), documents


def where(documents: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of document ``k``'s tokens in the packed batch, in order."""
    rows, columns = torch.nonzero(documents == k + 1, as_tuple=True)
    assert len(set(rows.tolist())) == 1 and (columns.diff() == 1).all()  # whole, contiguous, one row
    return rows, columns


@pytest.mark.parametrize("loss_on", ["target", "all"])
def test_the_packed_batch_holds_each_document_whole_with_its_labels_and_positions_from_0(loss_on):
    unpacked, packed, documents = batches(loss_on)
    lengths = unpacked["attention_mask"].sum(1)
    assert set(packed) == {"input_ids", "labels", "position_ids"}
    assert packed["input_ids"].shape[1] == PACK_LENGTH
    assert len(packed["input_ids"]) < len(unpacked["input_ids"])  # packing saved rows
    for k, length in enumerate(lengths.tolist()):
        rows, columns = where(documents, k)
        assert len(columns) == length
        assert torch.equal(packed["input_ids"][rows, columns], unpacked["input_ids"][k, :length])
        assert torch.equal(packed["labels"][rows, columns], unpacked["labels"][k, :length])
        assert torch.equal(packed["position_ids"][rows, columns], torch.arange(length))
    padding = documents == 0
    assert (packed["labels"][padding] == LABEL_IGNORE).all() and (packed["position_ids"][padding] == 0).all()
    assert int((packed["labels"] != LABEL_IGNORE).sum()) == int((unpacked["labels"] != LABEL_IGNORE).sum())


def test_no_label_and_no_attention_crosses_a_document():
    _, packed, documents = batches()
    labels, ids = packed["labels"], packed["input_ids"]
    learned = labels != LABEL_IGNORE
    following = torch.cat([documents[:, 1:], torch.zeros_like(documents[:, :1])], 1)
    assert (following[learned] == documents[learned]).all()  # each label's token is in its own document
    assert torch.equal(labels[:, :-1][learned[:, :-1]], ids[:, 1:][learned[:, :-1]])
    # The mask that each family's forward pass builds from position_ids and no attention_mask:
    T = ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    same_document = documents[:, :, None] == documents[:, None, :]
    real = documents > 0
    for name in FAMILIES:
        config = build_model(name, vocab_size=256).config
        embeds = torch.zeros(*ids.shape, config.hidden_size)
        mask = create_causal_mask(config, embeds, None, None, position_ids=packed["position_ids"])[:, 0]
        assert mask.dtype == torch.bool and mask.shape == (len(ids), T, T)
        assert torch.equal(mask[real], (same_document & causal)[real])  # a document attends to itself
        assert not (mask & real[:, None, :])[~real].any()  # padding attends to no document


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("name", FAMILIES)
def test_a_packed_batch_computes_the_unpacked_logits_and_loss(name, attention, one_thread):
    unpacked, packed, documents = batches("all")
    model = build_model(name, vocab_size=256).eval()
    model.set_attn_implementation(attention)
    with torch.no_grad():  # the engine's forward pass
        plain = forward_logits(model, unpacked, causal=True)
        logits = forward_logits(model, packed, causal=True)
        no_resets = forward_logits(model, {"input_ids": packed["input_ids"]}, causal=True)  # no resets

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum").item()

    assert loss(logits, packed["labels"]) == pytest.approx(loss(plain, unpacked["labels"]), rel=1e-6)
    worst = worst_without = 0.0
    for k, length in enumerate(unpacked["attention_mask"].sum(1).tolist()):
        rows, columns = where(documents, k)
        worst = max(worst, (logits[rows, columns] - plain[k, :length]).abs().max().item())
        worst_without = max(worst_without, (no_resets[rows, columns] - plain[k, :length]).abs().max().item())
    assert worst < 1e-5
    assert worst_without > 1e-3  # the check has teeth: without masking and resets the logits differ


def run(tmp_path: Path, name: str, **settings) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """A 3-step gpt2-tiny run on the identity task (lengths 1..6): its metrics rows and final weights."""
    task = get_task("identity")
    source = MixtureSource([(task, task.params_cls(min_len=1, max_len=6))], SPACE, seed=0)
    model = build_model("gpt2-tiny", vocab_size=vocab_size_for(SPACE), seed=0)
    steps = {"max_steps": 3, "eval_every": 3, "save_every": 3, "batch_size": 8, "log_every": 1}
    config = TrainConfig(out_dir=str(tmp_path / name), **{**DEFAULTS, **steps}, dropout=0.0, **settings)
    train(config, model, source, source.validation())
    return read_metrics(tmp_path / name), {k: v.clone() for k, v in model.state_dict().items()}


def test_training_with_pack_length_is_deterministic_and_learns_what_unpacked_training_learns(
    tmp_path, monkeypatch, one_thread
):
    packed_rows_seen = []

    def pack_and_record(batch: dict, pack_length: int) -> dict:
        packed = pack_causal(batch, pack_length)
        packed_rows_seen.append(len(packed["input_ids"]))
        return packed

    monkeypatch.setattr(stream, "pack_causal", pack_and_record)
    packed_rows, packed_weights = run(tmp_path, "packed", pack_length=40)
    assert packed_rows_seen and max(packed_rows_seen) < 8  # the engine trained on packed batches of 8
    again_rows, again_weights = run(tmp_path, "again", pack_length=40)
    plain_rows, _ = run(tmp_path, "plain")
    assert all(torch.equal(packed_weights[k], again_weights[k]) for k in packed_weights)
    strip = ("elapsed_s", "cpu_s", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in packed_rows] == [
        {k: v for k, v in r.items() if k not in strip} for r in again_rows
    ]
    train_rows = [(p, q) for p, q in zip(packed_rows, plain_rows, strict=True) if p["split"] == "train"]
    assert len(train_rows) == 3
    for packed, plain in train_rows:  # same tokens counted; the same loss up to float rounding
        assert packed["tokens"] == plain["tokens"]
        assert packed["loss"] == pytest.approx(plain["loss"], rel=1e-4)
        assert packed["token_accuracy"] == pytest.approx(plain["token_accuracy"], abs=1e-6)
    assert packed_rows[-1]["val_loss"] == pytest.approx(plain_rows[-1]["val_loss"], rel=1e-4)


def test_pack_length_is_refused_for_encoder_decoders_below_the_longest_row_and_for_flash_attention(
    tmp_path, capsys
):
    config, model, source = tiny_run(tmp_path, pack_length=64)
    with pytest.raises(UserError, match="--pack-length"):
        train(config, model, source, source.validation())
    gpt2 = build_model("gpt2-tiny", vocab_size=vocab_size_for(SPACE))
    short = TrainConfig(out_dir=str(tmp_path / "short"), **{**DEFAULTS, "pack_length": 31})
    with pytest.raises(UserError, match=r"--pack-length.*max_target_len = 32.*--pack-length 32"):
        train(short, gpt2, source, source.validation())
    gpt2.config._attn_implementation = "flash_attention_2"  # packed detection in one flattened row only
    with pytest.raises(UserError, match=r"--pack-length.*this model uses flash_attention_2"):
        train(short.model_copy(update={"pack_length": 32}), gpt2, source, source.validation())
    code, err = run_cli(
        ["pretrain", "--task", "identity", "--model", "gpt2-tiny", "--vocab", "3:12", "--max-input-len", "8",
         "--max-target-len", "8", "--pack-length", "15", "--out", str(tmp_path / "cli")], capsys,
    )  # fmt: skip
    assert code == 2 and "--pack-length 16 or more" in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_packing_benchmark_quick_mode_prints_both_figures(monkeypatch, capsys, one_thread):
    script = Path(__file__).parents[1] / "benchmarks" / "packing.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--quick"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "unpacked" in printed and "packed" in printed and "padding" in printed and "tokens/s" in printed
