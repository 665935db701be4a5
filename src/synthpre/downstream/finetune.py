"""Fine-tuning on a downstream task = the one engine (``synthpre.train.train``) + a ``DatasetSource``.

App. B: Adafactor with a constant learning rate (swept over 1e-2, 3e-3, 1e-3), dropout 0.1, the task's
batch size, lengths and max steps (App. D.3), evaluation and a checkpoint every 10K steps (5K for
WebQSP).  At each evaluation the engine measures teacher-forced validation token accuracy and, through
its ``extra_eval`` hook, we decode validation examples for the task's generation metrics.  The selection
rule of App. B picks the checkpoint; ``results.json`` records it, the rule and the metrics.

The model may be a T5 or a decoder-only model (``--model gpt2-tiny``, or a causal ``--init-from``): the
model decides, not this module.  The engine trains a decoder-only model on rows ``input EOS target EOS``
with the loss on the target, and decoding continues the prompt ``input EOS`` (``decoding.py``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from synthpre.data.stream import DatasetSource
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.decoding import DecodeOptions, check_decode_lengths, predict_and_score
from synthpre.downstream.readers import TextExample
from synthpre.downstream.registry import DownstreamTask, get_downstream_task
from synthpre.errors import UserError
from synthpre.init import apply_scheme, set_pre_attention_norms
from synthpre.model import build_model, load_model, model_vocab_size, padded_vocab_size
from synthpre.tasks.registry import Examples
from synthpre.tokenizer import (
    CharTokenizer,
    TextTokenizer,
    load_pretrained_tokenizer,
    load_run_tokenizer,
    train_sentencepiece,
)
from synthpre.tokens import token_space
from synthpre.train import TrainConfig, newest_valid_checkpoint, train
from synthpre.train.checkpoints import STATE, write_json_atomic
from synthpre.train.engine import ExtraEval, check_lengths, make_collator
from synthpre.train.selection import BEST_VAL_METRIC, RULE_TEXT, best_of

RESULTS_FILE = "results.json"
TOKENIZER_DIR = "tokenizer"
TRAIN_SUBSET_SEED = 0  # Table 4's dataset-size ablation: one fixed subset, whatever the run seed

logger = logging.getLogger(__name__)


def with_data_format(config: FinetuneConfig) -> FinetuneConfig:
    """The settings with the layout of the files in ``data`` (said in the log; the run's config.json
    records it, so ``synthpre evaluate`` reads the same files)."""
    task = get_downstream_task(config.task)
    layout = task.layout(config.data, config.data_format)
    if layout is None:
        return config
    logger.info("%s data: %s layout (%s) in %s", task.name, layout.name, layout.files, config.data)
    return config.model_copy(update={"data_format": layout.name})


def read_split(task: DownstreamTask, config: FinetuneConfig, split: str) -> list[TextExample]:
    """A split of the task, lower-cased when asked; training subset of ``--train-size`` applied."""
    examples = task.examples(Path(config.data) if config.data else None, split, config.data_format)
    if config.lowercase:
        examples = [
            TextExample(e.id, e.input.lower(), e.target.lower(), tuple(r.lower() for r in e.references))
            for e in examples
        ]
    if split == "train" and config.train_size is not None:
        if config.train_size > len(examples):
            raise UserError(
                f"train_size {config.train_size} (--train-size): the training split has only "
                f"{len(examples)} examples"
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


def tokenizer_text(examples: list[TextExample]) -> list[str]:
    """What a SentencePiece tokenizer of a task trains on: each training example's input and target."""
    return [e.input + "\n" + e.target for e in examples]


