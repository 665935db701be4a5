"""THE training loop, for synthetic pre-training and fine-tuning alike (App. A and App. B).

One ``train(config, model, train_source, val_source)`` call for an encoder-decoder (T5) or a
decoder-only model (the model kind decides the collation: ``Collator``): Adafactor with T5's schedule
(or a constant rate), batches that are pure functions of (seed, step, rank) with dynamic padding, loss
on target tokens (optional z-loss; a decoder-only model may also learn every token, ``loss_on``),
teacher-forced validation accuracy, atomic checksummed checkpoints, the checkpoint selection of
App. A and App. B (``selection.py``), exact resume, and ``accelerate`` for several processes (DDP,
or FSDP2 with ``fsdp``; launch with ``accelerate launch``).

Read it top to bottom: the optimizer, the checks of the input, the forward pass and the validation
set, the :class:`Run` that a run's phases share, the phases themselves (``setup``, ``train_step``,
``evaluate_and_select``, ``save_and_prune``), and last ``train``, the loop that strings them together.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from synthpre.data.stream import LABEL_IGNORE, BatchStream, Collator, ExampleSource, check_batch_split
from synthpre.errors import UserError, disk_full, is_disk_full
from synthpre.model import is_causal, set_dropout
from synthpre.train import checkpoints as ckpt
from synthpre.train.config import TrainConfig
from synthpre.train.metrics import MetricsLog
from synthpre.train.runlock import LOCK_FILE, run_lock
from synthpre.train.selection import SelectionRule
from synthpre.train.trackers import check_tracker

logger = logging.getLogger(__name__)

# A hook run at every evaluation on the main process with the unwrapped model in eval mode and the
# step; its metrics (e.g. generation scores of fine-tuning) join the evaluation record.
ExtraEval = Callable[[torch.nn.Module, int], dict[str, float]]

# The files of a run: what "already holds a run" looks for and what overwrite removes.  Never the lock
# file (``runlock.py``): it is the current process's own, held while these checks run.
RUN_FILES = ("config.json", "metrics.jsonl", "best.json", "checkpoints", "tb")
CONFIG_BLOCKS = ("train", "model", "train_data", "val_data")  # what every config.json holds


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best: dict | None
    last_eval: dict | None
    seconds: float
    tokens_per_second: float


def make_optimizer(
    config: TrainConfig, model: torch.nn.Module, sharded: bool = False
) -> torch.optim.Optimizer:
    """Adafactor with parameter-scale updates, as T5 (no momentum, clipping threshold 1, decay -0.8).

    ``t5_rsqrt``: ``torch.optim.Adafactor`` steps with ``min(lr, 1/sqrt(t))``, so lr = 1e-2 is exactly
    T5's 1/sqrt(max(t, 10^4)); its out-of-place twin ``ShardedAdafactor`` for an FSDP-sharded model.
    ``constant``: transformers' Adafactor with a fixed relative step.
    """
    if config.lr_schedule == "t5_rsqrt":
        from synthpre.train.sharded import ShardedAdafactor

        adafactor = ShardedAdafactor if sharded else torch.optim.Adafactor
        return adafactor(model.parameters(), lr=config.learning_rate)
    from transformers.optimization import Adafactor

    return Adafactor(
        model.parameters(),
        lr=config.learning_rate,
        scale_parameter=True,
        relative_step=False,
        warmup_init=False,
    )


def learning_rate_at(config: TrainConfig, step: int) -> float:
    """The relative step size of optimizer step ``step`` (1-based), before parameter scaling."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    return min(config.learning_rate, 1 / math.sqrt(step))


# ---- checks of the input: they raise UserError before anything is written


