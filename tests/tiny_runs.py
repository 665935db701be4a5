"""Helpers of the engine's tests: a tiny real run (t5-tiny, or a tiny decoder-only model, on the identity
task, lengths 1..6, ids 3..12), a tiny study (one pre-training run, fine-tuning runs from it; seconds
each), the command line run in this process or launched on several, a run killed mid-way, and what a
run leaves (its final weights, its metrics rows)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from synthpre.data.stream import MixtureSource
from synthpre.model import build_model, vocab_size_for
from synthpre.tasks import get_task
from synthpre.tokens import TokenSpace
from synthpre.train import TrainConfig

SPACE = TokenSpace(3, 12)
MIN_LEN, MAX_LEN = 1, 6  # of the identity task's payload
DEFAULTS = {"max_steps": 2, "batch_size": 4, "max_input_len": 16, "max_target_len": 16, "eval_every": 2,
            "save_every": 2, "num_val_examples": 8, "progress": False}  # fmt: skip


def tiny_run(
    tmp_path: Path, name: str = "run", model_name: str = "t5-tiny", **settings
) -> tuple[TrainConfig, torch.nn.Module, MixtureSource]:
    """(config, fresh ``model_name`` model, source) of a run in ``tmp_path / name``: a 2-step run unless
    ``settings`` (TrainConfig fields) say otherwise."""
    task = get_task("identity")
    source = MixtureSource([(task, task.params_cls(min_len=MIN_LEN, max_len=MAX_LEN))], SPACE, seed=0)
    model = build_model(model_name, vocab_size=vocab_size_for(SPACE), seed=0)
    config = TrainConfig(out_dir=str(tmp_path / name), **{**DEFAULTS, **settings})
    return config, model, source


def tiny_cli_args(model_name: str = "t5-tiny") -> list[str]:
    """The options of ``synthpre pretrain`` for the data, model and lengths of ``tiny_run``, on one
    thread without a progress bar."""
    options = ["--task", "identity", "--vocab", f"{SPACE.lo}:{SPACE.hi}", "--min-len", str(MIN_LEN)]
    options += ["--max-len", str(MAX_LEN), "--model", model_name]
    options += ["--max-input-len", str(DEFAULTS["max_input_len"])]
    options += ["--max-target-len", str(DEFAULTS["max_target_len"])]
    return [*options, "--threads", "1", "--no-progress"]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """``synthpre ARGS`` in this process, through the real entry point: (exit code, stderr)."""
    from synthpre.cli import main

    argv = sys.argv
    sys.argv = ["synthpre", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


RUN_SCRIPT = "import sys; from synthpre.cli import main; sys.argv[0] = 'synthpre'; main()"


def sigkill_during(command: list[str], run_dir: Path, after_step: int, last_step: int) -> None:
    """Run ``command`` (a run into ``run_dir`` of ``last_step`` steps) and SIGKILL it at any moment up
    to 0.5 s after its checkpoint of ``after_step`` appears: mid-step, mid-evaluation or mid-checkpoint."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (run_dir / "checkpoints" / f"step_{after_step}").exists() and process.poll() is None:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.5))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run_dir / "checkpoints" / f"step_{last_step}").exists(), (
        "the run finished before it was killed"
    )


def final_weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step_{step}" / "model" / "model.safetensors")


def read_rows(run_dir: Path) -> list[dict]:
    """The rows of metrics.jsonl without their clocks (which differ between equal runs)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("tokens_per_s", "elapsed_s", "cpu_s")} for row in rows]


def launch(
    processes: int, args: list[str], tmp_path: Path, script: str = RUN_SCRIPT, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``synthpre ARGS`` (run by ``script``) on ``processes`` CPU processes
    (DDP over gloo).

    ``--cpu`` would start a single process (accelerate needs MPI for several CPU processes);
    ``--multi_gpu`` starts them with torchrun, and the engine picks gloo when CUDA is absent.
    """
    path = tmp_path / "synthpre_main.py"
    path.write_text(script)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    command += ["--multi_gpu"] if processes > 1 else []
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(path)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=timeout)


TINY_STUDY = """\
name: tiny-test
model: t5-tiny
vocab: "3:127"
pretraining:
  train: {{max_steps: 12, batch_size: 16, dropout: 0.0, max_input_len: 24, max_target_len: 24,
          eval_every: 6, save_every: 6, num_val_examples: 32, progress: false}}
  tasks:
    Set: {{task: set, params: {{min_len: 5, max_len: 12}}}}
init_schemes: {schemes}
baselines: {{random_init: false}}
downstream:
  tasks: [smiles_canonicalize]
  tokenizer: chars
  lrs: [0.01]
  train: {{max_steps: {steps}, eval_every: 4, batch_size: 16, eval_decode: 0, max_decode_len: 8,
          progress: false}}
  test_examples: 8
"""


def tiny_study(tmp_path: Path, schemes: str = "[full]", steps: int = 8, extra: str = "") -> Path:
    """``tmp_path/study.yaml``: Set pre-training (12 steps), a SMILES fine-tuning run (``steps``) from it
    per init scheme of ``schemes``; ``extra``: more top-level YAML."""
    path = tmp_path / "study.yaml"
    path.write_text(TINY_STUDY.format(schemes=schemes, steps=steps) + extra)
    return path
