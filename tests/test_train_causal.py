"""The engine trains decoder-only models (GPT-2, Pythia, Llama) as it trains T5: they learn, resume
bit-exactly after SIGKILL, give one process's results on two (DDP and FSDP2), and bad settings exit 2
before anything is written.  The multi-process runs share one launch (each launch costs seconds)."""

import json
import math
import re
import shutil
import sys

import numpy as np
import pytest
import torch

from synthpre.data.stream import LABEL_IGNORE, Collator
from synthpre.train import train
from synthpre.train.engine import forward_logits, summed_cross_entropy
from tiny_runs import (
    RUN_SCRIPT,
    final_weights,
    launch,
    read_rows,
    run_cli,
    sigkill_during,
    tiny_cli_args,
    tiny_run,
)

# Runs of `synthpre ARGS` one after the other in each launched process, in one process group: a run
# would end the group (accelerate's end_training), and a new group made on the same rendezvous store
# can hang, so the group is kept for the next run.
RUNS_SCRIPT = """
import json, sys
from accelerate.state import PartialState
from synthpre.cli import main

PartialState.destroy_process_group = lambda self, group=None: None
for args in json.loads(sys.argv[1]):
    sys.argv = ["synthpre", *args]
    try:
        main()
    except SystemExit as exit_:
        if exit_.code:
            raise
"""


@pytest.mark.parametrize("model_name", ["gpt2-tiny", "llama-tiny"])
def test_a_tiny_decoder_only_model_learns_to_copy(tmp_path, one_thread, model_name):
    config, model, source = tiny_run(
        tmp_path, model_name=model_name, max_steps=100, batch_size=16, dropout=0.0, eval_every=100,
        save_every=100, num_val_examples=64, log_every=1,
    )  # fmt: skip
    result = train(config, model, source, source.validation())
    rows = read_rows(tmp_path / "run")
    assert rows[0]["loss"] == pytest.approx(math.log(model.config.vocab_size), abs=0.5)  # step 1: uniform
    # The target is the input's payload (1..6 of 10 ids, uniform lengths) and EOS: a model that does not
    # copy the input pays >= ln 10 per payload token, >= 21 ln(10) / 27 = 1.79 per target token.
    assert result.last_eval["val_loss"] < 1.6 and result.last_eval["val_token_accuracy"] > 0.45


def test_the_engine_loss_is_transformers_own_causal_lm_loss(tmp_path):
    """Labels aligned with the logits, summed and divided by the collator's count, give the loss that
    transformers computes by shifting the labels itself (loss_on all: every token after the first)."""
    for model_name in ("gpt2-tiny", "pythia-tiny", "llama-tiny"):
        _, model, source = tiny_run(tmp_path, model_name=model_name)
        examples = source.examples(np.arange(8))
        collator = Collator(16, 16, causal=True, loss_on="all")
        batch = collator(examples)
        model.eval()
        with torch.no_grad():
            ours = summed_cross_entropy(forward_logits(model, batch, causal=True), batch["labels"])
            theirs = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, LABEL_IGNORE),
            ).loss  # fmt: skip
        assert (ours / collator.token_counts(examples)[0]).item() == pytest.approx(theirs.item(), rel=1e-5)


def test_sigkill_then_resume_is_bitwise_equal_for_a_decoder_only_model(tmp_path, capsys, one_thread):
    steps = 40
    args = ["pretrain", *tiny_cli_args("pythia-tiny"), "--batch-size", "8", "--max-steps", str(steps)]
    args += ["--save-every", "5", "--eval-every", "10", "--log-every", "5", "--num-val-examples", "16"]
    args += ["--dropout", "0.1", "--seed", "3"]  # dropout: the RNG state matters
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    sigkill_during([sys.executable, "-c", RUN_SCRIPT, *args, "--out", str(killed)], killed, 15, steps)
    code, err = run_cli([*args, "--out", str(killed), "--resume"], capsys)
    assert code == 0, err
    resumed_from = int(re.search(r"resuming from .* \(step (\d+)\)", err)[1])
    assert 15 <= resumed_from < steps
    assert run_cli([*args, "--out", str(whole)], capsys)[0] == 0  # uninterrupted, in this process

    expected, again = final_weights(whole, steps), final_weights(killed, steps)
    assert expected.keys() == again.keys()
    assert all(torch.equal(expected[name], again[name]) for name in expected)
    assert read_rows(killed) == read_rows(whole)  # every loss, accuracy and token count, bitwise
    assert [r["step"] for r in read_rows(whole) if r["split"] == "val"] == [10, 20, 30, 40]


