"""THE training loop, for synthetic pre-training and fine-tuning alike (App. A and App. B).

One ``train(config, model, train_source, val_source)`` call: Adafactor with T5's schedule (or a
constant rate), batches that are pure functions of (seed, step, rank) with dynamic padding, loss on
target tokens (optional z-loss), teacher-forced validation accuracy, atomic checksummed checkpoints,
App. A's checkpoint selection, exact resume, and ``accelerate`` for several processes (DDP, or
FSDP2 with ``fsdp``; launch with ``accelerate launch``).  Read it top to bottom: ``train`` is the whole story.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from synthpre.data.stream import (
    LABEL_IGNORE,
    BatchStream,
    ExampleSource,
    check_batch_split,
    collate,
    collated_lengths,
)
from synthpre.errors import UserError
from synthpre.train import checkpoints as ckpt
from synthpre.train.config import NOT_IDENTITY, TrainConfig
from synthpre.train.metrics import MetricsLog

# A hook run at every evaluation on the main process with the unwrapped model in eval mode and the
# step; its metrics (e.g. generation scores of fine-tuning) join the evaluation record.
ExtraEval = Callable[[torch.nn.Module, int], dict[str, float]]

RUN_FILES = ("config.json", "metrics.jsonl", "best.json", "checkpoints", "tb")


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


def check_fsdp(config: TrainConfig, accelerator, extra_eval: ExtraEval | None) -> None:
    """``--fsdp`` is the engine's own FSDP2; refuse what it cannot do (``UserError``)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        raise UserError(
            "accelerate's FSDP options are not supported: launch without them and pass --fsdp "
            "(synthpre shards the model itself so that Adafactor can step the sharded weights)"
        )
    if config.fsdp and config.lr_schedule != "t5_rsqrt":
        raise UserError("--fsdp supports the t5_rsqrt schedule (pre-training); fine-tune without it")
    if config.fsdp and extra_eval is not None:
        raise UserError("--fsdp cannot run generation metrics on one process; fine-tune without it")


def check_lengths(config: TrainConfig, model: torch.nn.Module) -> None:
    """Relative attention has no hard length limit; a config that declares ``n_positions`` sets one."""
    limit = getattr(model.config, "n_positions", None)
    longest = max(config.max_input_len, config.max_target_len)
    if limit is not None and longest > limit:
        raise UserError(
            f"max length {longest} is above what this model supports ({limit}); lower --max-*-len"
        )


def set_dropout(model: torch.nn.Module, rate: float) -> None:
    """Every dropout of the model: the ``nn.Dropout`` layers and the attention-probability dropout,
    which transformers' T5 keeps as a plain float attribute ``dropout`` of each attention module."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = rate
    model.config.dropout_rate = rate


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
    train = {k: v for k, v in full["train"].items() if k not in NOT_IDENTITY}
    model = {k: v for k, v in full["model"].items() if k not in ("transformers_version", "dtype")}
    return {**full, "train": train, "model": model}


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


def check_run_dir(run_dir: Path, full: dict, resume: bool, overwrite: bool) -> None:
    """Refuse (``UserError``, nothing written) to mix two runs in one folder."""
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not existing or overwrite:
        return
    if not resume:
        raise UserError(
            f"{run_dir} already holds a run ({', '.join(existing)}): pass --resume to continue it, "
            "--overwrite to start over, or choose another --out"
        )
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise UserError(f"cannot resume {run_dir}: it has no config.json; use --overwrite to start over")
    old, new = _identity(json.loads(config_file.read_text())), _identity(json.loads(json.dumps(full)))
    if old != new:
        changed = _differences(old, new)
        raise UserError(
            f"cannot resume {run_dir}: its config.json differs from this run's in {changed}; "
            "resume with the same settings, or use --overwrite / another --out"
        )


def clear_run_dir(run_dir: Path) -> None:
    """Remove the files of a previous run (``--overwrite``); other files in the folder stay."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


