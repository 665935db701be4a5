"""The run graph of a study: every run identified by a hash of its resolved config.

Pre-training runs come first and have no dependencies; each fine-tuning run depends on at most one
pre-training run (the one its init arm transfers from), and every fine-tuning run that uses the same
pre-training config shares that one run.  ``--shard i/n`` takes every n-th run of this fixed order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from synthpre.errors import UserError
from synthpre.experiments.spec import StudySpec
from synthpre.init import scheme_row_name

RANDOM_INIT = "Random Init"
PRETRAINED_T5 = "Pre-trained T5"


@dataclass(frozen=True)
class Arm:
    """How a fine-tuning run is initialized (one row of the paper's tables)."""

    kind: str  # "random" | "pretrained" (from a study pre-training run) | "checkpoint" | "pre_attn_ln"
    scheme: str | None = None
    pretrain: str | None = None  # label of the pre-training task
    checkpoint: str | None = None
    value: float | None = None

    @property
    def label(self) -> str:
        if self.kind == "random":
            return RANDOM_INIT
        if self.kind == "checkpoint":
            return PRETRAINED_T5
        if self.kind == "pre_attn_ln":
            return f"Pre-attn LN = {self.value:g}"
        return f"{self.pretrain} {scheme_row_name(self.scheme)}"


@dataclass
class PlannedRun:
    """One run: its resolved config (hashed), its dependencies and the fields the results store keys on."""

    kind: str  # "pretrain" | "finetune"
    config: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return config_hash(self.config)


NOT_HASHED = ("log_with",)  # how a run reports, not what it is: a new tracker redoes no run


def config_hash(config: dict[str, Any]) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of a resolved config (but ``NOT_HASHED``)."""
    identity = {key: value for key, value in config.items() if key not in NOT_HASHED}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_plan(spec: StudySpec) -> list[PlannedRun]:
    """All runs of a study in a fixed order: pre-training runs first, then fine-tuning runs."""
    pretrain_runs: dict[str, PlannedRun] = {}
    finetune_runs: list[PlannedRun] = []
    down = spec.downstream
    for model in spec.models:
        for task_name, task_options in down.tasks.items():
            for arm in _arms(spec):
                for seed in down.seeds:
                    dep = None
                    if arm.kind == "pretrained":
                        dep = _pretrain_run(spec, model, arm.pretrain or "", seed)
                        pretrain_runs.setdefault(dep.hash, dep)
                    for lr in down.lrs:
                        for size in down.train_sizes:
                            config = {
                                "kind": "finetune",
                                "model": model,
                                "task": task_name,
                                "data": task_options.data,
                                "tokenizer": down.tokenizer,
                                "init": _arm_config(arm, dep),
                                "lr": lr,
                                "seed": seed,
                                "train_size": size,
                                "vocab": spec.vocab,
                                "dropout": spec.dropout,
                                "train": {**down.train, **task_options.train},
                                "log_with": spec.log_with,
                                "test": {
                                    "evaluate": down.evaluate_test,
                                    "beams": down.beams,
                                    "examples": down.test_examples,
                                },
                            }
                            labels = {
                                "model": model,
                                "task": task_name,
                                "arm": arm.label,
                                "init_kind": arm.kind,
                                "scheme": arm.scheme,
                                "pretrain_task": arm.pretrain,
                                "ln_value": arm.value,
                                "lr": lr,
                                "seed": seed,
                                "train_size": size,
                            }
                            deps = [dep.hash] if dep else []
                            finetune_runs.append(PlannedRun("finetune", config, deps, labels))
    runs = [*pretrain_runs.values(), *finetune_runs]
    _check_unique(runs)
    return runs


def _arms(spec: StudySpec) -> list[Arm]:
    arms: list[Arm] = []
    if spec.baselines.random_init:
        arms.append(Arm("random"))
    if spec.baselines.pretrained_t5:
        arms.append(Arm("checkpoint", scheme="full", checkpoint=spec.baselines.pretrained_t5))
    arms += [
        Arm("pretrained", scheme, label) for label in spec.pretraining.tasks for scheme in spec.init_schemes
    ]
    arms += [Arm("pre_attn_ln", value=value) for value in spec.pre_attn_ln_values]
    return arms


def _arm_config(arm: Arm, dep: PlannedRun | None) -> dict[str, Any]:
    config: dict[str, Any] = {"kind": arm.kind}
    if arm.kind in ("pretrained", "checkpoint"):
        config["scheme"] = arm.scheme
        config["source"] = dep.hash if dep else arm.checkpoint
    if arm.kind == "pre_attn_ln":
        config["value"] = arm.value
    return config


def _pretrain_run(spec: StudySpec, model: str, label: str, finetune_seed: int) -> PlannedRun:
    task = spec.pretraining.tasks[label]
    seed = finetune_seed if spec.pretraining.seeds == "per_seed" else 0
    config = {
        "kind": "pretrain",
        "model": model,
        "task": task.task_names,
        "params": task.params,
        "vocab": spec.vocab,
        "seed": seed,
        "train": spec.pretraining.task_train(label),
        "log_with": spec.log_with,
    }
    labels = {"model": model, "task": "+".join(task.task_names), "pretrain_task": label, "seed": seed}
    return PlannedRun("pretrain", config, [], labels)


def _check_unique(runs: list[PlannedRun]) -> None:
    seen: dict[str, PlannedRun] = {}
    for run in runs:
        if run.hash in seen:
            raise UserError(
                f"two runs of the study have the same config ({run.labels}); remove the repeated value "
                "from the spec (a list with a value twice?)"
            )
        seen[run.hash] = run


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N with integers, e.g. 0/2") from None
    if not (count >= 1 and 0 <= index < count):
        raise UserError(f"--shard {text!r}: need 0 <= I < N, e.g. 0/2 and 1/2 for two machines")
    return index, count


def shard_runs(runs: list[PlannedRun], index: int, count: int) -> list[PlannedRun]:
    """Every ``count``-th run starting at ``index``: the shards partition the study."""
    return runs[index::count]
