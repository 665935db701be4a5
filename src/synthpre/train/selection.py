"""Checkpoint selection, App. A and App. B, in one torch-free module.

App. A (synthetic pre-training): the first checkpoint whose validation token accuracy reaches the
threshold, else the best so far.  App. B (fine-tuning): the checkpoint with the max validation token
accuracy, the best validation metric (SQuAD), or the checkpoint at a fixed step (CNNDM-10K: 50K).
:class:`SelectionRule` applies a rule to the engine's evaluation records and writes ``best.json``;
:func:`finetune_selection` turns an App. B rule name into ``TrainConfig`` fields; :func:`best_of`
picks the best record (the learning rate of a sweep, App. D.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthpre.train.config import TrainConfig

MODES = ("first_above_threshold", "max", "fixed_step")

# App. B's named rules (a downstream task's ``selection``).
MAX_VAL_TOKEN_ACCURACY = "max_val_token_accuracy"  # all tasks but CNNDM-10K and SQuAD
FIXED_STEP = "fixed_step"  # CNNDM-10K: the checkpoint at step 50K
BEST_VAL_METRIC = "best_val_metric"  # SQuAD: the best validation metric (its test set is hidden)
RULE_TEXT = {
    MAX_VAL_TOKEN_ACCURACY: "App. B: the checkpoint with the max validation token accuracy",
    FIXED_STEP: "App. B: the checkpoint at a fixed step (CNNDM-10K: 50K; test ROUGE plateaus by then)",
    BEST_VAL_METRIC: "App. B: the best validation metric (SQuAD, as Raffel et al.: its test set is hidden)",
}


@dataclass(frozen=True)
class SelectionRule:
    """Which checkpoint a run hands on, given its evaluations so far (only saved ones count).

    ``first_above_threshold`` (App. A): the first checkpoint with ``metric >= threshold``, else the max;
    ``max``: the max (the earliest of equal maxima); ``fixed_step`` (App. B, CNNDM-10K): the checkpoint
    at ``step``, else the newest one.
    """

    metric: str = "val_token_accuracy"
    mode: str = "first_above_threshold"
    threshold: float = 0.99
    step: int | None = None  # fixed_step only

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown selection mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode == "fixed_step" and self.step is None:
            raise ValueError("selection mode fixed_step needs the step it selects (selection_step)")

    @classmethod
    def from_config(cls, config: TrainConfig) -> SelectionRule:
        step = config.selection_step if config.selection == "fixed_step" else None
        return cls(config.selection_metric, config.selection, config.selection_threshold, step)

    def crosses_threshold(self, metrics: dict[str, float]) -> bool:
        return self.mode == "first_above_threshold" and metrics.get(self.metric, -math.inf) >= self.threshold

    def evaluates_at(self, step: int) -> bool:
        """``fixed_step`` evaluates at its step even when ``eval_every`` does not divide it."""
        return self.mode == "fixed_step" and step == self.step

    def must_keep(self, step: int, metrics: dict[str, float], best: dict | None) -> bool:
        """Whether the evaluation at ``step`` is saved as a checkpoint whatever ``save_every`` says:
        the first one over the threshold (App. A selects it), or the fixed step (App. B)."""
        if self.mode == "fixed_step":
            return step == self.step
        return self.crosses_threshold(metrics) and not (best is not None and best["threshold_met"])

    def met(self, best: dict) -> bool:
        """Whether ``best.json`` names a checkpoint that meets the rule itself, not its fallback: one over
        the threshold (``first_above_threshold``), the one at the step (``fixed_step``); ``max`` always."""
        if self.mode == "fixed_step":
            return best["step"] == self.step
        return self.mode == "max" or best["threshold_met"]

    def select(self, evals: list[dict]) -> dict | None:
        """``best.json`` contents for the evaluations so far (only those with a checkpoint count)."""
        scored = [e for e in evals if e.get("checkpoint") and self.metric in e]
        if not scored:
            return None
        if self.mode == "fixed_step":
            return self._fixed_step(scored, passed=any(e["step"] >= (self.step or 0) for e in evals))
        if self.mode == "first_above_threshold":
            for record in scored:
                if record[self.metric] >= self.threshold:
                    return self._best(record, f"first checkpoint with {self.metric} >= {self.threshold}")
        best = max(scored, key=lambda e: e[self.metric])  # the earliest of equal maxima
        if self.mode == "first_above_threshold":
            reason = f"no checkpoint reached {self.metric} >= {self.threshold} yet: max {self.metric}"
        else:
            reason = f"max {self.metric}"
        return self._best(best, reason)

    def _fixed_step(self, scored: list[dict], passed: bool) -> dict:
        """The saved evaluation at the step, else the newest saved one (``passed``: the run went past
        the step without a checkpoint there)."""
        at_step = [e for e in scored if e["step"] == self.step]
        if at_step:
            return self._best(at_step[-1], f"fixed step {self.step}")
        if passed:
            return self._best(scored[-1], f"fixed step {self.step} has no checkpoint: newest checkpoint")
        return self._best(scored[-1], f"fixed step {self.step} not reached yet: newest checkpoint")

    def _best(self, record: dict, reason: str) -> dict:
        return {
            "step": record["step"],
            "checkpoint": record["checkpoint"],
            "metric": self.metric,
            "value": record[self.metric],
            "rule": self.mode,
            "threshold": self.threshold,
            "threshold_met": record[self.metric] >= self.threshold,
            "reason": f"{reason} ({record[self.metric]:.4f} at step {record['step']})",
        }


def finetune_selection(rule: str, headline_metric: str, selection_step: int | None = None) -> dict[str, Any]:
    """The ``TrainConfig`` fields (``selection``, ``selection_metric``, ``selection_step``) of an App. B
    rule; ``headline_metric`` is the task's (e.g. ``f1`` for SQuAD), read by ``best_val_metric``."""
    if rule == MAX_VAL_TOKEN_ACCURACY:
        mode, metric, step = "max", "val_token_accuracy", None
    elif rule == BEST_VAL_METRIC:
        mode, metric, step = "max", f"val_{headline_metric}", None
    elif rule == FIXED_STEP:
        mode, metric, step = "fixed_step", "val_token_accuracy", selection_step
    else:
        raise ValueError(f"unknown App. B selection rule {rule!r}; choose one of {', '.join(RULE_TEXT)}")
    return {"selection": mode, "selection_metric": metric, "selection_step": step}


def best_of(records: list[dict], metric: str) -> dict:
    """The record with the highest ``metric`` (a missing one counts as -inf; the first of equal maxima).

    Raises ``ValueError`` on an empty list."""
    if not records:
        raise ValueError(f"no records to choose the best {metric} from")
    return max(records, key=lambda record: record.get(metric, -math.inf))
