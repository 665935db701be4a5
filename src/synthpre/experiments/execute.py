"""Run one study run in this process, through the Python APIs of the other stages.

Pre-training: ``synthpre.train.train`` on a ``MixtureSource`` of the study's synthetic tasks; the run's
``best.json`` (App. A's rule) names the checkpoint that fine-tuning starts from.  Fine-tuning:
``synthpre.downstream.finetune`` (App. B's rule picks its checkpoint), then the selected checkpoint is
decoded on the test split.  Accuracies are stored in percent, like every downstream metric.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthpre.experiments.plan import PlannedRun
from synthpre.experiments.store import Outcome

FRACTION_METRICS = ("val_token_accuracy", "val_sequence_accuracy")  # the engine's; stored x 100
TEST_DIR = "test"
REQUEST_FILE = "study_request.json"  # what a launched run must do (``--launcher``)
OUTCOME_FILE = "study_outcome.json"  # what it reports back


def execute_run(run: PlannedRun, run_dir: Path, deps: dict[str, str], resume: bool) -> Outcome:
    """The study runner's executor: pre-train or fine-tune, and report the selected checkpoint's metrics."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars between the engine's own
    if run.kind == "pretrain":
        return pretrain(run.config, run_dir, resume)
    return finetune(run.config, run_dir, deps, resume)


def launched_executor(launcher: str) -> Callable[[PlannedRun, Path, dict[str, str], bool], Outcome]:
    """Run each run in its own process(es): ``LAUNCHER -m synthpre.experiments.execute RUN_DIR``.

    ``--launcher "accelerate launch --multi_gpu --num_processes 8"`` trains every run on 8 GPUs (DDP);
    ``--launcher python`` isolates runs (a crash or out-of-memory kills one run, not the study).
    """
    prefix = shlex.split(launcher)

    def execute(run: PlannedRun, run_dir: Path, deps: dict[str, str], resume: bool) -> Outcome:
        run_dir.mkdir(parents=True, exist_ok=True)
        request = {"kind": run.kind, "config": run.config, "deps": deps, "resume": resume}
        (run_dir / REQUEST_FILE).write_text(json.dumps(request, indent=1))
        (run_dir / OUTCOME_FILE).unlink(missing_ok=True)
        code = subprocess.run(
            [*prefix, "-m", "synthpre.experiments.execute", str(run_dir)], check=False
        ).returncode
        if code != 0 or not (run_dir / OUTCOME_FILE).is_file():
            raise RuntimeError(f"`{launcher}` exited with code {code} (its output is above)")
        return Outcome(**json.loads((run_dir / OUTCOME_FILE).read_text()))

    return execute


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main(argv: list[str] | None = None) -> None:
    """Entry of a launched run: read ``RUN_DIR/study_request.json``, run it, write the outcome (rank 0)."""
    run_dir = Path((argv or sys.argv[1:])[0])
    request = json.loads((run_dir / REQUEST_FILE).read_text())
    run = PlannedRun(request["kind"], request["config"], list(request["deps"]))
    outcome = execute_run(run, run_dir, request["deps"], request["resume"])
    if _is_main_process():
        (run_dir / OUTCOME_FILE).write_text(json.dumps(dataclasses.asdict(outcome)))


def token_space(vocab: str | None):
    from synthpre.tokens import TokenSpace

    return TokenSpace.parse(vocab) if vocab else TokenSpace()


def pretrain(config: dict[str, Any], run_dir: Path, resume: bool) -> Outcome:
    from synthpre.data.stream import MixtureSource
    from synthpre.model import build_model, vocab_size_for
    from synthpre.tasks import get_task
    from synthpre.train import TrainConfig, train

    space = token_space(config["vocab"])
    tasks = []
    for name in config["task"]:
        task = get_task(name)
        params = task.params_cls(**config["params"])
        if hasattr(params, "validate"):
            params.validate(space)
        tasks.append((task, params))
    source = MixtureSource(tasks, space, seed=config["seed"])
    engine = TrainConfig(out_dir=str(run_dir), seed=config["seed"], **config["train"])
    vocab_size = vocab_size_for(space) if config["vocab"] else None
    model = build_model(config["model"], vocab_size=vocab_size, seed=config["seed"])
    result = train(
        engine, model, source, source.validation(), resume=resume, extra_config={"study_run": config}
    )
    best = result.best or {}
    if not best:
        raise RuntimeError(f"pre-training run {run_dir} saved no checkpoint with a validation score")
    evals = _validation_rows(run_dir)
    selected = evals.get(best["step"], {})
    return Outcome(
        metrics=_percent(selected),
        selected_step=best["step"],
        selection_rule=best["reason"],
        checkpoint=str(run_dir / best["checkpoint"]),
        curves=_curves(evals),
    )


