"""Tokens saved, Hu et al. (2025)'s headline: read from the validation-loss curves of fine-tuning runs
(natural-text language modelling, ``text_lm``, or any task), Random Init against each other init arm.

Every evaluation row of a run records ``val_loss`` and ``tokens`` (the real tokens it has trained on), so
a run is a curve of loss against tokens.  Between two evaluations the curve is read linearly.  For each
arm, against Random Init's curve (budget ``T``, final loss ``L_R``):

* **reaches L_R at** ``t``: the first token count at which the arm's loss is ``<= L_R``; **tokens saved**
  ``= 1 - t / T``: Hu et al.'s measure ("the same loss with 33% fewer tokens");
* **Random Init needs**: the token count at which Random Init's curve first reaches the arm's final loss
  (``> T`` when it never does within its budget): the same comparison read the other way.

Runs of one arm and task that differ only in seed give one row, each number the mean over seeds.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthpre.errors import UserError
from synthpre.experiments.plan import RANDOM_INIT

if TYPE_CHECKING:
    from synthpre.experiments.report import Table
    from synthpre.experiments.store import Store

LOSS = "val_loss"
TOKENS = "tokens"
CHECKPOINTS = (0.25, 0.5, 1.0)  # the columns "val loss at" a fraction of Random Init's evaluations


@dataclass(frozen=True)
class LossCurve:
    """Validation loss against tokens trained on, in evaluation order (tokens increasing)."""

    tokens: tuple[float, ...]
    losses: tuple[float, ...]

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    @property
    def budget(self) -> float:
        return self.tokens[-1]

    def tokens_to_reach(self, loss: float) -> float | None:
        """The first token count where the curve is at or below ``loss`` (linear between evaluations);
        None when it never is."""
        previous = None
        for tokens, value in zip(self.tokens, self.losses, strict=True):
            if value <= loss:
                if previous is None or previous[1] == value:
                    return tokens
                (t0, v0) = previous
                return t0 + (tokens - t0) * (v0 - loss) / (v0 - value)
            previous = (tokens, value)
        return None


def run_curve(store: Store, run_hash: str) -> LossCurve | None:
    """A finished run's loss curve from the store (None for a run recorded without token counts)."""
    losses = dict(store.curves(run_hash, LOSS))
    tokens = dict(store.curves(run_hash, TOKENS))
    steps = sorted(set(losses) & set(tokens))
    if not steps:
        return None
    return LossCurve(tuple(tokens[s] for s in steps), tuple(losses[s] for s in steps))


def language_model_tasks() -> set[str]:
    """The downstream tasks that are natural-text language modelling (their curves are the point)."""
    from synthpre.downstream.registry import DOWNSTREAM_TASKS

    return {name for name, task in DOWNSTREAM_TASKS.items() if task.is_language_model}


def arm_curves(
    store: Store, tasks: set[str] | None = None, hashes: set[str] | None = None
) -> dict[str, dict[str, list[LossCurve]]]:
    """task -> arm -> the loss curves of its finished fine-tuning runs, of ``tasks`` (all: None) and of
    ``hashes`` (the current spec's runs).  Runs of several learning rates of one arm would all count: a
    tokens-saved study gives each arm one rate."""
    curves: dict[str, dict[str, list[LossCurve]]] = defaultdict(lambda: defaultdict(list))
    for row in store.runs():
        if row["kind"] != "finetune" or row["status"] != "done":
            continue
        if (hashes is not None and row["hash"] not in hashes) or (
            tasks is not None and row["task"] not in tasks
        ):
            continue
        curve = run_curve(store, row["hash"])
        if curve is not None:
            curves[row["task"]][row["arm"]].append(curve)
    return curves


def _mean(values: list[float | None]) -> float | None:
    """The mean over seeds, None when any seed lacks the value."""
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def _tokens_text(tokens: float | None) -> str:
    if tokens is None:
        return "-"
    return f"{tokens / 1e6:.2f}M" if tokens >= 1e5 else f"{tokens / 1e3:.1f}K"


def tokens_saved_table(curves: dict[str, dict[str, list[LossCurve]]]) -> Table:
    """Per task, Random Init and each arm: validation loss at fractions of Random Init's evaluations,
    the final loss, where each curve reaches the other's final loss, and the tokens saved."""
    from synthpre.experiments.report import Table

    tasks = [task for task, arms in curves.items() if RANDOM_INIT in arms]
    if not tasks:
        raise UserError(
            "no fine-tuning run of Random Init with a validation-loss curve over tokens: the tokens-saved "
            "table compares each arm with Random Init (baselines: {random_init: true})"
        )
    reference = curves[tasks[0]][RANDOM_INIT][0]
    picks = sorted({max(0, round(f * len(reference.tokens)) - 1) for f in CHECKPOINTS})
    columns = ["Task", "Init", *(f"val loss @ {_tokens_text(reference.tokens[i])}" for i in picks)]
    columns += ["Random Init needs (for this final loss)", "reaches Random Init's final loss at",
                "tokens saved"]  # fmt: skip
    table = Table("Tokens saved: validation loss against natural-text tokens", columns)
    for task in tasks:
        random = curves[task][RANDOM_INIT]
        budget = _mean([c.budget for c in random])
        random_final = _mean([c.final_loss for c in random])
        arms = [RANDOM_INIT, *(arm for arm in curves[task] if arm != RANDOM_INIT)]
        for arm in arms:
            runs = curves[task][arm]
            at = [_mean([c.losses[i] if i < len(c.losses) else None for c in runs]) for i in picks]
            final = _mean([c.final_loss for c in runs])
            needs = _mean([r.tokens_to_reach(final) for r in random])
            reach = _mean([c.tokens_to_reach(random_final) for c in runs])
            saved = "-" if arm == RANDOM_INIT or reach is None else f"{100 * (1 - reach / budget):.0f}%"
            table.rows.append([
                task, arm, *("-" if v is None else f"{v:.3f}" for v in at),
                "-" if arm == RANDOM_INIT else (_tokens_text(needs) if needs is not None
                                                 else f"> {_tokens_text(budget)}"),
                "-" if arm == RANDOM_INIT else (_tokens_text(reach) if reach is not None else "not reached"),
                saved,
            ])  # fmt: skip
    seeds = {len(runs) for arms in curves.values() for runs in arms.values()}
    table.notes += [
        "tokens: the real tokens each run trained on before that evaluation (same data order for every arm)",
        "tokens saved = 1 - (tokens at which the arm reaches Random Init's final loss) / (Random Init's "
        "budget) (Hu et al. 2025); 'Random Init needs' reads the comparison the other way",
        "curves are read linearly between evaluations; "
        + ("one seed" if seeds == {1} else "each number the mean over seeds"),
    ]
    return table


def plot_loss_curves(curves: dict[str, dict[str, list[LossCurve]]], folder) -> list:
    """One plot per task: validation loss against tokens, Random Init and each arm (every seed a line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task, arms in curves.items():
        figure, axis = plt.subplots(figsize=(6.4, 4.0))
        for index, (arm, runs) in enumerate(arms.items()):
            for k, curve in enumerate(runs):
                axis.plot([t / 1e6 for t in curve.tokens], curve.losses, marker="o", markersize=3,
                          color=f"C{index}", label=arm if k == 0 else None)  # fmt: skip
        axis.set_xlabel("tokens trained on (millions)")
        axis.set_ylabel("validation loss (nats per token)")
        axis.set_title(f"{task}: validation loss against tokens")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = folder / f"{task}_val_loss_vs_tokens.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written
