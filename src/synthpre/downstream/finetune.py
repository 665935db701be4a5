"""Fine-tuning on a downstream task = the one engine (``synthpre.train.train``) + a ``DatasetSource``.

App. B: Adafactor with a constant learning rate (swept over 1e-2, 3e-3, 1e-3), dropout 0.1, the task's
batch size, lengths and max steps (App. D.3), evaluation and a checkpoint every 10K steps (5K for
WebQSP).  At each evaluation the engine measures teacher-forced validation token accuracy and, through
its ``extra_eval`` hook, we decode validation examples for the task's generation metrics.  The selection
rule of App. B picks the checkpoint; ``results.json`` records it, the rule and the metrics.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from synthpre.data.stream import DatasetSource
from synthpre.downstream.decoding import DecodeOptions, predict_and_score
from synthpre.downstream.readers import TextExample
from synthpre.downstream.registry import (
    BEST_VAL_METRIC,
    FIXED_STEP,
    MAX_VAL_TOKEN_ACCURACY,
    DownstreamTask,
    get_downstream_task,
)
from synthpre.tokenizer import (
    CharTokenizer,
    TextTokenizer,
    load_pretrained_tokenizer,
    load_run_tokenizer,
    train_sentencepiece,
)
from synthpre.errors import UserError
from synthpre.init import apply_scheme
from synthpre.model import build_model, load_model
from synthpre.tasks.registry import Examples
from synthpre.train import TrainConfig, newest_valid_checkpoint, train
from synthpre.train.checkpoints import STATE
from synthpre.train.engine import check_run_dir, full_config, set_dropout

RESULTS_FILE = "results.json"
TOKENIZER_DIR = "tokenizer"
TRAIN_SUBSET_SEED = 0  # Table 4's dataset-size ablation: one fixed subset, whatever the run seed
RULE_TEXT = {
    MAX_VAL_TOKEN_ACCURACY: "App. B: the checkpoint with the max validation token accuracy",
    FIXED_STEP: "App. B: the checkpoint at a fixed step (CNNDM-10K: 50K; test ROUGE plateaus by then)",
    BEST_VAL_METRIC: "App. B: the best validation metric (SQuAD, as Raffel et al.: its test set is hidden)",
}


class FinetuneConfig(BaseModel):
    """A fine-tuning run; ``None`` fields take the task's App. D.3 defaults (see ``resolved``)."""

    model_config = ConfigDict(extra="forbid")

    task: str
    out_dir: str
    model: str = "t5-small"
    data: str | None = Field(None, description="folder with the task's files (App. D tasks)")
    init_from: str | None = Field(None, description="checkpoint, run folder or local Hugging Face T5 folder")
    init_scheme: str = Field("full", description="full, or a statistics scheme of synthpre.init")
    tokenizer: str | None = Field(None, description="'chars', a local tokenizer folder, or None (see docs)")
    vocab_size: int | None = Field(None, gt=0, description="model vocabulary of a random init")
    learning_rate: float | None = Field(None, gt=0)
    lr_sweep: list[float] | None = None
    train_size: int | None = Field(None, gt=0, description="a fixed subset of this many training examples")
    val_size: int | None = Field(None, gt=0, description="only the first N validation examples (quick runs)")
    max_steps: int | None = Field(None, gt=0)
    eval_every: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    max_input_len: int | None = Field(None, ge=2)
    max_target_len: int | None = Field(None, ge=2)
    max_decode_len: int | None = Field(None, gt=0)
    eval_decode: int | None = Field(None, ge=0, description="validation examples decoded per evaluation")
    dropout: float = Field(0.1, ge=0, lt=1)
    bucket_steps: int = Field(1, gt=0, description="sort each window of N steps' examples by length")
    lowercase: bool = Field(False, description="lower-case inputs and targets (Krishna et al.'s CNNDM)")
    seed: int = 0
    progress: bool = True

    def resolved(self) -> FinetuneConfig:
        """Every ``None`` hyper-parameter replaced by the task's default."""
        task = get_downstream_task(self.task)
        d = task.defaults
        decode_all = d.selection == BEST_VAL_METRIC or not task.needs_data
        return self.model_copy(
            update={
                "learning_rate": self.learning_rate or d.learning_rate,
                "max_steps": self.max_steps or d.max_steps,
                "eval_every": self.eval_every or d.eval_every,
                "batch_size": self.batch_size or d.batch_size,
                "max_input_len": self.max_input_len or d.max_input_len,
                "max_target_len": self.max_target_len or d.max_target_len,
                "max_decode_len": self.max_decode_len or d.max_decode_len,
                "eval_decode": self.eval_decode
                if self.eval_decode is not None
                else (10**9 if decode_all else 0),
            }
        )


