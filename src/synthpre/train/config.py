"""``TrainConfig``: every knob of a training run (pydantic only, so the command line builds its
options from it without importing torch)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Fields that may change between a run and its resumption (where it lives, how long, how it looks).
NOT_IDENTITY = ("out_dir", "max_steps", "progress", "stop_at_threshold", "fsdp", "log_with")


class TrainConfig(BaseModel):
    """Every knob of a training run; defaults are App. A's synthetic pre-training recipe."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str = Field(description="run folder: config.json, metrics.jsonl, tb/, checkpoints/, best.json")
    seed: int = Field(0, description="seed of the data order and of dropout")
    max_steps: int = Field(80_000, gt=0, description="optimizer steps (reference pretrain.sh: 80,000)")
    batch_size: int = Field(128, gt=0, description="global batch, split evenly over the processes")
    max_input_len: int = Field(512, ge=2, description="inputs are truncated to this many tokens (with EOS)")
    max_target_len: int = Field(512, ge=2, description="targets are truncated to this many tokens (with EOS)")
    dropout: float | None = Field(0.1, ge=0, lt=1, description="dropout rate set on the model; None keeps it")
    loss_on: Literal["target", "all"] = Field(
        "target",
        description="decoder-only models: loss on the target tokens (after the input and its EOS), or on "
        "every token (language-like streams)",
    )
    pack_length: int | None = Field(
        None,
        gt=0,
        description="decoder-only models: pack each batch's rows (input EOS target EOS, truncated as "
        "always), whole and in batch order (first fit), into rows of exactly this many tokens, each "
        "example masked from the others and its positions restarting at 0 (the loss is the unpacked "
        "batch's); at least max_input_len + max_target_len; validation stays unpacked",
    )
    lr_schedule: Literal["t5_rsqrt", "constant"] = Field(
        "t5_rsqrt", description="t5_rsqrt: min(lr, 1/sqrt(step)); constant: lr (fine-tuning, App. B)"
    )
    learning_rate: float = Field(1e-2, gt=0, description="with t5_rsqrt, 1e-2 gives 1/sqrt(max(step, 1e4))")
    z_loss: float = Field(0.0, ge=0, description="weight of the z-loss log(Z)^2 (T5X v1.1 uses 1e-4)")
    eval_every: int = Field(5000, gt=0, description="evaluate validation token accuracy every N steps")
    save_every: int = Field(5000, gt=0, description="save a checkpoint every N steps")
    num_val_examples: int = Field(10_000, gt=0, description="size of the fixed held-out validation set")
    eval_batch_size: int | None = Field(None, gt=0, description="validation batch (default: batch_size)")
    keep_last_k: int | None = Field(None, gt=0, description="keep the newest k checkpoints (+ the selected)")
    selection: Literal["first_above_threshold", "max", "fixed_step"] = Field(
        "first_above_threshold",
        description="App. A: first checkpoint >= threshold (else max), or max; App. B: also fixed_step",
    )
    selection_metric: str = Field("val_token_accuracy", description="metric the selection rule reads")
    selection_threshold: float = Field(0.99, description="threshold of first_above_threshold")
    selection_step: int | None = Field(
        None, gt=0, description="the step that fixed_step selects (App. B: CNNDM-10K's 50K)"
    )
    stop_at_threshold: bool = Field(False, description="stop once a checkpoint meets the threshold")
    bucket_steps: int = Field(1, gt=0, description="sort each window of N steps' examples by length")
    pad_multiple: int = Field(8, gt=0, description="pad batches to a multiple of this length")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast mixed precision")
    tf32: bool = Field(False, description="allow TF32 matmuls on NVIDIA GPUs")
    compile: bool = Field(False, description="torch.compile the model")
    fsdp: bool = Field(
        False, description="shard weights, gradients and optimizer state over the processes (FSDP2; t5-base+)"
    )
    log_every: int = Field(50, gt=0, description="write training metrics every N steps")
    progress: bool = Field(True, description="show a progress bar")
    log_with: Literal["tensorboard", "wandb", "mlflow"] = Field(
        "tensorboard", description="tracker beside metrics.jsonl and tb/: wandb or mlflow (optional extras)"
    )

    @model_validator(mode="after")
    def _fixed_step_has_a_step(self) -> TrainConfig:
        if self.selection == "fixed_step" and self.selection_step is None:
            raise ValueError("selection fixed_step needs selection_step, the step it selects")
        return self

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues (all but ``NOT_IDENTITY``)."""
        return {k: v for k, v in self.model_dump().items() if k not in NOT_IDENTITY}
