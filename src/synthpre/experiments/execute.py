"""Run one study run in this process, through the Python APIs of the other stages.

Each planned run becomes the settings ``synthpre pretrain`` / ``synthpre finetune`` would take
(:func:`pretraining_settings`, :func:`finetuning_settings`) and goes through the same
``synthpre.recipes``: pre-training's ``best.json`` (App. A's rule) names the checkpoint that
fine-tuning starts from; fine-tuning's (App. B's rule) is decoded on the test split by
``synthpre evaluate``'s function.  Accuracies are stored in percent, like every downstream metric.
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
from typing import TYPE_CHECKING, Any

from synthpre.experiments.plan import PlannedRun
from synthpre.experiments.store import Outcome

if TYPE_CHECKING:
    from synthpre.downstream.config import FinetuneConfig
    from synthpre.recipes import Pretraining

FRACTION_METRICS = ("val_token_accuracy", "val_sequence_accuracy")  # the engine's; stored x 100
RULE_MET = "rule_met"  # of a pre-training run: 1 when its checkpoint meets the study's rule, 0 otherwise
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


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main(argv: list[str] | None = None) -> None:
    """Entry of a launched run: read ``RUN_DIR/study_request.json``, run it, write the outcome (rank 0)."""
    run_dir = Path((argv or sys.argv[1:])[0])
    request = json.loads((run_dir / REQUEST_FILE).read_text())
    run = PlannedRun(request["kind"], request["config"], list(request["deps"]))
    outcome = execute_run(run, run_dir, request["deps"], request["resume"])
    if is_main_process():
        (run_dir / OUTCOME_FILE).write_text(json.dumps(dataclasses.asdict(outcome)))


def pretraining_settings(config: dict[str, Any], run_dir: Path) -> Pretraining:
    """The recipe of a planned pre-training run: the same settings as ``synthpre pretrain`` would take."""
    from synthpre.recipes import Pretraining
    from synthpre.train.config import TrainConfig

    return Pretraining(
        task=config["task"], model=config["model"], vocab=config["vocab"], task_params=config["params"],
        train=TrainConfig(out_dir=str(run_dir), seed=config["seed"], **_tracker(config), **config["train"]),
    )  # fmt: skip


def _tracker(config: dict[str, Any]) -> dict[str, str]:
    """The study's ``log_with`` (a planned run's config has it; a hand-made one may not)."""
    return {"log_with": config["log_with"]} if "log_with" in config else {}


def finetuning_settings(config: dict[str, Any], run_dir: Path, deps: dict[str, str]) -> FinetuneConfig:
    """The recipe of a planned fine-tuning run: the same settings as ``synthpre finetune`` would take.

    The init arm becomes ``init_from`` (the pre-training run's folder, or the off-the-shelf model) with
    ``init_scheme``, or ``pre_attn_ln``; ``vocab`` gives a fresh model the pre-trained arms' shape."""
    from synthpre.downstream.config import FinetuneConfig

    init = config["init"]
    return FinetuneConfig(
        task=config["task"], out_dir=str(run_dir), model=config["model"], data=config["data"],
        init_from=deps[init["source"]] if init["kind"] == "pretrained" else init.get("source"),
        init_scheme=init.get("scheme") or "full", pre_attn_ln=init.get("value"),
        tokenizer=config["tokenizer"], vocab=config["vocab"], learning_rate=config["lr"],
        train_size=config["train_size"], seed=config["seed"], **_tracker(config),
        **({"dropout": config["dropout"]} if config["dropout"] is not None else {}), **config["train"],
    )  # fmt: skip


def pretrain(config: dict[str, Any], run_dir: Path, resume: bool) -> Outcome:
    """Pre-train; the outcome records the selected checkpoint and whether it meets the study's rule
    (``RULE_MET``: not when a task hit its cap below the threshold)."""
    from synthpre import recipes
    from synthpre.train.selection import SelectionRule

    settings = pretraining_settings(config, run_dir)
    result = recipes.pretrain(settings, resume=resume, extra_config={"study_run": config})
    best = result.best or {}
    if not best:
        raise RuntimeError(f"pre-training run {run_dir} saved no checkpoint with a validation score")
    evals = _validation_rows(run_dir)
    selected = evals.get(best["step"], {})
    met = SelectionRule.from_config(settings.train).met(best)
    return Outcome(
        metrics=_percent(selected) | {RULE_MET: float(met)},
        selected_step=best["step"],
        selection_rule=best["reason"],
        checkpoint=str(run_dir / best["checkpoint"]),
        curves=_curves(evals),
    )


def finetune(config: dict[str, Any], run_dir: Path, deps: dict[str, str], resume: bool) -> Outcome:
    """Fine-tune, then decode the test split with the selected checkpoint as ``synthpre evaluate`` does
    (its predictions and metrics in ``RUN/eval/test/``)."""
    from synthpre import recipes
    from synthpre.downstream.evaluate import scores_of

    results = recipes.finetune(finetuning_settings(config, run_dir, deps), resume=resume)
    selected = results["selected"]
    metrics = _percent(selected)
    test = config["test"]
    if test["evaluate"] and is_main_process():
        evaluation = recipes.evaluate(run_dir, "test", beams=test["beams"], limit=test["examples"])
        metrics |= {f"test_{k}": v for k, v in scores_of(evaluation).items()}
    return Outcome(
        metrics=metrics,
        selected_step=selected["step"],
        selection_rule=results["rule"],
        curves=_curves(_validation_rows(run_dir)),
    )


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
    """Each validation metric, and the tokens trained on, at every evaluation (the loss-against-tokens
    curves of ``tokens_saved``)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for step, row in sorted(evals.items()):
        tokens = {"tokens": float(row["tokens"])} if "tokens" in row else {}
        for key, value in (_percent(row) | tokens).items():
            curves.setdefault(key, []).append((step, value))
    return curves


if __name__ == "__main__":
    main()