def check_fsdp(config: TrainConfig, accelerator, extra_eval: ExtraEval | None) -> None:
    """``fsdp`` is the engine's own FSDP2; refuse what it cannot do (``UserError``)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        raise UserError(
            "accelerate's FSDP options are not supported: launch without them and set fsdp (--fsdp) "
            "(synthpre shards the model itself so that Adafactor can step the sharded weights)"
        )
    if config.fsdp and config.lr_schedule != "t5_rsqrt":
        raise UserError("fsdp (--fsdp) supports the t5_rsqrt schedule (pre-training); fine-tune without it")
    if config.fsdp and extra_eval is not None:
        raise UserError("fsdp (--fsdp) cannot run generation metrics on one process; fine-tune without it")


def position_limit(model: torch.nn.Module) -> int | None:
    """The longest sequence ``model`` reads: T5's relative attention has no hard limit (None); a config
    that declares ``n_positions`` (GPT-2) or ``max_position_embeddings`` (a rotary decoder-only model)
    sets one."""
    limit = getattr(model.config, "n_positions", None)
    if limit is None and is_causal(model):
        limit = getattr(model.config, "max_position_embeddings", None)
    return limit


def check_lengths(collator: Collator, model: torch.nn.Module) -> None:
    """Rows must fit the model's :func:`position_limit`; a decoder-only row holds the input and the target."""
    limit = position_limit(model)
    if limit is not None and collator.max_row_length > limit:
        what = "max_input_len + max_target_len" if collator.causal else "max_input_len/max_target_len"
        raise UserError(
            f"{what} = {collator.max_row_length} is above what this model supports ({limit}); lower "
            "max_input_len/max_target_len (--max-input-len/--max-target-len)"
        )


# Attention implementations whose mask transformers builds per document from packed position_ids in any
# batch (tested); flash_attention_2 does so only for a single flattened row.
PACKED_ATTENTION = ("sdpa", "eager")


def make_collator(config: TrainConfig, model: torch.nn.Module) -> Collator:
    """The model kind decides the collation (``Collator``); ``loss_on="all"`` and ``pack_length`` need a
    decoder-only model, and a packed row holds the longest example row in attention of
    ``PACKED_ATTENTION``."""
    causal = is_causal(model)
    if config.loss_on == "all" and not causal:
        raise UserError(
            "loss_on all (--loss-on all) trains a decoder-only model on every token; an encoder-decoder "
            "model learns its targets: leave it out, or choose a decoder-only --model (`synthpre models`)"
        )
    if config.pack_length is not None and not causal:
        raise UserError(
            "pack_length (--pack-length) packs the rows of a decoder-only model; an encoder-decoder model "
            "reads its inputs and targets apart: leave it out, or choose a decoder-only --model "
            "(`synthpre models`)"
        )
    collator = Collator(
        config.max_input_len, config.max_target_len, config.pad_multiple, causal, config.loss_on,
        config.pack_length,
    )  # fmt: skip
    if config.pack_length is not None and config.pack_length < collator.max_row_length:
        raise UserError(
            f"pack_length {config.pack_length} (--pack-length) is below the longest row, max_input_len + "
            f"max_target_len = {collator.max_row_length}: every example is packed whole, so use "
            f"--pack-length {collator.max_row_length} or more, or lower --max-input-len/--max-target-len"
        )
    attention = getattr(model.config, "_attn_implementation", None)
    if config.pack_length is not None and attention not in PACKED_ATTENTION:
        raise UserError(
            f"pack_length (--pack-length) needs attention that transformers masks per document from "
            f"position_ids ({', '.join(PACKED_ATTENTION)}); this model uses {attention}: leave it out"
        )
    return collator


def full_config(config: TrainConfig, model: torch.nn.Module, train_source, val_source, extra: dict) -> dict:
    """What ``config.json`` holds: the engine config, the model config, both data sources, and ``extra``."""
    return {
        "train": config.model_dump(),
        "model": model.config.to_dict(),
        "train_data": train_source.describe(),
        "val_data": val_source.describe(),
        **extra,
    }


def _identity(full: dict) -> dict:
    """What a resumed run must share with the run it continues: ``TrainConfig.identity()`` (a field
    that an older config.json lacks counts as its default), the model config less its version stamps,
    the data and the extra blocks.  ``ValidationError`` when ``full["train"]`` is no ``TrainConfig``."""
    full = json.loads(json.dumps(full))  # as config.json holds it
    model = {k: v for k, v in full["model"].items() if k not in ("transformers_version", "dtype")}
    return {**full, "train": TrainConfig(**full["train"]).identity(), "model": model}


