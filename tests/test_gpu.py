"""The GPU path on CUDA: bf16 + compiled pre-training, resume (bitwise in fp32), a GPU run resumed on a
CPU, fine-tuning with ``synthpre evaluate`` decoding, and a study's test decoding.

Marked ``gpu`` and skipped without CUDA; ``benchmarks/gpu_check.py`` runs them (``pytest -m gpu``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synthpre.downstream import evaluate as evaluation
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.finetune import finetune
from synthpre.downstream.registry import get_downstream_task
from synthpre.experiments.execute import execute_run
from synthpre.experiments.plan import build_plan
from synthpre.experiments.spec import parse_spec
from synthpre.train import TrainResult, train
from synthpre.train.metrics import read_metrics
from tiny_runs import run_cli, tiny_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

if torch.cuda.is_available():  # read when cuBLAS starts: deterministic matrix products (fp32 resume)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

MTOP = Path(__file__).parent / "fixtures" / "downstream" / "mtop"
BF16 = {"rtol": 1.6e-2, "atol": 1e-4}  # torch's bf16 tolerance, atol for weights near zero


def tiny(tmp_path: Path, name: str, resume: bool = False, **settings) -> TrainResult:
    """A tiny run (``tiny_runs.tiny_run``) trained on the GPU."""
    config, model, source = tiny_run(tmp_path, name, **settings)
    result = train(config, model, source, source.validation(), resume=resume)
    assert next(model.parameters()).device.type == "cuda"
    return result


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / f"step_{step}" / "model" / "model.safetensors")


def train_losses(run: Path) -> list[float]:
    return [row["loss"] for row in read_metrics(run) if row["split"] == "train"]


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic CUDA kernels where torch has them (a warning where it has none)."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_bf16_compiled_pretraining_matches_eager_and_resumes_within_bf16_tolerance(tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    counters.clear()
    settings = {"precision": "bf16", "tf32": True, "compile": True, "dropout": 0.0, "log_every": 1}
    whole = tiny(tmp_path, "whole", max_steps=4, **settings)
    assert counters["stats"]["unique_graphs"] > 0  # torch.compile compiled the model
    eager = tiny(tmp_path, "eager", max_steps=4, **{**settings, "compile": False})
    tiny(tmp_path, "cut", max_steps=2, **settings)
    resumed = tiny(tmp_path, "cut", resume=True, max_steps=4, **settings)
    assert whole.step == eager.step == resumed.step == 4
    losses = train_losses(tmp_path / "whole")
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert losses == pytest.approx(train_losses(tmp_path / "eager"), rel=2e-2)  # compiled = eager
    assert train_losses(tmp_path / "cut") == pytest.approx(losses, rel=BF16["rtol"])
    assert whole.last_eval["val_loss"] == pytest.approx(resumed.last_eval["val_loss"], rel=BF16["rtol"])
    final, again = weights(tmp_path / "whole", 4), weights(tmp_path / "cut", 4)
    assert all(tensor.dtype == torch.float32 for tensor in final.values())  # fp32 master weights
    for name in final:
        torch.testing.assert_close(again[name], final[name], **BF16)


def test_fp32_resume_on_the_gpu_is_bitwise_equal_to_an_uninterrupted_run(tmp_path: Path) -> None:
    settings = {"dropout": 0.1, "seed": 3}  # dropout: the CUDA generator's state is restored too
    with deterministic():
        tiny(tmp_path, "whole", max_steps=4, **settings)
        tiny(tmp_path, "cut", max_steps=2, **settings)
        tiny(tmp_path, "cut", resume=True, max_steps=4, **settings)
    final, again = weights(tmp_path / "whole", 4), weights(tmp_path / "cut", 4)
    assert final.keys() == again.keys()
    different = [name for name in final if not torch.equal(final[name], again[name])]
    assert not different, different


RESUME_ON_CPU = """
import sys
from pathlib import Path
import torch
from tiny_runs import tiny_run
from synthpre.train import train