def choose_tokenizer(config: FinetuneConfig, train: list[TextExample]) -> TextTokenizer:
    """``--tokenizer chars`` | a folder | the ``--init-from`` folder's own tokenizer | characters for
    the offline seq2seq tasks | a new SentencePiece model trained on the training split (``synthpre
    tokenizer train`` does the same once, to reuse)."""
    if config.tokenizer == "chars":
        return CharTokenizer.from_texts([e.input + e.target for e in train])
    if config.tokenizer is not None:
        return load_pretrained_tokenizer(Path(config.tokenizer))
    init = Path(config.init_from) if config.init_from else None
    if init is not None and any((init / f).exists() for f in ("tokenizer.json", "spiece.model")):
        return load_pretrained_tokenizer(init)
    if get_downstream_task(config.task).chars_by_default:
        return CharTokenizer.from_texts([e.input + e.target for e in train])
    with tempfile.TemporaryDirectory() as tmp:  # saved into the run folder only once the run starts
        return train_sentencepiece(tokenizer_text(train), Path(tmp))


def fresh_vocab_size(config: FinetuneConfig, tokenizer: TextTokenizer) -> int:
    """The vocabulary of a fresh model: ``vocab_size``; else that of a model pre-trained on ``vocab``
    (so Random Init has the shape of the arms it is compared with); else the tokenizer's, to /8."""
    if config.vocab_size is not None:
        return config.vocab_size
    if config.vocab is not None:
        return model_vocab_size(config.model, token_space(config.vocab))
    return padded_vocab_size(tokenizer.vocab_size)


def initial_model(config: FinetuneConfig, tokenizer: TextTokenizer) -> torch.nn.Module:
    """Random init (``model``), Tables 3/8's ``pre_attn_ln`` value, or ``init_from`` with
    ``init_scheme`` (the full weights, or a fresh model drawn from their statistics)."""
    if config.init_from is None:
        if config.init_scheme != "full":
            raise UserError(
                f"init_scheme {config.init_scheme} (--init-scheme) needs init_from (--init-from CHECKPOINT), "
                "whose statistics it uses"
            )
        model = build_model(config.model, vocab_size=fresh_vocab_size(config, tokenizer), seed=config.seed)
        if config.pre_attn_ln is not None:
            set_pre_attention_norms(model, config.pre_attn_ln)
    elif config.pre_attn_ln is not None:
        raise UserError(
            "pre_attn_ln (--pre-attn-ln) sets a fresh model's norms: leave out init_from (--init-from)"
        )
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
            "use a matching tokenizer (--tokenizer), or a larger vocab_size (--vocab-size) for a fresh model"
        )
    return model


def train_config(config: FinetuneConfig, num_val: int) -> TrainConfig:
    """The engine's settings: the fields shared with ``TrainConfig`` as they are (``out_dir`` too),
    App. B's constant learning rate, a checkpoint at every evaluation, and the task's App. B rule."""
    task = get_downstream_task(config.task)
    if task.is_language_model and config.eval_decode:
        raise UserError(
            f"eval_decode {config.eval_decode} (--eval-decode): {task.name} is language modelling, scored by "
            "its teacher-forced validation loss and never decoded: leave it out"
        )
    if task.defaults.selection == BEST_VAL_METRIC and not config.eval_decode:
        raise UserError(
            f"eval_decode 0 (--eval-decode): {task.name} chooses its checkpoint on validation "
            f"{task.headline_metric} (App. B), which needs decoded validation examples: leave it out or N > 0"
        )
    shared = FinetuneConfig.model_fields.keys() & TrainConfig.model_fields.keys()
    return TrainConfig(
        **{name: getattr(config, name) for name in shared},
        **task.selection,
        lr_schedule="constant", save_every=config.eval_every, num_val_examples=num_val,
    )  # fmt: skip


def decode_options(
    config: FinetuneConfig, beams: int = 1, batch_size: int | None = None, progress: bool = False
) -> DecodeOptions:
    """How a run decodes: its max input and decode lengths, ``beams``, its batch size unless given."""
    return DecodeOptions(
        config.max_input_len, config.max_decode_len, beams, batch_size or config.batch_size, progress
    )