def read_split(task: DownstreamTask, config: FinetuneConfig, split: str) -> list[TextExample]:
    """A split of the task, lower-cased when asked; training subset of ``--train-size`` applied."""
    data = Path(config.data) if config.data else None
    if task.needs_data and data is None:
        raise UserError(f"task {task.name!r} reads local files: pass --data DIR (see docs/downstream.md)")
    examples = task.examples(data, split)
    if config.lowercase:
        examples = [
            TextExample(e.id, e.input.lower(), e.target.lower(), tuple(r.lower() for r in e.references))
            for e in examples
        ]
    if split == "train" and config.train_size is not None:
        if config.train_size > len(examples):
            raise UserError(
                f"--train-size {config.train_size}: the training split has only {len(examples)} examples"
            )
        rows = np.sort(
            np.random.default_rng(TRAIN_SUBSET_SEED).permutation(len(examples))[: config.train_size]
        )
        examples = [examples[r] for r in rows]
    if split == "validation" and config.val_size is not None:
        examples = examples[: config.val_size]
    return examples


def to_examples(examples: list[TextExample], tokenizer: TextTokenizer) -> Examples:
    return Examples.from_lists(
        tokenizer.encode_many([e.input for e in examples]),
        tokenizer.encode_many([e.target for e in examples]),
    )


def choose_tokenizer(config: FinetuneConfig, train: list[TextExample]) -> TextTokenizer:
    """``--tokenizer chars`` | a folder | the ``--init-from`` folder's own tokenizer | a new SentencePiece
    model trained on the training split (``synthpre tokenizer train`` does the same once, to reuse)."""
    if config.tokenizer == "chars":
        return CharTokenizer.from_texts([e.input + e.target for e in train])
    if config.tokenizer is not None:
        return load_pretrained_tokenizer(Path(config.tokenizer))
    init = Path(config.init_from) if config.init_from else None
    if init is not None and any((init / f).exists() for f in ("tokenizer.json", "spiece.model")):
        return load_pretrained_tokenizer(init)
    if not get_downstream_task(config.task).needs_data:
        return CharTokenizer.from_texts([e.input + e.target for e in train])
    with tempfile.TemporaryDirectory() as tmp:  # saved into the run folder only once the run starts
        return train_sentencepiece([e.input + "\n" + e.target for e in train], Path(tmp))


def initial_model(config: FinetuneConfig, tokenizer: TextTokenizer) -> torch.nn.Module:
    """Random init (``--model``), or ``--init-from`` with ``--init-scheme`` (full weights or statistics)."""
    if config.init_from is None:
        if config.init_scheme != "full":
            raise UserError(
                f"--init-scheme {config.init_scheme} needs --init-from CHECKPOINT (its statistics)"
            )
        vocab = config.vocab_size or -(-tokenizer.vocab_size // 8) * 8
        model = build_model(config.model, vocab_size=vocab, seed=config.seed)
    else:
        source = load_model(config.init_from)
        if config.init_scheme == "full":
            model = source
        else:
            model = build_model(config.model, vocab_size=source.config.vocab_size, seed=config.seed)
            apply_scheme(model, source, config.init_scheme, config.seed)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise UserError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model only {model.config.vocab_size}: "
            "use a matching --tokenizer, or a larger --vocab-size for a random init"
        )
    return model


def train_config(config: FinetuneConfig, run_dir: Path, num_val: int) -> TrainConfig:
    task = get_downstream_task(config.task)
    by_metric = task.defaults.selection == BEST_VAL_METRIC
    return TrainConfig(
        out_dir=str(run_dir), seed=config.seed, max_steps=config.max_steps, batch_size=config.batch_size,
        max_input_len=config.max_input_len, max_target_len=config.max_target_len, dropout=config.dropout,
        lr_schedule="constant", learning_rate=config.learning_rate, eval_every=config.eval_every,
        save_every=config.eval_every, num_val_examples=num_val, selection="max",
        bucket_steps=config.bucket_steps,
        selection_metric=f"val_{task.headline_metric}" if by_metric else "val_token_accuracy",
        progress=config.progress,
    )  # fmt: skip


def generation_hook(
    task: DownstreamTask, config: FinetuneConfig, tokenizer: TextTokenizer, val: list[TextExample]
):
    """The engine's ``extra_eval``: greedy-decode validation examples, return ``val_<metric>`` scores."""
    chosen = val[: config.eval_decode]
    options = DecodeOptions(
        config.max_input_len, config.max_decode_len, beams=1, batch_size=config.batch_size
    )

    def hook(model: torch.nn.Module, step: int) -> dict[str, float]:
        if not chosen:
            return {}
        _, scores = predict_and_score(task, model, tokenizer, chosen, options)
        return {f"val_{k}": v for k, v in scores.items()}

    return hook