def _differences(old: dict, new: dict) -> list[str]:
    """Dotted names of the settings that differ (one level into nested blocks)."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            names.append(key)
    return names


def read_resumed_config(run_dir: Path) -> dict:
    """The identity (``_identity``) of the run that ``config.json`` of ``run_dir`` describes, or a
    ``UserError`` that says what is damaged in it."""

    def damaged(why: str) -> UserError:
        return UserError(
            f"cannot resume {run_dir}: its config.json is damaged ({why}); use --overwrite to start over, "
            "or choose another --out"
        )

    config_file = run_dir / "config.json"
    try:
        full = json.loads(config_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise damaged("not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise damaged(f"not JSON: {error}") from None
    except OSError as error:
        raise UserError(
            f"cannot resume {run_dir}: cannot read its config.json ({error.strerror or error}); fix its "
            "permissions, or use --overwrite to start over"
        ) from None
    if not isinstance(full, dict):
        raise damaged(f"a JSON {type(full).__name__} where a JSON object of settings belongs")
    missing = [block for block in CONFIG_BLOCKS if block not in full]
    if missing:
        raise damaged(f"it lacks the block(s) {', '.join(map(repr, missing))}")
    not_objects = [block for block in CONFIG_BLOCKS if not isinstance(full[block], dict)]
    if not_objects:
        raise damaged(f"the block(s) {', '.join(map(repr, not_objects))} are not JSON objects")
    try:
        return _identity(full)
    except ValidationError as error:
        problems = "; ".join(f"train.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
        raise damaged(f"{problems}; or it was written by another version of synthpre") from None


def check_run_dir(run_dir: Path, full: dict, resume: bool, overwrite: bool) -> None:
    """Refuse (``UserError``, nothing written) to mix two runs in one folder, or to resume a run
    whose config.json is damaged or differs."""
    existing = [name for name in RUN_FILES if name != LOCK_FILE and (run_dir / name).exists()]
    if not existing or overwrite:
        return
    if not resume:
        raise UserError(
            f"{run_dir} already holds a run ({', '.join(existing)}): resume (--resume) to continue it, "
            "overwrite (--overwrite) to start over, or choose another out_dir (--out)"
        )
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise UserError(
            f"cannot resume {run_dir}: it has no config.json; overwrite (--overwrite) to start over"
        )
    old = read_resumed_config(run_dir)
    new = _identity(full)
    if old != new:
        changed = _differences(old, new)
        raise UserError(
            f"cannot resume {run_dir}: its config.json differs from this run's in {changed}; resume "
            "with the same settings, or overwrite (--overwrite) / choose another out_dir (--out)"
        )


def clear_run_dir(run_dir: Path) -> None:
    """Remove the files of a previous run (``overwrite``); other files in the folder stay, the lock
    file of this run among them."""
    for name in RUN_FILES:
        if name == LOCK_FILE:
            continue
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# ---- the forward pass, its loss and accuracy, and the validation set


def autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    """bf16 autocast when ``precision="bf16"`` (a no-op for fp32).  The engine's own, not accelerate's:
    the Accelerator is always made with ``mixed_precision="no"``, because accelerate keeps its
    settings in a process-wide state that cannot change, and a later run may pick another precision."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the non-padding target tokens (flat rows: 3x faster than [B, V, T])."""
    return F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), reduction="sum")