def generation_hook(
    task: DownstreamTask, config: FinetuneConfig, tokenizer: TextTokenizer, val: list[TextExample]
) -> ExtraEval | None:
    """The engine's ``extra_eval``: greedy-decode ``eval_decode`` validation examples, return
    ``val_<metric>`` scores; None when none are decoded."""
    chosen = val[: config.eval_decode]
    if not chosen:
        return None
    options = decode_options(config)

    def hook(model: torch.nn.Module, step: int) -> dict[str, float]:
        _, scores = predict_and_score(task, model, tokenizer, chosen, options)
        return {f"val_{k}": v for k, v in scores.items()}

    return hook


def selected_evaluation(run_dir: Path, best: dict | None) -> dict:
    """The evaluation record (metrics and checkpoint) that the engine's ``best.json`` names."""
    if best is None:
        raise UserError(f"{run_dir}: the run saved no checkpoint to select from")
    newest = newest_valid_checkpoint(run_dir / "checkpoints")
    evals = json.loads((newest / STATE).read_text())["evals"] if newest is not None else []
    return next(e for e in evals if e["step"] == best["step"])


def finetune_one(config: FinetuneConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """One fine-tuning run at one learning rate; returns (and writes) ``results.json``.

    The checkpoint is chosen once, by the engine (its ``best.json``, the task's App. B rule);
    ``results.json`` records that choice with its metrics."""
    task = get_downstream_task(config.task)
    train_examples = read_split(task, config, "train")
    val_examples = read_split(task, config, "validation")
    layout = task.layout(config.data, config.data_format)
    if layout is not None and layout.find(Path(config.data), "test"):
        read_split(task, config, "test")  # checked now, not after hours of training
    run_dir = Path(config.out_dir)
    saved = run_dir / TOKENIZER_DIR
    tokenizer = (
        load_run_tokenizer(saved) if resume and saved.is_dir() else choose_tokenizer(config, train_examples)
    )
    model = initial_model(config, tokenizer)
    settings = train_config(config, len(val_examples))
    check_lengths(make_collator(settings, model), model)  # the engine's check, before the decoding one
    if not task.is_language_model:
        check_decode_lengths(model, decode_options(config))  # now, not when evaluating
    train_source = DatasetSource(to_examples(train_examples, tokenizer), name=f"{task.name}/train")
    val_source = DatasetSource(to_examples(val_examples, tokenizer), name=f"{task.name}/validation")
    result = train(
        settings, model, train_source, val_source,
        resume=resume, overwrite=overwrite, extra_eval=generation_hook(task, config, tokenizer, val_examples),
        extra_config={"finetune": config.model_dump()},
        on_start=lambda folder: tokenizer.save(folder / TOKENIZER_DIR),
    )  # fmt: skip
    rule = task.defaults.selection
    results = {
        "task": task.name,
        "rule": rule,
        "rule_text": RULE_TEXT[rule],
        "selected": selected_evaluation(run_dir, result.best),
        "learning_rate": config.learning_rate,
        "init_from": config.init_from,
        "init_scheme": config.init_scheme if config.init_from else "random",
        "train_seconds": result.seconds,
        "steps": result.step,
    }
    write_json_atomic(run_dir / RESULTS_FILE, results)
    return results


def finetune(config: FinetuneConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune (``lr_sweep``: one run per learning rate under ``OUT/lr_<lr>``, the best one chosen)."""
    config = with_data_format(config.resolved())
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
    metric = task.selection_metric
    selected = [r["selected"] for r in runs]
    best = runs[selected.index(best_of(selected, metric))]
    results = {
        **best,
        "sweep": [{k: r[k] for k in ("learning_rate", "run", "selected")} for r in runs],
        "lr_rule": f"App. D.3: the learning rate whose selected checkpoint has the best {metric}",
    }
    write_json_atomic(run_dir / RESULTS_FILE, results)
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
