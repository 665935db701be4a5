"""``FinetuneConfig``: the settings of a fine-tuning run (pydantic only: the command line builds its
options from it without importing torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthpre.train.selection import BEST_VAL_METRIC


class FinetuneConfig(BaseModel):
    """A fine-tuning run; ``None`` hyper-parameters take the task's App. D.3 defaults (see ``resolved``).

    The fields shared with ``TrainConfig`` (same name, same meaning) go to the engine as they are."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="downstream task (`synthpre downstream list`)")
    out_dir: str = Field(description="the run folder")
    model: str = Field(
        "t5-small", description="named model config of a fresh model (random or statistics init)"
    )
    data: str | None = Field(
        None, description="folder with the task's downloaded files (the App. D tasks; text_lm: local text)"
    )
    data_format: str | None = Field(
        None, description="layout of the files in data (default: detected; `synthpre downstream list`)"
    )
    init_from: str | None = Field(
        None, description="checkpoint, pre-training run folder, or local HF folder (T5 or decoder-only)"
    )
    init_scheme: str = Field(
        "full", description="full (copy all weights) or a statistics scheme (`synthpre init`)"
    )
    pre_attn_ln: float | None = Field(
        None, description="Tables 3/8: a fresh model whose pre-attention layer norms are all this value"
    )
    tokenizer: str | None = Field(
        None, description="'chars', or a local tokenizer folder (see docs/downstream.md)"
    )
    vocab: str | None = Field(
        None,
        description="LO:HI of the synthetic pre-training compared with: a fresh model gets its vocabulary",
    )
    vocab_size: int | None = Field(
        None, gt=0, description="vocabulary of a fresh model (default: from vocab, else the tokenizer's /8)"
    )
    learning_rate: float | None = Field(None, gt=0, description="constant learning rate")
    lr_sweep: list[float] | None = Field(None, description="one run per learning rate, the best kept")
    train_size: int | None = Field(None, gt=0, description="a fixed subset of N training examples (Table 4)")
    val_size: int | None = Field(None, gt=0, description="only the first N validation examples (quick runs)")
    max_steps: int | None = Field(None, gt=0, description="optimizer steps")
    eval_every: int | None = Field(None, gt=0, description="evaluate and save a checkpoint every N steps")
    batch_size: int | None = Field(None, gt=0, description="global batch")
    max_input_len: int | None = Field(None, ge=2, description="input length in tokens")
    max_target_len: int | None = Field(None, ge=2, description="target length in tokens")
    max_decode_len: int | None = Field(None, gt=0, description="max decoded tokens")
    eval_decode: int | None = Field(
        None, ge=0, description="validation examples decoded at each evaluation (default: all for the "
        "tasks selected on a generation metric and the offline seq2seq tasks, none otherwise; text_lm "
        "is never decoded)"
    )  # fmt: skip
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout during fine-tuning (T5: 0.1)")
    bucket_steps: int = Field(1, gt=0, description="sort each window of N steps' examples by length")
    lowercase: bool = Field(False, description="lower-case inputs and targets (Krishna et al.'s CNNDM-10K)")
    seed: int = Field(0, description="seed of the data order, dropout and a fresh model")
    progress: bool = Field(True, description="show a progress bar")
    log_with: Literal["tensorboard", "wandb", "mlflow"] = Field(
        "tensorboard", description="tracker beside metrics.jsonl and tb/: wandb or mlflow (optional extras)"
    )

    def resolved(self) -> FinetuneConfig:
        """Every ``None`` hyper-parameter replaced by the task's default."""
        from synthpre.downstream.registry import get_downstream_task

        task = get_downstream_task(self.task)
        d = task.defaults
        decode_all = not task.is_language_model and (d.selection == BEST_VAL_METRIC or not task.needs_data)
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
