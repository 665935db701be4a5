"""Plots of a study: validation-accuracy curves (pre-training, fine-tuning), metric vs training-set size,
and for language modelling (``text_lm``) validation loss against tokens, Random Init vs each arm.

Figure 6 (pre-attention layer-norm means per layer) is ``synthpre stats CKPT... --plot``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from synthpre.experiments.store import Store
from synthpre.experiments.tokens_saved import arm_curves, language_model_tasks, plot_loss_curves

CURVE_METRIC = "val_token_accuracy"


def write_plots(store: Store, folder: Path) -> list[Path]:
    """Write every plot that the study's results support; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    written = [_curves_plot(store, "pretrain", folder / "pretraining_val_accuracy.png"),
               _curves_plot(store, "finetune", folder / "finetuning_val_accuracy.png"),
               _size_plot(store, folder / "metric_vs_train_size.png")]  # fmt: skip
    losses = plot_loss_curves(arm_curves(store, language_model_tasks()), folder)
    return [path for path in written if path is not None] + losses


def _curves_plot(store: Store, kind: str, path: Path) -> Path | None:
    """One line per run (fine-tuning: the runs of the first seed on the full or largest training set)."""
    import matplotlib.pyplot as plt

    rows = [row for row in store.runs() if row["kind"] == kind and row["status"] == "done"]
    if kind == "finetune" and rows:
        first_seed = min(row["seed"] for row in rows)
        sizes = {row["train_size"] for row in rows}
        largest = None if None in sizes else max(sizes)
        rows = [row for row in rows if row["seed"] == first_seed and row["train_size"] == largest]
    several_lrs = len({row["lr"] for row in rows}) > 1
    curves = [(row, store.curves(row["hash"], CURVE_METRIC)) for row in rows]
    curves = [(row, points) for row, points in curves if points]
    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for row, points in curves:
        steps, values = zip(*points, strict=True)
        if kind == "pretrain":
            label = f"{row['pretrain_task']} (seed {row['seed']})"
        else:
            label = f"{row['task']}: {row['arm']}" + (f" (lr {row['lr']:g})" if several_lrs else "")
        axis.plot(steps, values, marker="o", markersize=3, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("validation token accuracy (%)")
    axis.set_title("pre-training" if kind == "pretrain" else "fine-tuning")
    return _save(figure, axis, path)


def _size_plot(store: Store, path: Path) -> Path | None:
    """Downstream metric vs training-set size (Table 4), mean over seeds, one line per task and arm."""
    import matplotlib.pyplot as plt

    results = [r for r in store.results() if r["metric"] == CURVE_METRIC and r["train_size"] is not None]
    if len({r["train_size"] for r in results}) < 2:
        return None
    lines: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in results:
        lines[(row["task"], row["arm"])][row["train_size"]].append(row["value"])
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for (task, arm), by_size in lines.items():
        sizes = sorted(by_size)
        axis.plot(sizes, [statistics.fmean(by_size[s]) for s in sizes], marker="o", label=f"{task}: {arm}")
    axis.set_xscale("log")
    axis.set_xlabel("training examples")
    axis.set_ylabel("validation token accuracy (%)")
    return _save(figure, axis, path)


def _save(figure, axis, path: Path) -> Path:
    """Grid, legend, tight layout; write the figure to ``path`` and free it."""
    import matplotlib.pyplot as plt

    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
