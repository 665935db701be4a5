"""The engine: it learns, resumes bit-exactly after SIGKILL, splits over processes, and refuses bad input."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synthpre.data.stream import MixtureSource
from synthpre.errors import UserError
from synthpre.model import build_model, vocab_size_for
from synthpre.tasks import get_task
from synthpre.tokens import TokenSpace
from synthpre.train import SelectionRule, TrainConfig, train
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

# A CI-sized identity task: payloads of 1..6 tokens from 10 content ids (plus the 2-token task prefix).
TINY = tiny_cli_args()


@pytest.mark.slow  # about 700 steps: ~60-90 s of CPU time
def test_tiny_t5_learns_identity_to_99_percent(tmp_path, one_thread, capsys):
    config, model, source = tiny_run(
        tmp_path, max_steps=1500, batch_size=64, dropout=0.0, eval_every=100, save_every=100_000,
        num_val_examples=512, log_every=50, stop_at_threshold=True,
    )  # fmt: skip
    result = train(config, model, source, source.validation())
    assert result.best is not None and result.best["threshold_met"], result.last_eval
    assert result.best["value"] >= 0.99 and result.step < config.max_steps
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["checkpoint"] == f"checkpoints/step_{result.step}"
    assert (tmp_path / "run" / best["checkpoint"] / "model" / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["split"] == "train" and rows[0]["loss"] > rows[-2]["loss"]
    assert list((tmp_path / "run" / "tb").iterdir())

    code, _ = run_cli(["runs", "show", str(tmp_path / "run")], capsys)
    assert code == 0 and (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_selection_rules_of_appendix_a():
    evals = [
        {"step": 5, "acc": 0.5, "checkpoint": "c5"},
        {"step": 10, "acc": 0.995, "checkpoint": "c10"},
        {"step": 15, "acc": 0.999, "checkpoint": "c15"},
        {"step": 20, "acc": 1.0, "checkpoint": None},  # evaluated, not saved: never selected
    ]
    assert SelectionRule("acc", "first_above_threshold", 0.99).select(evals)["step"] == 10
    assert SelectionRule("acc", "max").select(evals)["step"] == 15
    fallback = SelectionRule("acc", "first_above_threshold", 0.9999).select(evals)
    assert fallback["step"] == 15 and not fallback["threshold_met"] and "max" in fallback["reason"]


def test_sigkill_then_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    steps = 80
    args = [*TINY, "--batch-size", "8", "--max-steps", str(steps), "--save-every", "10", "--eval-every", "10"]
    args += [
        "--num-val-examples",
        "16",
        "--log-every",
        "5",
        "--dropout",
        "0.1",
        "--seed",
        "3",
        "--keep-last-k",
        "2",
    ]  # dropout: RNG matters
    command = [sys.executable, "-c", RUN_SCRIPT, "pretrain", *args]
    subprocess.run([*command, "--out", str(tmp_path / "whole")], check=True, capture_output=True)

    killed = tmp_path / "killed"
    sigkill_during([*command, "--out", str(killed)], killed, 30, steps)
    # Also corrupt the newest complete checkpoint: resuming must detect it and use the previous one.
    newest = max((p for p in (killed / "checkpoints").glob("step_*")), key=lambda p: int(p.name[5:]))
    with open(newest / "model" / "model.safetensors", "r+b") as handle:
        handle.truncate(100)

    resumed = subprocess.run([*command, "--out", str(killed), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {newest} is unusable" in resumed.stderr
    whole, again = final_weights(tmp_path / "whole", steps), final_weights(killed, steps)
    assert whole.keys() == again.keys()
    assert all(torch.equal(whole[name], again[name]) for name in whole)
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "val"] == list(range(10, steps + 1, 10))
    best = json.loads((killed / "best.json").read_text())
    kept = {p.name for p in (killed / "checkpoints").iterdir()}
    assert kept == {
        f"step_{steps - 10}",
        f"step_{steps}",
        Path(best["checkpoint"]).name,
    }  # keep-last-k + best


def test_two_processes_see_the_same_data_and_match_one_process(tmp_path):
    if shutil.which("accelerate") is None:
        pytest.skip("accelerate's launcher is not installed")
    args = [*TINY, "--batch-size", "8", "--max-steps", "6", "--save-every", "6", "--eval-every", "6"]
    args += ["--num-val-examples", "24", "--eval-batch-size", "8", "--log-every", "1", "--dropout", "0"]
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        done = launch(processes, ["pretrain", *args, "--out", str(out)], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (
            out / "checkpoints" / "step_6" / f"rng_rank{processes - 1}.pt"
        ).is_file()  # really N processes
        runs[processes] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    one, two = runs[1], runs[2]
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "token_accuracy", "val_loss", "val_token_accuracy"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a, b)

    uneven = launch(2, ["pretrain", *args, "--batch-size", "7", "--out", str(tmp_path / "uneven")], tmp_path)
    assert uneven.returncode != 0 and "batch size 7 is not divisible by the 2 processes" in uneven.stderr
    assert not (tmp_path / "uneven").exists()


def test_sharded_adafactor_is_torch_adafactor_on_unsharded_weights(one_thread):
    from synthpre.train.sharded import ShardedAdafactor

    models = [build_model("t5-tiny", vocab_size=64, seed=0) for _ in range(2)]
    optimizers = [torch.optim.Adafactor(models[0].parameters()), ShardedAdafactor(models[1].parameters())]
    for step in range(4):
        ids = torch.randint(3, 60, (4, 12), generator=torch.Generator().manual_seed(step))
        for model, optimizer in zip(models, optimizers, strict=True):
            model.eval()  # no dropout: the two must see the same gradients
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    weights = [model.state_dict() for model in models]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    states = [optimizer.state_dict()["state"] for optimizer in optimizers]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][i][k], states[1][i][k]) for i in states[0] for k in states[0][i])


def test_fsdp_on_two_processes_matches_one_process_and_resumes(tmp_path):
    """FSDP2 (``--fsdp``): sharded Adafactor steps give one process's losses and weights; its checkpoints
    are plain model folders; a sharded run resumes, and resumes on one process too (one format)."""
    if shutil.which("accelerate") is None:
        pytest.skip("accelerate's launcher is not installed")
    args = [*TINY, "--batch-size", "8", "--save-every", "3", "--eval-every", "3", "--log-every", "1"]
    args += ["--num-val-examples", "24", "--eval-batch-size", "8", "--dropout", "0"]  # 3 val batches on 2
    runs = {
        "one": (1, ["--max-steps", "6"]),
        "fsdp": (2, ["--max-steps", "6", "--fsdp"]),
        "cut": (2, ["--max-steps", "3", "--fsdp"]),
    }
    for name, (processes, extra) in runs.items():
        done = launch(processes, ["pretrain", *args, *extra, "--out", str(tmp_path / name)], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    shutil.copytree(tmp_path / "cut", tmp_path / "cut_on_one")
    for name, processes in (("cut", 2), ("cut_on_one", 1)):
        extra = ["--max-steps", "6", "--resume"] + (["--fsdp"] if processes == 2 else [])
        done = launch(processes, ["pretrain", *args, *extra, "--out", str(tmp_path / name)], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]

    metrics = {name: read_rows(tmp_path / name) for name in ("one", "fsdp", "cut")}
    assert [r["step"] for r in metrics["one"]] == [r["step"] for r in metrics["fsdp"]]
    for a, b in zip(metrics["one"], metrics["fsdp"], strict=True):
        for key in ("loss", "token_accuracy", "val_loss", "val_token_accuracy"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a, b)
    assert metrics["cut"] == metrics["fsdp"]  # a sharded run resumes exactly
    one, fsdp = final_weights(tmp_path / "one", 6), final_weights(tmp_path / "fsdp", 6)
    assert one.keys() <= fsdp.keys()  # (the gathered state also names the tied copies of the embedding)
    assert all(torch.allclose(one[name], fsdp[name], atol=1e-5) for name in one)
    cut, cut_on_one = final_weights(tmp_path / "cut", 6), final_weights(tmp_path / "cut_on_one", 6)
    assert all(torch.equal(fsdp[name], cut[name]) for name in fsdp)
    assert all(torch.allclose(fsdp[name], cut_on_one[name], atol=1e-5) for name in one)
    from transformers import T5ForConditionalGeneration

    plain = T5ForConditionalGeneration.from_pretrained(tmp_path / "fsdp" / "checkpoints" / "step_6" / "model")
    assert torch.equal(plain.lm_head.weight, fsdp["shared.weight"])


def test_bad_input_exits_2_and_overwrites_nothing(tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    base = [*TINY, "--batch-size", "4", "--max-steps", "2", "--save-every", "2", "--eval-every", "2"]
    base += ["--num-val-examples", "4", "--out", str(run)]
    assert run_cli(["pretrain", *base], capsys)[0] == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    cases = {
        "unknown model": (["--model", "t5-huge"], "unknown model"),
        "unknown task": (["--task", "idntity"], "Did you mean 'identity'"),
        "existing run": ([], "already holds a run"),
        "resume another config": (["--resume", "--batch-size", "8"], "differs"),
        "vocabulary too big for the model": (["--model", "t5-small", "--vocab", "3:33000"], "token ids"),
        "bad setting": (["--max-input-len", "1"], "max_input_len"),
    }
    for name, (extra, message) in cases.items():
        code, err = run_cli(["pretrain", *base, *extra], capsys)
        assert code == 2 and message in err, (name, err)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_max_length_above_the_model_limit_and_fsdp_at_a_constant_rate_are_user_errors(tmp_path):
    space = TokenSpace(3, 12)
    task = get_task("identity")
    source = MixtureSource([(task, task.params_cls(min_len=1, max_len=6))], space)
    model = build_model("t5-tiny", vocab_size=vocab_size_for(space))
    model.config.n_positions = 64  # a model that declares a maximum length
    config = TrainConfig(out_dir=str(tmp_path / "run"), max_input_len=128, max_target_len=16)
    with pytest.raises(UserError, match="above what this model supports"):
        train(config, model, source, source.validation())
    config = TrainConfig(out_dir=str(tmp_path / "run"), fsdp=True, lr_schedule="constant", learning_rate=1e-3)
    with pytest.raises(UserError, match=r"fsdp \(--fsdp\) supports the t5_rsqrt schedule"):
        train(config, build_model("t5-tiny", vocab_size=vocab_size_for(space)), source, source.validation())
    assert not (tmp_path / "run").exists()


def test_config_file_then_command_line_and_the_written_config(tmp_path, capsys, one_thread):
    settings = tmp_path / "pretrain.yaml"
    settings.write_text(
        "task: identity,reverse\nrates: [3, 1]\nmodel: t5-tiny\nvocab: '3:12'\nmin_len: 1\nmax_len: 6\n"
        "batch_size: 4\nmax_steps: 2\neval_every: 2\nsave_every: 2\nnum_val_examples: 4\n"
        "max_input_len: 16\nmax_target_len: 16\nseed: 5\n"
    )
    out = tmp_path / "run"
    code, err = run_cli(["pretrain", "--config", str(settings), "--seed", "6", "--out", str(out)], capsys)
    assert code == 0, err
    written = json.loads((out / "config.json").read_text())
    assert written["train"]["seed"] == 6 and written["train"]["batch_size"] == 4
    assert written["train"]["dropout"] == 0.1 and written["train"]["lr_schedule"] == "t5_rsqrt"  # App. A
    assert written["train_data"]["tasks"] == ["identity", "reverse"] and written["train_data"]["rates"] == [
        0.75,
        0.25,
    ]
    assert written["val_data"]["index_offset"] == 2**40
    assert written["model"]["vocab_size"] == vocab_size_for(TokenSpace(3, 12))
    assert written["pretraining"]["task_params"] == {"min_len": 1, "max_len": 6}
    settings.write_text("task: identity\nbogus: 1\n")
    code, err = run_cli(["pretrain", "--config", str(settings), "--out", str(tmp_path / "other")], capsys)
    assert code == 2 and "bogus" in err


def test_throughput_benchmark_quick_runs(tmp_path):
    """Engine vs Seq2SeqTrainer on t5-tiny, and the tiny decoder-only models in the engine beside it."""
    script = Path(__file__).parents[1] / "benchmarks" / "train_throughput.py"
    result_file = tmp_path / "throughput.json"
    command = [sys.executable, str(script), "--quick", "--threads", "1", "--json", str(result_file)]
    command += ["--compare-causal", "--repeats", "1"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(result_file.read_text())["results"]
    causal = {"gpt2-tiny": 954_112, "llama-tiny": 863_360, "pythia-tiny": 852_736}  # t5-tiny: 948,992
    assert {(r["scenario"], r["model"], r["trainer"]) for r in results} == {
        *(
            (scenario, "t5-tiny", trainer)
            for scenario in ("fixed", "synthetic")
            for trainer in ("engine", "hf")
        ),
        ("synthetic", "t5-tiny", "hf-longest"),
        *((scenario, name, "engine") for scenario in ("fixed", "synthetic") for name in causal),
    }
    assert all(r["parameters"] == causal.get(r["model"], 948_992) for r in results)
    assert all(r["tokens_per_s"] > 0 and r["ratio"] > 0 and r["mfu_measured"] > 0 for r in results)
    assert "engine/this" in done.stdout and "pythia-tiny" in done.stdout


def test_fp32_then_bf16_then_fp32_in_one_process(tmp_path, one_thread):
    """The Accelerator is the same in every run (bf16 is the engine's own autocast), so one process
    may train at several precisions, one after the other."""
    results = {}
    for name, precision in (("fp32", "fp32"), ("bf16", "bf16"), ("fp32_again", "fp32")):
        config, model, source = tiny_run(tmp_path, name, precision=precision)
        results[name] = train(config, model, source, source.validation())
        assert results[name].step == 2 and (tmp_path / name / "checkpoints" / "step_2").is_dir()
    fp32, bf16, again = (results[name].last_eval["val_loss"] for name in ("fp32", "bf16", "fp32_again"))
    assert fp32 == again and bf16 != fp32  # bf16 really autocasts, and leaves nothing behind


def test_on_start_resume_logs_and_a_config_json_from_before_a_new_field(tmp_path, one_thread, caplog):
    """``on_start`` runs once config.json is written and never on bad input; resuming compares
    ``TrainConfig.identity()`` (a field an older config.json lacks counts as its default) and logs
    where it resumes from; an unusable checkpoint is a logged warning."""
    config, model, source = tiny_run(tmp_path)
    run = tmp_path / "run"
    calls = []

    def on_start(run_dir: Path) -> None:
        calls.append(run_dir)
        assert (run_dir / "config.json").is_file() and not (run_dir / "checkpoints").exists()
        (run_dir / "tokenizer.txt").write_text("mine")

    train(config, model, source, source.validation(), on_start=on_start)
    assert calls == [run] and (run / "tokenizer.txt").read_text() == "mine"
    with pytest.raises(UserError, match=r"already holds a run .*resume \(--resume\)"):
        train(config, tiny_run(tmp_path)[1], source, source.validation(), on_start=on_start)
    assert calls == [run]

    written = json.loads((run / "config.json").read_text())
    del written["train"]["selection_step"]  # as written before the field existed
    (run / "config.json").write_text(json.dumps(written))
    longer = config.model_copy(update={"max_steps": 4})
    with caplog.at_level(logging.INFO, logger="synthpre.train"):
        train(longer, tiny_run(tmp_path)[1], source, source.validation(), resume=True)
    assert f"resuming from {run / 'checkpoints' / 'step_2'} (step 2)" in caplog.text

    with open(run / "checkpoints" / "step_4" / "model" / "model.safetensors", "r+b") as handle:
        handle.truncate(100)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="synthpre.train"):
        result = train(longer, tiny_run(tmp_path)[1], source, source.validation(), resume=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"checkpoint {run / 'checkpoints' / 'step_4'} is unusable" in w for w in warnings)
    assert "(step 2)" in caplog.text and result.step == 4


FOREIGN_STATE = """
import json, sys
import torch
from accelerate import Accelerator
from tiny_runs import tiny_run
from synthpre.train import train

torch.set_num_threads(1)
Accelerator(cpu=True, mixed_precision="bf16")  # the state Seq2SeqTrainer(bf16=True) leaves behind
losses = {}
for name, precision in (("fp32", "fp32"), ("bf16", "bf16")):
    config, model, source = tiny_run(Path(sys.argv[1]), name, precision=precision)
    losses[name] = train(config, model, source, source.validation()).last_eval["val_loss"]
print(json.dumps(losses))
"""


def test_train_after_another_library_left_accelerate_at_bf16(tmp_path, one_thread):
    """transformers' Trainer makes accelerate's process-wide state with its own mixed precision; the
    engine keeps that state, drops its autocast hooks, and trains as in a fresh process."""
    script = tmp_path / "foreign.py"
    script.write_text("from pathlib import Path\n" + FOREIGN_STATE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "foreign")], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    foreign = json.loads(done.stdout.splitlines()[-1])
    for name, precision in (("fp32", "fp32"), ("bf16", "bf16")):
        config, model, source = tiny_run(tmp_path / "here", name, precision=precision)
        assert train(config, model, source, source.validation()).last_eval["val_loss"] == foreign[name]