def token_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Target tokens whose logit is the largest (a tie for the largest counts as a hit).

    ``amax`` and one gather instead of ``argmax``: 4x faster on a CPU (``argmax`` over 32k logits
    is not vectorized), which is 1% of a t5-small training step.
    """
    picked = logits.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (picked >= logits.amax(-1)) & (labels != LABEL_IGNORE)


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor], causal: bool) -> torch.Tensor:
    """Logits aligned with ``batch["labels"]``.  Encoder-decoder: teacher forcing, the decoder reads the
    labels shifted right (start token 0), as in T5.  Decoder-only: the row itself (``collate_causal``
    already aligned each label with the position that predicts it); a packed batch (``pack_causal``)
    has ``position_ids`` and no ``attention_mask``, from which transformers masks each document to itself."""
    if causal:
        return model(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            position_ids=batch.get("position_ids"),
            use_cache=False,
        ).logits
    decoder_input_ids = batch["labels"].clamp_min(0)
    decoder_input_ids = torch.cat([torch.zeros_like(decoder_input_ids[:, :1]), decoder_input_ids[:, :-1]], 1)
    return model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=decoder_input_ids,
        use_cache=False,  # no key/value cache: teacher forcing never reuses it
    ).logits


class Validation:
    """The fixed held-out set, collated once (sorted by length, never packed: its sequence accuracy
    counts rows) and sharded over processes."""

    def __init__(
        self, source: ExampleSource, config: TrainConfig, collator: Collator, rank: int, world_size: int
    ) -> None:
        collator = collator.unpacked()
        available = source.num_examples
        n = config.num_val_examples if available is None else min(config.num_val_examples, available)
        examples = source.examples(np.arange(n, dtype=np.int64))
        order = np.argsort(examples.input_lengths + examples.target_lengths, kind="stable")
        self.config, self.causal = config, collator.causal
        size = config.eval_batch_size or config.batch_size
        chunks = [order[i : i + size] for i in range(0, n, size)]
        self.batches = [collator(examples.take(rows)) for rows in chunks[rank::world_size]]
        # FSDP gathers parameters inside every forward pass, so all processes must make the same number
        # of passes: a process short of a batch runs the first one again and ignores the result.
        passes = math.ceil(len(chunks) / world_size)
        self.idle_passes = passes - len(self.batches)
        if self.idle_passes:
            self.idle_batch = collator(examples.take(chunks[0]))

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, accelerator) -> dict[str, float]:
        """Teacher-forced loss, token accuracy and sequence accuracy (all target tokens right)."""
        for _ in range(self.idle_passes):
            with autocast(self.config, accelerator.device):
                forward_logits(
                    model, {k: v.to(accelerator.device) for k, v in self.idle_batch.items()}, self.causal
                )
        totals = torch.zeros(4, dtype=torch.float64, device=accelerator.device)
        for batch in self.batches:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with autocast(self.config, accelerator.device):
                logits = forward_logits(model, batch, self.causal)
            valid = batch["labels"] != LABEL_IGNORE
            loss = summed_cross_entropy(logits.float(), batch["labels"])
            right = token_hits(logits, batch["labels"])
            sequences_right = (right | ~valid).all(-1)
            totals += torch.stack([loss.double(), right.sum(), valid.sum(), sequences_right.sum()]).double()
        num_sequences = torch.tensor(
            [float(sum(len(b["labels"]) for b in self.batches))],
            dtype=torch.float64,
            device=accelerator.device,
        )
        totals = accelerator.reduce(totals, "sum")
        num_sequences = accelerator.reduce(num_sequences, "sum")
        loss_sum, right, count, sequences_right = totals.tolist()
        return {
            "val_loss": loss_sum / count,
            "val_token_accuracy": right / count,
            "val_sequence_accuracy": sequences_right / num_sequences.item(),
        }


# ---- a run: what its phases share


@dataclass
class Run:
    """What ``setup`` builds and the loop advances (nanoGPT keeps these as the globals of train.py)."""

    config: TrainConfig
    accelerator: Any
    model: torch.nn.Module  # wrapped for several processes (DDP), or sharded (FSDP2), maybe compiled
    optimizer: Any  # accelerate's wrapper; ``optimizer.optimizer`` is the torch optimizer
    collator: Collator  # the model kind's collation: encoder-decoder or decoder-only
    stream: BatchStream
    validation: Validation
    rule: SelectionRule
    log: MetricsLog
    run_dir: Path
    sharded: bool
    extra_eval: ExtraEval | None
    trainer_state: dict  # trainer_state.json of the checkpoint resumed from (zeros for a fresh run)
    step: int = 0
    tokens_total: int = 0  # real (unpadded) tokens of the global batches so far
    evals: list[dict] = field(default_factory=list)
    best: dict | None = None  # best.json
    last_eval: dict | None = None
    started: float = 0.0
    started_cpu: float = 0.0

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def autocast(self) -> torch.autocast:
        return autocast(self.config, self.accelerator.device)

    def start_clocks(self) -> None:
        self.started, self.started_cpu = time.perf_counter(), time.process_time()

    def clocks(self) -> dict[str, float]:
        """Wall seconds and CPU seconds of this process (all threads; robust to a busy machine), the
        resumed run's included."""
        return {
            "elapsed_s": self.trainer_state["elapsed_s"] + time.perf_counter() - self.started,
            "cpu_s": self.trainer_state.get("cpu_s", 0.0) + time.process_time() - self.started_cpu,
        }


@dataclass
class Window:
    """The training metrics since the last log row: this process's loss, z-loss and right-token sums
    (on the device), and the global batches' target and real tokens (counted on the CPU)."""

    sums: torch.Tensor
    targets: int = 0
    tokens: int = 0
    start: float = 0.0