def finetune(config: dict[str, Any], run_dir: Path, deps: dict[str, str], resume: bool) -> Outcome:
    from synthpre.downstream.finetune import FinetuneConfig, finetune_one
    from synthpre.model import vocab_size_for

    init = config["init"]
    init_from, scheme = None, "full"
    if init["kind"] == "pretrained":
        init_from, scheme = deps[init["source"]], init["scheme"]
    elif init["kind"] == "checkpoint":
        init_from, scheme = init["source"], init["scheme"]
    elif init["kind"] == "pre_attn_ln":
        init_from = str(_pre_attn_ln_model(config, run_dir / "init_model", init["value"]))
    options: dict[str, Any] = {
        "task": config["task"],
        "out_dir": str(run_dir),
        "model": config["model"],
        "data": config["data"],
        "init_from": init_from,
        "init_scheme": scheme,
        "tokenizer": config["tokenizer"],
        "learning_rate": config["lr"],
        "train_size": config["train_size"],
        "seed": config["seed"],
        **({"dropout": config["dropout"]} if config["dropout"] is not None else {}),
        **config["train"],
    }
    if config["vocab"] and init_from is None:  # Random Init has the same shape as the pre-trained arms
        options["vocab_size"] = vocab_size_for(token_space(config["vocab"]))
    finetune_config = FinetuneConfig(**options).resolved()
    results = finetune_one(finetune_config, resume=resume)
    selected = results["selected"]
    metrics = _percent(selected)
    if config["test"]["evaluate"] and _is_main_process():
        metrics |= {
            f"test_{k}": v for k, v in _test_scores(finetune_config, run_dir, selected, config).items()
        }
    return Outcome(
        metrics=metrics,
        selected_step=selected["step"],
        selection_rule=results["rule"],
        curves=_curves(_validation_rows(run_dir)),
    )


def _pre_attn_ln_model(config: dict[str, Any], folder: Path, value: float) -> Path:
    """App. Table 3/8: a fresh model whose pre-attention layer norms are all ``value`` (no checkpoint)."""
    from synthpre.init import set_pre_attention_norms
    from synthpre.model import build_model, save_checkpoint, vocab_size_for

    vocab_size = vocab_size_for(token_space(config["vocab"])) if config["vocab"] else None
    model = build_model(config["model"], vocab_size=vocab_size, seed=config["seed"])
    set_pre_attention_norms(model, value)
    return save_checkpoint(model, folder)


def _test_scores(
    finetune_config: Any, run_dir: Path, selected: dict, config: dict[str, Any]
) -> dict[str, float]:
    """Decode the test split with the selected checkpoint (App. B) and score it; predictions in ``test/``."""
    from synthpre.downstream.decoding import DecodeOptions, predict_and_score, write_outputs
    from synthpre.downstream.finetune import TOKENIZER_DIR, read_split
    from synthpre.downstream.registry import get_downstream_task
    from synthpre.tokenizer import load_run_tokenizer
    from synthpre.model import load_model

    task = get_downstream_task(config["task"])
    model = load_model(run_dir / selected["checkpoint"] / "model")
    tokenizer = load_run_tokenizer(run_dir / TOKENIZER_DIR)
    options = DecodeOptions(
        finetune_config.max_input_len, finetune_config.max_decode_len, beams=config["test"]["beams"],
        batch_size=finetune_config.batch_size,
    )  # fmt: skip
    examples = read_split(task, finetune_config, "test")[: config["test"]["examples"]]
    records, scores = predict_and_score(task, model, tokenizer, examples, options)
    write_outputs(run_dir / TEST_DIR, records, {"split": "test", "step": selected["step"], **scores})
    return scores


def _validation_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    from synthpre.train.metrics import read_metrics

    return {row["step"]: row for row in read_metrics(run_dir) if row.get("split") == "val"}


def _percent(record: dict[str, Any]) -> dict[str, float]:
    """The numeric validation metrics of an evaluation record, accuracies in percent."""
    return {
        key: float(value) * (100.0 if key in FRACTION_METRICS else 1.0)
        for key, value in record.items()
        if key.startswith("val_") and isinstance(value, int | float)
    }


def _curves(evals: dict[int, dict[str, float]]) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = {}
    for step, row in sorted(evals.items()):
        for key, value in _percent(row).items():
            curves.setdefault(key, []).append((step, value))
    return curves


if __name__ == "__main__":
    main()