class Validation:
    """The fixed held-out set, collated once (sorted by length) and sharded over processes."""

    def __init__(self, source: ExampleSource, config: TrainConfig, rank: int, world_size: int) -> None:
        available = source.num_examples
        n = config.num_val_examples if available is None else min(config.num_val_examples, available)
        examples = source.examples(np.arange(n, dtype=np.int64))
        order = np.argsort(examples.input_lengths + examples.target_lengths, kind="stable")
        size = config.eval_batch_size or config.batch_size
        chunks = [order[i : i + size] for i in range(0, n, size)]
        self.batches = [
            collate(examples.take(rows), config.max_input_len, config.max_target_len, config.pad_multiple)
            for rows in chunks[rank::world_size]
        ]
        # FSDP gathers parameters inside every forward pass, so all processes must make the same number
        # of passes: a process short of a batch runs the first one again and ignores the result.
        passes = math.ceil(len(chunks) / world_size)
        self.idle_passes = passes - len(self.batches)
        if self.idle_passes:
            self.idle_batch = collate(
                examples.take(chunks[0]), config.max_input_len, config.max_target_len, config.pad_multiple
            )

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, accelerator) -> dict[str, float]:
        """Teacher-forced loss, token accuracy and sequence accuracy (all target tokens right)."""
        for _ in range(self.idle_passes):
            with accelerator.autocast():
                forward_logits(model, {k: v.to(accelerator.device) for k, v in self.idle_batch.items()})
        totals = torch.zeros(4, dtype=torch.float64, device=accelerator.device)
        for batch in self.batches:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                logits = forward_logits(model, batch)
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


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Teacher forcing: decoder inputs are the labels shifted right (start token 0), as in T5."""
    decoder_input_ids = batch["labels"].clamp_min(0)
    decoder_input_ids = torch.cat([torch.zeros_like(decoder_input_ids[:, :1]), decoder_input_ids[:, :-1]], 1)
    return model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=decoder_input_ids,
        use_cache=False,  # no key/value cache: teacher forcing never reuses it
    ).logits


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
) -> TrainResult:
    """Train ``model`` on ``train_source``; see the module docstring.  ``extra_config`` joins config.json."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    # ---- set-up: everything that can fail on bad input fails here, before anything is written
    # cpu=True without CUDA: several CPU processes (torchrun / `accelerate launch --multi_gpu`) use gloo.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision="bf16" if config.precision == "bf16" else "no"
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    check_batch_split(config.batch_size, world)
    check_lengths(config, model)
    check_fsdp(config, accelerator, extra_eval)
    sharded = config.fsdp and world > 1
    if config.fsdp and world == 1:
        print("note: --fsdp has no effect on one process (launch several with `accelerate launch`)")
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    run_dir = Path(config.out_dir)
    full = full_config(config, model, train_source, val_source, extra_config or {})
    check_run_dir(run_dir, full, resume, overwrite)
    if config.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(int(np.random.SeedSequence([config.seed, rank]).generate_state(1)[0]))
    model.to(accelerator.device)
    rule = ckpt.SelectionRule(config.selection_metric, config.selection, config.selection_threshold)
    ckpt_root = run_dir / "checkpoints"

    # ---- the run folder: fresh, overwritten, or resumed from the newest complete checkpoint
    progress = {"step": 0, "evals": [], "tokens": 0, "elapsed_s": 0.0, "cpu_s": 0.0}  # trainer_state.json
    if accelerator.is_main_process:
        if overwrite:
            clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_json_atomic(run_dir / "config.json", full)
        ckpt.remove_leftovers(ckpt_root)
    accelerator.wait_for_everyone()
    newest = ckpt.newest_valid_checkpoint(ckpt_root) if resume else None
    if newest is not None:
        progress.update(ckpt.load_checkpoint(newest, model, rank))
        if accelerator.is_main_process:
            print(f"resuming from {newest} (step {progress['step']})")
    start_step, evals = progress["step"], progress["evals"]
    log = MetricsLog(run_dir, start_step, enabled=accelerator.is_main_process)

    if sharded:  # shard first: the optimizer must see the sharded weights
        from synthpre.train.sharded import shard_model

        shard_model(model)
        optimizer = accelerator.prepare(make_optimizer(config, model, sharded=True))
    else:  # DDP over several processes
        model, optimizer = accelerator.prepare(model, make_optimizer(config, model))
    if newest is not None:
        ckpt.load_optimizer(newest, accelerator.unwrap_model(model), optimizer.optimizer)
    if config.compile:
        model = torch.compile(model)
    stream = BatchStream(train_source, config.seed, config.batch_size, rank, world, config.bucket_steps)
    validation = Validation(val_source, config, rank, world)

    def next_batch(step: int) -> tuple[dict[str, torch.Tensor], int, int]:
        """This process's collated batch, and the GLOBAL batch's target tokens and real (unpadded)
        tokens: counted on the CPU from the global batch, a pure function of the step, so that no
        process waits on a collective (or the host on a device) to learn them."""
        everyone = stream.global_examples(step)
        batch = collate(
            stream.share(everyone), config.max_input_len, config.max_target_len, config.pad_multiple
        )
        targets = int(collated_lengths(everyone.target_lengths, config.max_target_len).sum())
        inputs = int(collated_lengths(everyone.input_lengths, config.max_input_len).sum())
        return batch, targets, targets + inputs

    def save(step: int) -> None:
        """All processes write their RNG state (and gather FSDP shards); the main process writes the rest."""
        tmp = ckpt_root / (ckpt.TMP_PREFIX + ckpt.step_dir_name(step))
        if accelerator.is_main_process:
            ckpt.begin_checkpoint(ckpt_root, step)
        accelerator.wait_for_everyone()
        ckpt.write_rng_file(tmp, rank)
        unwrapped = accelerator.unwrap_model(model)
        model_state, optimizer_state = ckpt.full_state(unwrapped, optimizer.optimizer, sharded, world > 1)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"step": step, "evals": evals, "tokens": tokens_total, **clocks()}
            ckpt.write_main_files(tmp, unwrapped, model_state, optimizer_state, state)
            ckpt.finish_checkpoint(tmp, step)
        accelerator.wait_for_everyone()

    def prune(best: dict | None) -> None:
        if config.keep_last_k is None or not accelerator.is_main_process:
            return
        keep = set(ckpt.checkpoint_steps(ckpt_root)[: config.keep_last_k])
        for old in ckpt.checkpoint_steps(ckpt_root):
            if old not in keep and (best is None or best["step"] != old):
                ckpt.remove_checkpoint(ckpt_root / ckpt.step_dir_name(old))

    # ---- the loop
    prefetch = ThreadPoolExecutor(max_workers=1)
    pending = prefetch.submit(next_batch, start_step)
    sums = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # loss, z, right (this process)
    started = window_start = time.perf_counter()
    started_cpu = time.process_time()

    def clocks() -> dict[str, float]:
        """Wall seconds and CPU seconds of this process (all threads; robust to a busy machine)."""
        return {
            "elapsed_s": progress["elapsed_s"] + time.perf_counter() - started,
            "cpu_s": progress.get("cpu_s", 0.0) + time.process_time() - started_cpu,
        }

    tokens_total, window_tokens, window_targets = progress["tokens"], 0, 0  # global counts
    best, last_eval, step = rule.select(evals), (evals[-1] if evals else None), start_step
    model.train()
    bar = log.progress_bar(config, start_step)
    while step < config.max_steps:
        cpu_batch, global_tokens, real_tokens = pending.result()
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in cpu_batch.items()}
        if step + 1 < config.max_steps:
            pending = prefetch.submit(next_batch, step + 1)
        with accelerator.autocast():
            logits = forward_logits(model, batch).float()
        ce_sum = summed_cross_entropy(logits, batch["labels"])
        loss = ce_sum
        z_sum = torch.zeros((), device=logits.device)
        if config.z_loss:
            z_sum = (torch.logsumexp(logits, -1).square() * (batch["labels"] != LABEL_IGNORE)).sum()
            loss = loss + config.z_loss * z_sum
        # Normalize by the GLOBAL number of target tokens: DDP's gradient mean then equals the gradient
        # of the mean over the whole batch, whatever the split over processes.
        accelerator.backward(loss * (world / global_tokens))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        right = token_hits(logits.detach(), batch["labels"]).sum()
        sums += torch.stack([ce_sum.detach(), z_sum.detach(), right.float()]).double()
        window_targets += global_tokens
        window_tokens += real_tokens
        tokens_total += real_tokens
        bar.update(1)
        if step % config.log_every == 0 or step == config.max_steps:
            loss_sum, z_total, right_total = accelerator.reduce(sums, "sum").tolist()
            now = time.perf_counter()
            record = {
                "loss": loss_sum / window_targets,
                "token_accuracy": right_total / window_targets,
                "tokens_per_s": window_tokens / (now - window_start),  # real tokens (inputs + targets)
                "lr": learning_rate_at(config, step),
                "tokens": tokens_total,
                **clocks(),
            }
            if config.z_loss:
                record["z_loss"] = z_total / window_targets
            log.train(step, record)
            sums.zero_()
            window_tokens, window_targets, window_start = 0, 0, now

        is_eval = step % config.eval_every == 0 or step == config.max_steps
        is_save = step % config.save_every == 0 or step == config.max_steps
        if is_eval:
            model.eval()
            metrics = validation.evaluate(model, accelerator)
            if extra_eval is not None:
                extra = [
                    extra_eval(accelerator.unwrap_model(model), step) if accelerator.is_main_process else None
                ]
                metrics.update(broadcast_object_list(extra)[0])
            model.train()
            # The first evaluation over the threshold is always kept as a checkpoint (App. A selects it).
            is_save = is_save or (rule.crosses_threshold(metrics) and not (best and best["threshold_met"]))
            name = f"checkpoints/{ckpt.step_dir_name(step)}"
            last_eval = {"step": step, **metrics, "checkpoint": name if is_save else None}
            evals.append(last_eval)
            best = rule.select(evals)
            log.validation(step, {**metrics, **clocks()})
        if is_save:
            save(step)
            if accelerator.is_main_process and best is not None:
                ckpt.write_json_atomic(run_dir / "best.json", best)
            prune(best)
        if is_eval and config.stop_at_threshold and best is not None and best["threshold_met"]:
            break

    prefetch.shutdown()
    bar.close()
    log.close()
    seconds = time.perf_counter() - started
    accelerator.end_training()
    if world == 1:  # let a later train() in this process pick another precision (state is a singleton)
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    return TrainResult(run_dir, step, best, last_eval, seconds, (tokens_total - progress["tokens"]) / seconds)