# ---- the phases of a run: setup, a training step, evaluation and selection, a checkpoint


def make_accelerator():
    """accelerate keeps its settings in a process-wide state that cannot change once made, so the
    engine makes it with ``mixed_precision="no"`` and autocasts to bf16 itself: runs of either
    precision may follow one another in a process.  A state made before by another library
    (transformers' ``Trainer`` with ``bf16=True``) is kept as it is; see ``check_accelerator``.
    ``cpu=True`` without CUDA: several CPU processes (torchrun / `accelerate launch --multi_gpu`) use gloo."""
    from accelerate import Accelerator
    from accelerate.state import is_initialized

    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=None if is_initialized() else "no")


def check_accelerator(accelerator) -> None:
    """A mixed precision that another library set for this process: bf16 on one process is undone
    (``prepare_model``); a loss scaler (fp16) or DDP hooks cannot be (``UserError``)."""
    if accelerator.mixed_precision == "no" or (
        accelerator.mixed_precision == "bf16" and accelerator.num_processes == 1
    ):
        return
    raise UserError(
        f"this process's accelerate state was made with mixed_precision={accelerator.mixed_precision!r} "
        "before train() ran; the engine needs 'no' (it autocasts to bf16 itself with precision: bf16, "
        "--precision bf16): train in a fresh process"
    )


def open_run_dir(
    accelerator, run_dir: Path, full: dict, model: torch.nn.Module, *, resume: bool, overwrite: bool,
    on_start: Callable[[Path], None] | None,
) -> tuple[Path | None, dict]:  # fmt: skip
    """The run folder: fresh, overwritten, or resumed from the newest complete checkpoint (its model
    weights and this process's RNG are loaded).  Returns that checkpoint and its trainer state."""
    ckpt_root = run_dir / "checkpoints"
    trainer_state = {"step": 0, "evals": [], "tokens": 0, "elapsed_s": 0.0, "cpu_s": 0.0}
    if accelerator.is_main_process:
        if overwrite:
            clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_leftovers(run_dir, names=("config.json", "best.json"))
        ckpt.write_json_atomic(run_dir / "config.json", full)
        ckpt.remove_leftovers(ckpt_root)
        if on_start is not None:
            on_start(run_dir)
    accelerator.wait_for_everyone()
    newest = ckpt.newest_valid_checkpoint(ckpt_root) if resume else None
    if newest is not None:
        trainer_state.update(ckpt.load_checkpoint(newest, model, accelerator.process_index))
        if accelerator.is_main_process:
            logger.info("resuming from %s (step %d)", newest, trainer_state["step"])
    elif resume and accelerator.is_main_process:
        logger.warning("no usable checkpoint in %s: starting from step 0", ckpt_root)
    return newest, trainer_state


def prepare_model(
    config: TrainConfig, accelerator, model: torch.nn.Module, newest: Path | None, sharded: bool
) -> tuple[torch.nn.Module, Any]:
    """Wrap the model for several processes (DDP, or FSDP2 when ``sharded``), make its optimizer (and
    restore a resumed run's), compile it if asked."""
    if sharded:  # shard first: the optimizer must see the sharded weights
        from synthpre.train.sharded import shard_model

        shard_model(model)
        optimizer = accelerator.prepare(make_optimizer(config, model, sharded=True))
    else:  # DDP over several processes
        model, optimizer = accelerator.prepare(model, make_optimizer(config, model))
        if accelerator.mixed_precision != "no":  # another library's state: drop its autocast hooks
            model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    if newest is not None:
        ckpt.load_optimizer(newest, accelerator.unwrap_model(model), optimizer.optimizer)
    if config.compile:
        model = torch.compile(model)
    return model, optimizer


def raise_on_every_process(accelerator, failure: BaseException | None) -> None:
    """Raise on every process what failed on the main one (the others get a ``UserError``, or a
    ``RuntimeError``, with its message), so that no process waits forever at the next collective."""
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        shared = None if failure is None else (isinstance(failure, UserError), str(failure))
        shared = broadcast_object_list([shared])[0]
        if failure is None and shared is not None:
            is_user_error, message = shared
            failure = (
                UserError(message) if is_user_error else RuntimeError(f"the main process failed: {message}")
            )
    if failure is not None:
        raise failure


