"""Helpers of the engine's tests: a tiny real run (t5-tiny on the identity task, lengths 1..6, ids
3..12), a tiny study (one pre-training run, fine-tuning runs from it; seconds each) and the command
line run in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from synthpre.data.stream import MixtureSource
from synthpre.model import build_model, vocab_size_for
from synthpre.tasks import get_task
from synthpre.tokens import TokenSpace
from synthpre.train import TrainConfig

SPACE = TokenSpace(3, 12)
DEFAULTS = {"max_steps": 2, "batch_size": 4, "max_input_len": 16, "max_target_len": 16, "eval_every": 2,
            "save_every": 2, "num_val_examples": 8, "progress": False}  # fmt: skip


def tiny_run(
    tmp_path: Path, name: str = "run", **settings
) -> tuple[TrainConfig, torch.nn.Module, MixtureSource]:
    """(config, fresh model, source) of a run in ``tmp_path / name``: a 2-step run unless ``settings``
    (TrainConfig fields) say otherwise."""
    task = get_task("identity")
    source = MixtureSource([(task, task.params_cls(min_len=1, max_len=6))], SPACE, seed=0)
    model = build_model("t5-tiny", vocab_size=vocab_size_for(SPACE), seed=0)
    config = TrainConfig(out_dir=str(tmp_path / name), **{**DEFAULTS, **settings})
    return config, model, source


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