def run_evaluations(run_dir: Path) -> list[dict]:
    """The engine's evaluation records (with their checkpoint names) from the newest checkpoint."""
    newest = newest_valid_checkpoint(run_dir / "checkpoints")
    return json.loads((newest / STATE).read_text())["evals"] if newest is not None else []


def select(task: DownstreamTask, evals: list[dict]) -> tuple[dict, str]:
    """The evaluation record chosen by the task's App. B rule, and the rule's name."""
    saved = [e for e in evals if e.get("checkpoint")]
    if not saved:
        raise UserError("the run saved no checkpoint to select from")
    rule = task.defaults.selection
    if rule == FIXED_STEP:
        target = task.defaults.selection_step or 0
        reached = [e for e in saved if e["step"] <= target]
        return (reached[-1] if reached and reached[-1]["step"] == target else saved[-1]), rule
    key = f"val_{task.headline_metric}" if rule == BEST_VAL_METRIC else "val_token_accuracy"
    return max(saved, key=lambda e: e.get(key, float("-inf"))), rule


def finetune_one(config: FinetuneConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """One fine-tuning run at one learning rate; returns (and writes) ``results.json``."""
    task = get_downstream_task(config.task)
    train_examples = read_split(task, config, "train")
    val_examples = read_split(task, config, "validation")
    run_dir = Path(config.out_dir)
    saved = run_dir / TOKENIZER_DIR
    tokenizer = (
        load_run_tokenizer(saved) if resume and saved.is_dir() else choose_tokenizer(config, train_examples)
    )
    model = initial_model(config, tokenizer)
    train_source = DatasetSource(to_examples(train_examples, tokenizer), name=f"{task.name}/train")
    val_source = DatasetSource(to_examples(val_examples, tokenizer), name=f"{task.name}/validation")
    engine_config = train_config(config, run_dir, len(val_examples))
    extra = {"finetune": config.model_dump()}
    set_dropout(model, engine_config.dropout)  # as train() does before writing config.json: resume compares
    check_run_dir(
        run_dir, full_config(engine_config, model, train_source, val_source, extra), resume, overwrite
    )
    tokenizer.save(run_dir / TOKENIZER_DIR)
    result = train(
        engine_config, model, train_source, val_source, resume=resume, overwrite=overwrite,
        extra_eval=generation_hook(task, config, tokenizer, val_examples), extra_config=extra,
    )  # fmt: skip
    chosen, rule = select(task, run_evaluations(run_dir))
    results = {
        "task": task.name,
        "rule": rule,
        "rule_text": RULE_TEXT[rule],
        "selected": chosen,
        "learning_rate": config.learning_rate,
        "init_from": config.init_from,
        "init_scheme": config.init_scheme if config.init_from else "random",
        "train_seconds": result.seconds,
        "steps": result.step,
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results


def finetune(config: FinetuneConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune (``lr_sweep``: one run per learning rate under ``OUT/lr_<lr>``, the best one chosen)."""
    config = config.resolved()
    if not config.lr_sweep:
        return finetune_one(config, resume, overwrite)
    run_dir = Path(config.out_dir)
    runs = []
    for lr in config.lr_sweep:
        sub = config.model_copy(
            update={"learning_rate": lr, "lr_sweep": None, "out_dir": str(run_dir / f"lr_{lr:g}")}
        )
        runs.append({"learning_rate": lr, "run": f"lr_{lr:g}", **finetune_one(sub, resume, overwrite)})
    task = get_downstream_task(config.task)
    key = (
        f"val_{task.headline_metric}" if task.defaults.selection == BEST_VAL_METRIC else "val_token_accuracy"
    )
    best = max(runs, key=lambda r: r["selected"].get(key, float("-inf")))
    results = {
        **best,
        "sweep": [{k: r[k] for k in ("learning_rate", "run", "selected")} for r in runs],
        "lr_rule": f"App. D.3: the learning rate whose selected checkpoint has the best {key}",
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results


def run_folder(run: Path) -> tuple[Path, dict]:
    """The run that holds the selected checkpoint (a sweep's chosen sub-run) and its results."""
    results_file = run / RESULTS_FILE
    if not results_file.is_file():
        raise UserError(f"{run}: no {RESULTS_FILE}; pass a folder written by `synthpre finetune`")
    results = json.loads(results_file.read_text())
    if "run" in results:
        return run / results["run"], results
    return run, results