def lock_run_dir(accelerator, run_dir: Path, held: contextlib.ExitStack) -> None:
    """The main process locks ``run_dir`` (released by ``held``); all processes raise the same
    ``UserError`` when it is in use."""
    refused = None
    if accelerator.is_main_process:
        try:
            held.enter_context(run_lock(run_dir))
        except UserError as error:
            refused = error
    raise_on_every_process(accelerator, refused)


def setup(
    config: TrainConfig, model: torch.nn.Module, train_source: ExampleSource, val_source: ExampleSource,
    *, resume: bool, overwrite: bool, extra_eval: ExtraEval | None, extra_config: dict,
    on_start: Callable[[Path], None] | None, held: contextlib.ExitStack,
) -> Run:  # fmt: skip
    """Everything before the first step.  Every check comes first, so that bad input fails before
    anything is written; then the run folder, the model on its device(s) and its optimizer, the
    training stream and the validation set.  The main process takes the run folder's lock
    (``runlock.py``) before the checks of the folder, and ``held`` keeps it until ``train`` ends."""
    accelerator = make_accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    # ---- checks: bad input fails here, before anything is written
    check_accelerator(accelerator)
    check_batch_split(config.batch_size, world)
    collator = make_collator(config, model)
    check_lengths(collator, model)
    check_fsdp(config, accelerator, extra_eval)
    check_tracker(config.log_with)
    rule = SelectionRule.from_config(config)
    # FSDP2 shards over the process group: several processes, or one that torchrun started (a world
    # of one: the sharded code path on one GPU); a process in no group has nothing to shard over.
    sharded = config.fsdp and torch.distributed.is_initialized()
    if sharded:
        logger.info("fsdp (--fsdp): weights sharded over %d process(es)", world)
    elif config.fsdp:
        logger.info(
            "fsdp (--fsdp) has no effect on one process outside a process group (launch several with "
            "`accelerate launch --multi_gpu`, or one with `torchrun`)"
        )
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    run_dir = Path(config.out_dir)
    full = full_config(config, model, train_source, val_source, extra_config)
    lock_run_dir(accelerator, run_dir, held)
    check_run_dir(run_dir, full, resume, overwrite)
    # ---- the run folder, then the model on its device(s), its optimizer, and the data
    if config.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    model.to(accelerator.device)
    newest, trainer_state = open_run_dir(
        accelerator, run_dir, full, model, resume=resume, overwrite=overwrite, on_start=on_start
    )
    log = MetricsLog(
        run_dir, trainer_state["step"], accelerator.is_main_process, config.log_with, config.model_dump()
    )
    held.callback(log.close)  # a failed run's trackers end too
    model, optimizer = prepare_model(config, accelerator, model, newest, sharded)
    stream = BatchStream(train_source, config.seed, config.batch_size, rank, world, config.bucket_steps)
    validation = Validation(val_source, config, collator, rank, world)
    evals = trainer_state["evals"]
    return Run(
        config, accelerator, model, optimizer, collator, stream, validation, rule, log, run_dir, sharded,
        extra_eval, trainer_state, step=trainer_state["step"], tokens_total=trainer_state["tokens"],
        evals=evals, best=rule.select(evals), last_eval=evals[-1] if evals else None,
    )  # fmt: skip


def next_batch(run: Run, step: int) -> tuple[dict[str, torch.Tensor], int, int]:
    """This process's collated batch, and the GLOBAL batch's target tokens and real (unpadded)
    tokens: counted on the CPU from the global batch, a pure function of the step, so that no
    process waits on a collective (or the host on a device) to learn them."""
    everyone = run.stream.global_examples(step)
    learned, real = run.collator.token_counts(everyone)
    return run.collator(run.stream.share(everyone)), learned, real


def train_step(
    run: Run, window: Window, cpu_batch: dict[str, torch.Tensor], global_tokens: int, real_tokens: int
) -> None:
    """One optimizer step: loss on the target tokens (+ z-loss), backward, Adafactor; the step's
    loss and accuracy join ``window``."""
    config, accelerator = run.config, run.accelerator
    batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in cpu_batch.items()}
    with run.autocast():
        logits = forward_logits(run.model, batch, run.collator.causal).float()
    ce_sum = summed_cross_entropy(logits, batch["labels"])
    loss = ce_sum
    z_sum = torch.zeros((), device=logits.device)
    if config.z_loss:
        z_sum = (torch.logsumexp(logits, -1).square() * (batch["labels"] != LABEL_IGNORE)).sum()
        loss = loss + config.z_loss * z_sum
    # Normalize by the GLOBAL number of target tokens: DDP's gradient mean then equals the gradient
    # of the mean over the whole batch, whatever the split over processes.
    accelerator.backward(loss * (run.world / global_tokens))
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1

    right = token_hits(logits.detach(), batch["labels"]).sum()
    window.sums += torch.stack([ce_sum.detach(), z_sum.detach(), right.float()]).double()
    window.targets += global_tokens
    window.tokens += real_tokens
    run.tokens_total += real_tokens