assert not torch.cuda.is_available()
config, model, source = tiny_run(Path(sys.argv[1]), "moved", max_steps=4)
print(train(config, model, source, source.validation(), resume=True).step)
"""


def test_a_run_saved_on_the_gpu_resumes_on_a_cpu(tmp_path: Path) -> None:
    """Checkpoints hold no device: a GPU run's optimizer state and RNG files load on a machine without one."""
    tiny(tmp_path, "moved", max_steps=2)
    state = torch.load(tmp_path / "moved" / "checkpoints" / "step_2" / "optimizer.pt", weights_only=True)
    assert any(v.is_cuda for s in state["state"].values() for v in s.values() if torch.is_tensor(v))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", RESUME_ON_CPU, str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "4" and (tmp_path / "moved" / "checkpoints" / "step_4").is_dir()


@pytest.fixture
def decoded_with(monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Module]:
    """The models that ``evaluate_run`` (``synthpre evaluate``, a study's test decoding) decodes with."""
    models: list[torch.nn.Module] = []
    load = evaluation.load_model

    def recorded(path: Path) -> torch.nn.Module:
        models.append(load(path))
        return models[-1]

    monkeypatch.setattr(evaluation, "load_model", recorded)
    return models


def test_fine_tuning_and_synthpre_evaluate_decode_on_the_gpu(tmp_path: Path, capsys, decoded_with) -> None:
    run = tmp_path / "mtop"
    config = FinetuneConfig(task="mtop", out_dir=str(run), data=str(MTOP), tokenizer="chars", model="t5-tiny",
                            max_steps=4, eval_every=2, eval_decode=1, batch_size=4, max_input_len=64,
                            max_target_len=48, max_decode_len=12, progress=False)  # fmt: skip
    results = finetune(config)
    metric = get_downstream_task("mtop").headline_metric
    assert f"val_{metric}" in results["selected"]  # decoded on the GPU at each evaluation

    code, err = run_cli(["evaluate", str(run), "--split", "test", "--beams", "2", "--no-progress"], capsys)
    assert code == 0, err
    assert [next(model.parameters()).device.type for model in decoded_with] == ["cuda"]
    metrics = json.loads((run / "eval" / "test-beam2" / "metrics.json").read_text())
    records = (run / "eval" / "test-beam2" / "predictions.jsonl").read_text().splitlines()
    assert metrics["beams"] == 2 and metric in metrics and metrics["num_examples"] == len(records) > 0
    assert all(len(json.loads(record)["candidates"]) == 2 for record in records)


def test_a_study_pretrains_fine_tunes_and_decodes_its_test_split_on_the_gpu(
    tmp_path: Path, decoded_with
) -> None:
    pretrain = {"max_steps": 2, "batch_size": 4, "max_input_len": 16, "max_target_len": 16, "eval_every": 2,
                "num_val_examples": 4, "progress": False}  # fmt: skip
    downstream = {"max_steps": 2, "eval_every": 2, "batch_size": 4, "max_decode_len": 8, "progress": False}
    spec = (
        f"name: gpu\nmodel: t5-tiny\npretraining:\n  train: {json.dumps(pretrain)}\n"
        "  tasks:\n    Set: {task: set, params: {min_len: 3, max_len: 6}}\n"
        "baselines: {random_init: false}\n"
        f"downstream:\n  tasks: {{mtop: {{data: {json.dumps(str(MTOP))}}}}}\n  tokenizer: chars\n"
        f"  lrs: [0.01]\n  train: {json.dumps(downstream)}\n  test_examples: 1\n"
    )
    pretraining, fine_tuning = build_plan(parse_spec(spec, "gpu.yaml"))
    assert (pretraining.kind, fine_tuning.kind) == ("pretrain", "finetune")
    pretrained = execute_run(pretraining, tmp_path / "pretrain", {}, resume=False)
    assert pretrained.selected_step == 2
    outcome = execute_run(fine_tuning, tmp_path / "finetune", {pretraining.hash: str(tmp_path / "pretrain")},
                          resume=False)  # fmt: skip
    assert "test_em" in outcome.metrics
    assert [next(model.parameters()).device.type for model in decoded_with] == ["cuda"]
