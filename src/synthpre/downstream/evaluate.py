"""``synthpre evaluate RUN --split test [--beams 4]``: score a split with a run's selected checkpoint.

A decoded task writes ``RUN/eval/<split>[-beam<k>]/predictions.jsonl`` and ``metrics.json``; with
``--predictions FILE`` it only re-scores an existing prediction file against the split (which must align
line by line).  A language-modelling task (``text_lm``) is not decoded: ``metrics.json`` holds the
split's teacher-forced loss, perplexity and token accuracy, measured by the engine's own validation code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from synthpre.data.stream import DatasetSource
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.decoding import predict_and_score, read_predictions, write_outputs
from synthpre.downstream.finetune import TOKENIZER_DIR, decode_options, read_split, run_folder, to_examples
from synthpre.downstream.readers import TextExample
from synthpre.downstream.registry import get_downstream_task
from synthpre.errors import UserError
from synthpre.model import load_model
from synthpre.tokenizer import TextTokenizer, load_run_tokenizer
from synthpre.train import TrainConfig

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
    "tokens",
)


def scores_of(metrics: dict) -> dict[str, float]:
    """The task's scores among the contents of an evaluation's ``metrics.json``."""
    return {k: v for k, v in metrics.items() if k not in EVALUATION_INFO}


def run_config(run: Path) -> FinetuneConfig:
    config = json.loads((run / "config.json").read_text())
    if "finetune" not in config:
        raise UserError(f"{run}/config.json has no 'finetune' block: not a fine-tuning run")
    return FinetuneConfig(**config["finetune"])


def run_train_config(run: Path) -> TrainConfig:
    """The engine settings a run trained with (its config.json's ``train`` block)."""
    return TrainConfig(**json.loads((run / "config.json").read_text())["train"])


@dataclass(frozen=True)
class OneProcess:
    """What the engine's ``Validation.evaluate`` asks of an accelerator, for this process alone (a study
    evaluates on its main process only: no collective may run)."""

    device: torch.device

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor


def language_model_scores(
    model: torch.nn.Module, tokenizer: TextTokenizer, examples: list[TextExample], settings: TrainConfig
) -> dict[str, float]:
    """Teacher-forced ``loss`` (mean nats per learned token), ``perplexity`` = exp(loss) and
    ``token_accuracy`` (percent) of ``examples``, with the engine's validation code and the run's
    collation (``settings``); ``tokens``: the learned tokens they average over."""
    from synthpre.train.engine import Validation, make_collator

    ids = to_examples(examples, tokenizer)
    source = DatasetSource(ids)
    collator = make_collator(settings, model)
    validation = Validation(
        source, settings.model_copy(update={"num_val_examples": len(examples)}), collator, 0, 1
    )
    model.eval()
    scores = validation.evaluate(model, OneProcess(next(model.parameters()).device))
    return {
        "loss": scores["val_loss"],
        "perplexity": math.exp(scores["val_loss"]),
        "token_accuracy": 100 * scores["val_token_accuracy"],
        "tokens": collator.token_counts(ids)[0],
    }


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

    The one evaluation path: ``synthpre evaluate`` and a study's test decoding both call it; a
    language-modelling task is scored by its teacher-forced loss instead of decoded.  ``limit`` scores
    only the first N examples (smoke tests)."""
    if beams < 1:
        raise UserError(f"beams {beams} (--beams): need at least 1 (1 = greedy)")
    folder, results = run_folder(Path(run))
    config = run_config(folder)
    if data is not None:
        config = config.model_copy(update={"data": str(data), "data_format": None})  # found anew
    task = get_downstream_task(config.task)
    if task.is_language_model and (beams > 1 or predictions is not None):
        raise UserError(
            f"{task.name} is scored by its teacher-forced loss, never decoded: leave out "
            + ("beams (--beams)" if beams > 1 else "predictions (--predictions)")
        )
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
    meta["checkpoint"] = str(checkpoint)
    if task.is_language_model:
        settings = run_train_config(folder)
        settings = settings.model_copy(update={"eval_batch_size": batch_size or settings.eval_batch_size})
        metrics = {**meta, **language_model_scores(model, tokenizer, examples, settings)}
        write_outputs(out, None, metrics)
        return metrics
    options = decode_options(config, beams, batch_size, progress)
    records, scores = predict_and_score(task, model, tokenizer, examples, options)
    metrics = {**meta, "beams": beams, "max_decode_len": config.max_decode_len, **scores}
    write_outputs(out, records, metrics)
    return metrics
