"""The one path from settings to a run, shared by the command line and the study executor.

``synthpre pretrain`` and a study's pre-training run both become a :class:`Pretraining` and call
:func:`pretrain`; ``synthpre finetune`` and a study's fine-tuning run both become a
``FinetuneConfig`` and call :func:`finetune`; ``synthpre evaluate`` and a study's test decoding
both call :func:`evaluate`.  Neither the CLI nor a study builds models, mixtures or tokenizers
itself, so the two cannot drift apart (the same settings train the same model, byte for byte).

Settings are validated here and the errors name them (``vocab``, ``task_params``); the CLI's flags
are the same names with dashes (``--vocab``).  Heavy imports (torch) happen inside the functions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthpre.errors import UserError
from synthpre.tokens import TokenSpace, token_space
from synthpre.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from synthpre.data.stream import MixtureSource
    from synthpre.downstream.config import FinetuneConfig
    from synthpre.tokenizer import TextTokenizer
    from synthpre.train.engine import TrainResult


def _comma_list(value: Any) -> Any:
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class Pretraining(BaseModel):
    """A synthetic pre-training run (App. A): the data, the model and the engine's settings."""

    model_config = ConfigDict(extra="forbid")

    task: list[str] = Field(min_length=1, description="task name, or several mixed: lime_induct,lime_deduct")
    rates: list[float] | None = Field(None, description="mixture rates, one per task (default: equal)")
    model: str = Field("t5-small", description="named model config (`synthpre models`)")
    vocab: str | None = Field(None, description="content token ids LO:HI (None: 2:31999, T5's)")
    task_params: dict[str, Any] = Field(
        default_factory=dict, description="task options; each goes to every task whose parameters have it"
    )
    train: TrainConfig

    _split_tasks = field_validator("task", "rates", mode="before")(_comma_list)


def make_mixture(names: list[str], task_params: dict[str, Any], space: TokenSpace) -> list[tuple[Any, Any]]:
    """``(task, params)`` for each name, validated against ``space``; each of ``task_params`` goes to
    every task whose parameters have it, and one that fits none is an error."""
    from synthpre.tasks import get_task

    mixture, used = [], set()
    for task in [get_task(name) for name in names]:
        fields = {f.name for f in dataclasses.fields(task.params_cls)}
        mine = {k: v for k, v in task_params.items() if k in fields}
        used |= set(mine)
        try:
            params = task.params_cls(**mine)
        except TypeError as error:
            raise UserError(f"task_params of {task.name!r}: {error}") from None
        if hasattr(params, "validate"):
            params.validate(space)
        mixture.append((task, params))
    unused = set(task_params) - used
    if unused:
        raise UserError(f"task options {sorted(unused)} (task_params) apply to none of the tasks {names}")
    return mixture


def build_pretraining(settings: Pretraining) -> tuple[MixtureSource, torch.nn.Module]:
    """The training stream and the freshly initialized model of a pre-training run (nothing written).

    The vocabulary follows :func:`synthpre.model.model_vocab_size`, the one rule for every run."""
    from synthpre.data.stream import MixtureSource
    from synthpre.model import build_model, model_vocab_size

    space = token_space(settings.vocab)
    seed = settings.train.seed
    mixture = make_mixture(settings.task, settings.task_params, space)
    source = MixtureSource(mixture, space, seed=seed, rates=settings.rates)
    vocab_size = model_vocab_size(settings.model, space)
    model = build_model(settings.model, vocab_size, dropout_rate=settings.train.dropout, seed=seed)
    return source, model


def pretrain(
    settings: Pretraining, *, resume: bool = False, overwrite: bool = False, extra_config: dict | None = None
) -> TrainResult:
    """Build and train a pre-training run; its ``best.json`` (App. A's rule) names the checkpoint."""
    from synthpre.train.engine import train

    source, model = build_pretraining(settings)
    extra = {
        "command": "pretrain",
        "pretraining": settings.model_dump(exclude={"train"}),
        **(extra_config or {}),
    }
    return train(
        settings.train, model, source, source.validation(), resume=resume, overwrite=overwrite,
        extra_config=extra,
    )  # fmt: skip


def finetune(config: FinetuneConfig, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune on a downstream task (App. B; a learning-rate sweep when ``lr_sweep``): ``results.json``."""
    from synthpre.downstream.finetune import finetune as run_finetune

    return run_finetune(config, resume=resume, overwrite=overwrite)


def evaluate(
    run: Path, split: str = "test", *, beams: int = 1, limit: int | None = None, **options: Any
) -> dict:
    """Decode ``split`` with a fine-tuning run's selected checkpoint and score it (``synthpre evaluate``;
    ``options``: those of ``synthpre.downstream.evaluate.evaluate_run``); returns ``metrics.json``."""
    from synthpre.downstream.evaluate import evaluate_run

    return evaluate_run(Path(run), split, beams=beams, limit=limit, **options)


def train_tokenizer(
    task: str, out: Path, data: Path | None = None, vocab_size: int = 32_000, *, overwrite: bool = False
) -> TextTokenizer:
    """A SentencePiece tokenizer trained offline on a downstream task's training split, written to
    ``out`` whole or not at all (``synthpre tokenizer train``; fine-tuning trains the same one)."""
    import os
    import shutil
    import tempfile

    from synthpre.downstream.config import FinetuneConfig
    from synthpre.downstream.finetune import read_split, tokenizer_text
    from synthpre.downstream.registry import get_downstream_task
    from synthpre.tokenizer import train_sentencepiece

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} is not empty: pass --overwrite to replace it, or choose another --out")
    settings = FinetuneConfig(task=task, out_dir=str(out), data=str(data) if data else None)
    examples = read_split(get_downstream_task(task), settings, "train")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        tokenizer = train_sentencepiece(tokenizer_text(examples), tmp, vocab_size)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return tokenizer