def log_training(run: Run, window: Window) -> None:
    """A ``train`` row of metrics.jsonl: the window's loss and accuracy over all processes."""
    loss_sum, z_total, right_total = run.accelerator.reduce(window.sums, "sum").tolist()
    now = time.perf_counter()
    record = {
        "loss": loss_sum / window.targets,
        "token_accuracy": right_total / window.targets,
        "tokens_per_s": window.tokens / (now - window.start),  # real tokens (inputs + targets)
        "lr": learning_rate_at(run.config, run.step),
        "tokens": run.tokens_total,
        **run.clocks(),
    }
    if run.config.z_loss:
        record["z_loss"] = z_total / window.targets
    run.log.train(run.step, record)
    window.sums.zero_()
    window.tokens, window.targets, window.start = 0, 0, now


def evaluate_and_select(run: Run, scheduled_save: bool) -> bool:
    """Validate (and ``extra_eval`` on the main process), record the evaluation, re-apply the
    selection rule.  Returns whether this step is saved: a scheduled save, or an evaluation the rule
    must keep (App. A selects the first one over the threshold; App. B's fixed_step its step)."""
    from accelerate.utils import broadcast_object_list

    accelerator, model, step = run.accelerator, run.model, run.step
    model.eval()
    metrics = run.validation.evaluate(model, accelerator)
    if run.extra_eval is not None:
        with run.autocast():
            main_only = run.extra_eval(accelerator.unwrap_model(model), step) if run.is_main else None
        metrics.update(broadcast_object_list([main_only])[0])
    model.train()
    is_save = scheduled_save or run.rule.must_keep(step, metrics, run.best)
    name = f"checkpoints/{ckpt.step_dir_name(step)}"
    run.last_eval = {"step": step, **metrics, "checkpoint": name if is_save else None}
    run.evals.append(run.last_eval)
    run.best = run.rule.select(run.evals)
    run.log.validation(step, {**metrics, "tokens": run.tokens_total, **run.clocks()})
    return is_save


def check_free_space(run: Run) -> None:
    """Before a checkpoint, the main process compares the free space with the newest checkpoint's
    size: too little, and every process stops with a ``UserError`` before anything is written, so
    the run stays resumable from that checkpoint instead of dying mid-write."""
    problem = None
    if run.is_main:
        steps = ckpt.checkpoint_steps(run.ckpt_root)
        newest = run.ckpt_root / ckpt.step_dir_name(steps[0]) if steps else None
        needed = sum(p.stat().st_size for p in newest.rglob("*") if p.is_file()) if newest else 0
        if needed and needed > shutil.disk_usage(run.ckpt_root).free:
            problem = disk_full_at(run, needed)
    raise_on_every_process(run.accelerator, problem)


def disk_full_at(run: Run, needed: int | None) -> UserError:
    newest = ckpt.checkpoint_steps(run.ckpt_root)
    resumable = f", then resume (--resume) from step {newest[0]}" if newest else ""
    return disk_full(f"checkpoint step {run.step}", run.ckpt_root, needed, then=resumable)


