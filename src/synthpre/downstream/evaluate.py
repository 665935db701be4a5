"""``synthpre evaluate RUN --split test [--beams 4]``: decode a split with a run's selected checkpoint.

Writes ``RUN/eval/<split>[-beam<k>]/predictions.jsonl`` and ``metrics.json``.  With ``--predictions FILE``
it only re-scores an existing prediction file against the split (which must align line by line).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.decoding import DecodeOptions, predict_and_score, read_predictions, write_outputs
from synthpre.downstream.finetune import TOKENIZER_DIR, read_split, run_folder
from synthpre.downstream.registry import get_downstream_task
from synthpre.errors import UserError
from synthpre.model import load_model
from synthpre.tokenizer import load_run_tokenizer

# What ``metrics.json`` holds besides the scores.
EVALUATION_INFO = (
    "task",
    "split",
    "num_examples",
    "step",
    "checkpoint",
    "beams",
    "max_decode_len",
    "predictions",
)


def scores_of(metrics: dict) -> dict[str, float]:
    """The task's scores among the contents of an evaluation's ``metrics.json``."""
    return {k: v for k, v in metrics.items() if k not in EVALUATION_INFO}


def run_config(run: Path) -> FinetuneConfig:
    config = json.loads((run / "config.json").read_text())
    if "finetune" not in config:
        raise UserError(f"{run}/config.json has no 'finetune' block: not a fine-tuning run")
    return FinetuneConfig(**config["finetune"])


def evaluate_run(
    run: Path,
    split: str = "test",
    beams: int = 1,
    batch_size: int | None = None,
    data: Path | None = None,
    predictions: Path | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> dict:
    """Metrics of the selected checkpoint on ``split`` (or of ``predictions``); writes them beside the run.

    The one evaluation path: ``synthpre evaluate`` and a study's test decoding both call it.  ``limit``
    decodes only the first N examples (smoke tests)."""
    if beams < 1:
        raise UserError(f"beams {beams} (--beams): need at least 1 (1 = greedy)")
    folder, results = run_folder(Path(run))
    config = run_config(folder)
    if data is not None:
        config = config.model_copy(update={"data": str(data), "data_format": None})  # found anew
    task = get_downstream_task(config.task)
    examples = read_split(task, config.model_copy(update={"train_size": None, "val_size": None}), split)
    examples = examples[:limit]
    references = [e.references for e in examples]
    out = Path(run) / "eval" / (f"{split}-beam{beams}" if beams > 1 else split)
    meta = {
        "task": task.name,
        "split": split,
        "num_examples": len(examples),
        "step": results["selected"]["step"],
    }
    if predictions is not None:
        scores = task.score(read_predictions(predictions, examples), references, None)
        write_outputs(
            out.with_name(out.name + "-rescored"), None, {**meta, "predictions": str(predictions), **scores}
        )
        return scores
    checkpoint = folder / results["selected"]["checkpoint"] / "model"
    tokenizer = load_run_tokenizer(folder / TOKENIZER_DIR)
    model = load_model(checkpoint)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    options = DecodeOptions(
        config.max_input_len, config.max_decode_len, beams, batch_size or config.batch_size, progress
    )
    records, scores = predict_and_score(task, model, tokenizer, examples, options)
    metrics = {
        **meta,
        "checkpoint": str(checkpoint),
        "beams": beams,
        "max_decode_len": config.max_decode_len,
        **scores,
    }
    write_outputs(out, records, metrics)
    return metrics