def test_ddp_and_fsdp_on_two_processes_match_one_process(tmp_path, capsys, one_thread):
    """One launch of 2 processes runs DDP (llama-tiny) then FSDP2 (gpt2-tiny, tied: its head is the
    embedding, at the root unit); each is compared with the same run on one process (this one)."""
    if shutil.which("accelerate") is None:
        pytest.skip("accelerate's launcher is not installed")
    base = ["pretrain", "--batch-size", "8", "--eval-every", "3", "--save-every", "3", "--log-every", "1"]
    base += ["--num-val-examples", "24", "--eval-batch-size", "8", "--dropout", "0"]  # 3 val batches on 2
    runs = {
        "ddp": [*tiny_cli_args("llama-tiny"), "--max-steps", "6"],
        "fsdp": [*tiny_cli_args("gpt2-tiny"), "--max-steps", "3", "--fsdp"],
    }
    launched = [[*base, *args, "--out", str(tmp_path / name / "two")] for name, args in runs.items()]
    done = launch(2, [json.dumps(launched)], tmp_path, script=RUNS_SCRIPT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "weights sharded over 2 process(es)" in done.stderr
    for name, args in runs.items():
        code, err = run_cli([*base, *args, "--out", str(tmp_path / name / "one")], capsys)
        assert code == 0, err
        one, two = read_rows(tmp_path / name / "one"), read_rows(tmp_path / name / "two")
        assert [r["step"] for r in one] == [r["step"] for r in two]
        for a, b in zip(one, two, strict=True):
            assert a.keys() == b.keys() and a["tokens"] == b["tokens"]
            for key in ("loss", "token_accuracy", "val_loss", "val_token_accuracy"):
                if key in a:
                    assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (name, a, b)
        last = one[-1]["step"]
        assert (tmp_path / name / "two" / "checkpoints" / f"step_{last}" / "rng_rank1.pt").is_file()
        weights, sharded = (
            final_weights(tmp_path / name / "one", last),
            final_weights(tmp_path / name / "two", last),
        )
        assert weights.keys() <= sharded.keys()  # (FSDP's gathered state may also name the tied head)
        assert all(torch.allclose(weights[key], sharded[key], atol=1e-5) for key in weights), name
    from transformers import GPT2LMHeadModel

    plain = GPT2LMHeadModel.from_pretrained(tmp_path / "fsdp" / "two" / "checkpoints" / "step_3" / "model")
    assert plain.lm_head.weight is plain.transformer.wte.weight
    assert torch.equal(
        plain.lm_head.weight, final_weights(tmp_path / "fsdp" / "two", 3)["transformer.wte.weight"]
    )


def test_loss_on_all_needs_a_decoder_only_model_and_a_row_must_fit_the_positions(
    tmp_path, capsys, one_thread
):
    base = ["pretrain", "--batch-size", "4", "--max-steps", "2", "--eval-every", "2", "--save-every", "2"]
    base += ["--num-val-examples", "4", "--dropout", "0"]
    code, err = run_cli([*base, *tiny_cli_args(), "--loss-on", "all", "--out", str(tmp_path / "t5")], capsys)
    assert code == 2 and "--loss-on all" in err and "decoder-only" in err, err
    for name in ("gpt2-tiny", "llama-tiny"):  # a learned position table; rotary positions
        lengths = ["--max-input-len", "513", "--max-target-len", "512"]
        code, err = run_cli([*base, *tiny_cli_args(name), *lengths, "--out", str(tmp_path / name)], capsys)
        assert code == 2, err
        assert "max_input_len + max_target_len = 1025 is above what this model supports (1024)" in err
    assert not any(tmp_path.iterdir())  # nothing written

    # Hu et al.'s setting (k-Shuffle Dyck, loss on every token), a row of exactly the 1,024 positions.
    run = tmp_path / "dyck"
    dyck = ["--task", "shuffle_dyck", "--model", "gpt2-tiny", "--vocab", "3:130", "--param", "num_types=16"]
    dyck += ["--param", "max_len=64", "--max-input-len", "8", "--max-target-len", "1016", "--loss-on", "all"]
    code, err = run_cli([*base, *dyck, "--threads", "1", "--no-progress", "--out", str(run)], capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["train"]["loss_on"] == "all"
    train_row, val_row = read_rows(run)[-2:]
    assert val_row["split"] == "val" and val_row["tokens"] == train_row["tokens"] > 0
