"""Matched pre-training in the report: beside each row that starts from a pre-training run, the
validation token accuracy and step of the checkpoint it was handed, and a flag (†) where that run did
not meet the study's one pre-training rule (``pretraining.rule``): a task that hit its cap below the
threshold is not comparable with one that reached it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthpre.experiments.execute import RULE_MET, pretraining_settings
from synthpre.experiments.plan import PlannedRun
from synthpre.experiments.spec import StudySpec

UNMET = "†"
UNKNOWN = "?"  # a run recorded before synthpre stored whether it met the rule


@dataclass(frozen=True)
class UsedCheckpoint:
    """The checkpoint one pre-training run handed on to fine-tuning."""

    label: str  # the pre-training task's label in the spec
    seed: int
    accuracy: float | None  # validation token accuracy, percent
    step: int | None
    met: bool | None  # whether it meets the study's rule; None: not recorded
    cap: int  # the run's max_steps


@dataclass
class PretrainingCheck:
    """The study's rule in words, the checkpoint of each finished pre-training run, and which
    pre-training run each fine-tuning run started from."""

    rule: str
    used: dict[str, UsedCheckpoint]  # pre-training run hash -> its checkpoint
    source_of: dict[str, str]  # fine-tuning run hash -> pre-training run hash

    def checkpoints(self, finetune_hashes: list[str]) -> list[UsedCheckpoint]:
        sources = dict.fromkeys(self.source_of[h] for h in finetune_hashes if h in self.source_of)
        return [self.used[h] for h in sources if h in self.used]

    def cell(self, finetune_hashes: list[str]) -> str:
        """``"80.7 @ 2500"``; mean (SD) and the range of steps over several runs (one per seed); ``†``
        when one of them did not meet the rule; ``-`` for rows that start from no pre-training run."""
        used = [u for u in self.checkpoints(finetune_hashes) if u.accuracy is not None]
        if not used:
            return "-"
        values = [u.accuracy for u in used if u.accuracy is not None]
        accuracy = f"{values[0]:.1f}" if len(values) == 1 else f"{statistics.fmean(values):.1f} "
        accuracy += f"({statistics.stdev(values):.1f})" if len(values) > 1 else ""
        steps = sorted({u.step for u in used if u.step is not None})
        step = str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
        flag = " " + UNMET if any(u.met is False for u in used) else ""
        flag = flag or (" " + UNKNOWN if any(u.met is None for u in used) else "")
        return f"{accuracy} @ {step}{flag}"

    def notes(self, finetune_hashes: list[str]) -> list[str]:
        """The rule, and each shown pre-training run that did not meet it."""
        used = self.checkpoints(finetune_hashes)
        notes = [f"pre-training rule: {self.rule}"]
        unmet = [u for u in used if u.met is False]
        if unmet:
            runs = "; ".join(
                f"{u.label} (seed {u.seed}): {u.accuracy:.1f}% at step {u.step}, cap {u.cap}" for u in unmet
            )
            notes.append(
                f"{UNMET} pre-training did not meet the study's rule: {runs}. These rows are not "
                "comparable with rows whose pre-training met it: raise the task's cap "
                "(pretraining.tasks.LABEL.train.max_steps) or give every task one budget "
                "(pretraining.rule: fixed_steps)"
            )
        if any(u.met is None for u in used):
            notes.append(f"{UNKNOWN} whether the pre-training met the rule was not recorded (an older run)")
        return notes


def pretraining_check(
    spec: StudySpec, runs: list[PlannedRun], rows: list[dict[str, Any]]
) -> PretrainingCheck:
    """What the report shows about pre-training, from the study's runs and its ``pretrain`` result rows
    (``Store.results("pretrain")``)."""
    by_run: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_run.setdefault(row["run_hash"], {"step": row["selected_step"]})[row["metric"]] = row["value"]
    used = {}
    for run in runs:
        if run.kind != "pretrain" or run.hash not in by_run:
            continue
        record = by_run[run.hash]
        met = record.get(RULE_MET)
        used[run.hash] = UsedCheckpoint(
            label=run.labels["pretrain_task"],
            seed=run.labels["seed"],
            accuracy=record.get("val_token_accuracy"),
            step=record["step"],
            met=None if met is None else bool(met),
            cap=pretraining_settings(run.config, Path(".")).train.max_steps,
        )
    source_of = {run.hash: run.deps[0] for run in runs if run.kind == "finetune" and run.deps}
    return PretrainingCheck(spec.pretraining.rule_text(), used, source_of)