def save_checkpoint(run: Run) -> None:
    """All processes write their RNG state (and gather FSDP shards); the main process writes the rest.
    A write that fails (a full disk) leaves no temporary folder behind and stops every process."""
    accelerator, root, step = run.accelerator, run.ckpt_root, run.step
    tmp = root / (ckpt.TMP_PREFIX + ckpt.step_dir_name(step))
    check_free_space(run)
    if run.is_main:
        ckpt.begin_checkpoint(root, step)
    accelerator.wait_for_everyone()
    ckpt.write_rng_file(tmp, run.rank)
    unwrapped = accelerator.unwrap_model(run.model)
    model_state, optimizer_state = ckpt.full_state(
        unwrapped, run.optimizer.optimizer, run.sharded, run.world > 1
    )
    accelerator.wait_for_everyone()
    failure = None
    if run.is_main:
        state = {"step": step, "evals": run.evals, "tokens": run.tokens_total, **run.clocks()}
        try:
            ckpt.write_main_files(tmp, unwrapped, model_state, optimizer_state, state)
            ckpt.finish_checkpoint(tmp, step)
        except Exception as error:
            shutil.rmtree(tmp, ignore_errors=True)
            failure = disk_full_at(run, None) if is_disk_full(error) else error
    raise_on_every_process(accelerator, failure)  # every process stops when the main one could not write
    accelerator.wait_for_everyone()


def save_and_prune(run: Run) -> None:
    """A checkpoint of this step, ``best.json``, and (``keep_last_k``) the removal of old checkpoints
    other than the newest k and the selected one."""
    save_checkpoint(run)
    if not run.is_main:
        return
    if run.best is not None:
        ckpt.write_json_atomic(run.run_dir / "best.json", run.best)
    if run.config.keep_last_k is None:
        return
    keep = set(ckpt.checkpoint_steps(run.ckpt_root)[: run.config.keep_last_k])
    for old in ckpt.checkpoint_steps(run.ckpt_root):
        if old not in keep and (run.best is None or run.best["step"] != old):
            ckpt.remove_checkpoint(run.ckpt_root / ckpt.step_dir_name(old))


# ---- the whole story


def train(
    config: TrainConfig,
    model: torch.nn.Module,
    train_source: ExampleSource,
    val_source: ExampleSource,
    *,
    resume: bool = False,
    overwrite: bool = False,
    extra_eval: ExtraEval | None = None,
    extra_config: dict | None = None,
    on_start: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_source``, validating on ``val_source``; see the module docstring.

    ``resume``: continue the run in ``config.out_dir`` from its newest complete checkpoint (the same
    settings only); ``overwrite``: start that run over; ``extra_eval``: metrics added to every
    evaluation; ``extra_config``: joins config.json.  ``on_start(run_dir)`` is called on the main
    process once every check has passed and config.json is written, before the first step: the place
    to write files of one's own into the run folder (fine-tuning writes its tokenizer there), so that
    bad input leaves nothing behind.
    """
    # The main process holds the run folder's lock from the checks until train returns or raises.
    with contextlib.ExitStack() as held:
        # ---- set-up: checks (nothing is written on bad input), run folder, model, optimizer, data
        run = setup(
            config, model, train_source, val_source, resume=resume, overwrite=overwrite,
            extra_eval=extra_eval, extra_config=extra_config or {}, on_start=on_start, held=held,
        )  # fmt: skip
        prefetch = ThreadPoolExecutor(max_workers=1)
        pending = prefetch.submit(next_batch, run, run.step)
        window = Window(torch.zeros(3, dtype=torch.float64, device=run.accelerator.device))
        run.start_clocks()
        window.start = run.started
        run.model.train()
        bar = run.log.progress_bar(config, run.step)
        while run.step < config.max_steps:
            # ---- one step on the prefetched batch, while a thread collates the next one
            batch, global_tokens, real_tokens = pending.result()
            if run.step + 1 < config.max_steps:
                pending = prefetch.submit(next_batch, run, run.step + 1)
            train_step(run, window, batch, global_tokens, real_tokens)
            bar.update(1)
            step = run.step
            if step % config.log_every == 0 or step == config.max_steps:
                log_training(run, window)
            # ---- evaluation and checkpoint selection, then a checkpoint (+ best.json)
            is_eval = step % config.eval_every == 0 or step == config.max_steps or run.rule.evaluates_at(step)
            is_save = step % config.save_every == 0 or step == config.max_steps
            if is_eval:
                is_save = evaluate_and_select(run, is_save)
            if is_save:
                save_and_prune(run)
            if is_eval and config.stop_at_threshold and run.best is not None and run.best["threshold_met"]:
                break
        # ---- the end
        prefetch.shutdown()
        bar.close()
        run.log.close()
        seconds = time.perf_counter() - run.started
        run.accelerator.end_training()
        tokens = run.tokens_total - run.trainer_state["tokens"]
        return TrainResult(run.run_dir, run.step, run.best, run.last_eval, seconds, tokens / seconds)
