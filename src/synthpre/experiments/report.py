"""``synthpre report DIR --table N``: the layouts of the paper's tables, from the results store.

Every cell is the mean (SD) over seeds of one metric of the runs in that row and column; the
learning rate is chosen per row, task and training-set size by the best mean validation token accuracy
over the sweep (App. B selects on validation token accuracy; App. D.3 sweeps 1e-2, 3e-3, 1e-3), or,
with ``lr_choice="random_init"``, the rate Random Init preferred is used for every row (App. D.3's words).

Layouts: 1 and 6 (init arms x downstream tasks), 4 (x training-set sizes), 2, 5 and 7 (init schemes x
pre-training tasks, per downstream task), 3 and 8 (pre-attention layer-norm values), 9 (table 1 plus the
"Average" and "% of the Random Init -> Pre-trained gap closed, averaged over tasks").
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from synthpre.errors import UserError
from synthpre.experiments.plan import PRETRAINED_T5, RANDOM_INIT
from synthpre.init import scheme_row_name

if TYPE_CHECKING:
    from synthpre.experiments.matched import PretrainingCheck

FALLBACK_METRIC = "val_token_accuracy"  # shown when a task has none of its paper metrics
PRETRAINING_COLUMN = "pre-training val acc @ step"  # the checkpoint a row's pre-training handed on
TABLES = (1, 2, 3, 4, 5, 6, 7, 8, 9)
FORMATS = ("md", "latex", "csv")


@dataclass
class RunResult:
    """One fine-tuning run with all its metrics."""

    labels: dict[str, Any]
    metrics: dict[str, float]
    run_hash: str = ""


@dataclass
class Table:
    """A rendered-to-be table: column headers, body rows and footnotes."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    section_breaks: list[int] = field(default_factory=list)  # row indices that start a new block


def runs_from_results(rows: Iterable[dict[str, Any]]) -> list[RunResult]:
    """Group the store's one-row-per-metric results into one record per run."""
    runs: dict[str, RunResult] = {}
    for row in rows:
        if row["run_hash"] not in runs:
            labels = {k: row[k] for k in ("model", "task", "arm", "init_kind", "scheme", "pretrain_task",
                                          "ln_value", "lr", "seed", "train_size")}  # fmt: skip
            runs[row["run_hash"]] = RunResult(labels, {}, row["run_hash"])
        runs[row["run_hash"]].metrics[row["metric"]] = row["value"]
    return list(runs.values())


def choose_lrs(runs: list[RunResult], lr_choice: str = "row") -> list[RunResult]:
    """Keep, for every (model, arm, task, train size), only the runs of the chosen learning rate."""
    groups: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        key = _lr_key(run.labels, run.labels["arm"])
        metric = selection_metric(run.labels["task"])
        groups[key][run.labels["lr"]].append(run.metrics.get(metric, float("-inf")))
    best = {key: max(by_lr, key=lambda lr: statistics.fmean(by_lr[lr])) for key, by_lr in groups.items()}
    if lr_choice == "random_init":
        chosen = {key: best.get((*key[:1], RANDOM_INIT, *key[2:]), lr) for key, lr in best.items()}
    elif lr_choice == "row":
        chosen = best
    else:
        raise UserError(f"--lr-choice {lr_choice!r}: expected 'row' or 'random_init'")
    return [run for run in runs if run.labels["lr"] == chosen[_lr_key(run.labels, run.labels["arm"])]]


def selection_metric(task: str) -> str:
    """The metric a task's checkpoints and learning rates are chosen on (App. B, the task registry)."""
    from synthpre.downstream.registry import DOWNSTREAM_TASKS

    return DOWNSTREAM_TASKS[task].selection_metric if task in DOWNSTREAM_TASKS else FALLBACK_METRIC


def _lr_key(labels: dict[str, Any], arm: str) -> tuple:
    return (labels["model"], arm, labels["task"], labels["train_size"])


def headline_metrics(runs: list[RunResult], task: str, requested: list[str] | None) -> list[str]:
    """The metrics shown for a task: the requested ones it has; else the paper's test metric(s) of the task
    (its headline metric, with F1 beside EM as in "EM/F1"); else validation token accuracy."""
    from synthpre.downstream.registry import DOWNSTREAM_TASKS

    available = {m for run in runs if run.labels["task"] == task for m in run.metrics}
    if requested:
        return [m for m in requested if m in available]
    headline = DOWNSTREAM_TASKS[task].headline_metric if task in DOWNSTREAM_TASKS else None
    paper = [f"test_{headline}", *(["test_f1"] if headline == "em" else [])]
    return [m for m in paper if m in available] or [m for m in [FALLBACK_METRIC] if m in available]


def _cell(values: list[float], metric: str) -> str:
    """Mean, and (sample SD) over seeds; metrics in percent get 1 decimal, losses 3."""
    if not values:
        return "-"
    digits = 3 if "loss" in metric else 1
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({statistics.stdev(values):.{digits}f})"


def _joined_cell(runs: list[RunResult], metrics: list[str]) -> str:
    """One cell for several metrics, written "EM/F1" as the paper does: "71.7/93.7 (0.9/0.2)"."""
    parts = [_cell([r.metrics[m] for r in runs if m in r.metrics], m) for m in metrics]
    if len(parts) == 1:
        return parts[0]
    means = [p.split(" (")[0] for p in parts]
    sds = [p.split(" (")[1].rstrip(")") for p in parts if " (" in p]
    return "/".join(means) + (f" ({'/'.join(sds)})" if len(sds) == len(parts) else "")


def _mean(runs: list[RunResult], metric: str) -> float | None:
    values = [r.metrics[metric] for r in runs if metric in r.metrics]
    return statistics.fmean(values) if values else None


def _arm_order(runs: list[RunResult]) -> list[str]:
    """Baselines first (Pre-trained T5, Random Init), then the others in the order the study ran them."""
    arms = list(dict.fromkeys(r.labels["arm"] for r in runs))
    return sorted(arms, key=lambda a: (a != PRETRAINED_T5, a != RANDOM_INIT, arms.index(a)))


def _gap_reference(arm: str, runs_by_arm: dict[str, list[RunResult]]) -> str | None:
    """Pre-trained T5 when the study has it; otherwise the Full Init arm of the same pre-training task."""
    if PRETRAINED_T5 in runs_by_arm:
        return PRETRAINED_T5
    full_arms = [a for a, runs in runs_by_arm.items() if runs[0].labels["scheme"] == "full"
                 and runs[0].labels["init_kind"] == "pretrained"]  # fmt: skip
    sample = runs_by_arm[arm][0].labels
    if sample["init_kind"] == "random":
        return full_arms[0] if len(full_arms) == 1 else None
    full = f"{sample['pretrain_task']} {scheme_row_name('full')}"
    return full if sample["init_kind"] == "pretrained" and full in runs_by_arm else None


def gap_closed(value: float, random: float, reference: float) -> float | None:
    """Percent of the Random Init -> reference gap that ``value`` closes (Table 9's "Average")."""
    return None if reference == random else 100.0 * (value - random) / (reference - random)


def build_table(
    results: list[dict[str, Any]],
    table: int,
    metrics: list[str] | None = None,
    lr_choice: str = "row",
    metric_columns: bool = False,
    pretraining: PretrainingCheck | None = None,
) -> Table:
    """The layout of paper table ``table`` from the store's result rows.

    Several metrics of a task share one cell ("EM/F1", as the paper), or get a column each
    (``metric_columns``).  With ``pretraining``, every row that starts from a pre-training run shows
    the validation accuracy and step of the checkpoint it was handed, flagged where the study's
    pre-training rule was not met.
    """
    if table not in TABLES:
        raise UserError(f"--table {table}: the paper's tables are {', '.join(map(str, TABLES))}")
    all_runs = runs_from_results(results)
    if not all_runs:
        raise UserError("the study has no finished fine-tuning runs yet (`synthpre study status DIR`)")
    runs = choose_lrs(all_runs, lr_choice)
    swept = len({r.labels["lr"] for r in all_runs}) > 1
    if table != 4:  # the other tables use the full training set (or the largest subset the study has)
        sizes = {r.labels["train_size"] for r in runs}
        main_size = None if None in sizes else max(sizes)
        runs = [r for r in runs if r.labels["train_size"] == main_size]
    if table in (2, 5, 7):
        return _scheme_table(runs, table, metrics, swept, pretraining)
    if table in (3, 8):
        rows = [r for r in runs if r.labels["init_kind"] in ("pre_attn_ln", "random", "checkpoint")]
        return _arm_table(rows, table, metrics, swept, False, False, metric_columns)
    result = _arm_table(runs, table, metrics, swept, table == 4, table == 9, metric_columns)
    if pretraining is not None and any(r.labels["init_kind"] == "pretrained" for r in runs):
        by_arm = {arm: [r.run_hash for r in runs if r.labels["arm"] == arm] for arm in _arm_order(runs)}
        result.columns.append(PRETRAINING_COLUMN)
        for row in result.rows:
            row.append(pretraining.cell(by_arm[row[0]]))
        result.notes += pretraining.notes([r.run_hash for r in runs])
    return result


def _arm_table(
    runs: list[RunResult],
    table: int,
    metrics: list[str] | None,
    swept: bool,
    by_size: bool,
    with_average: bool,
    metric_columns: bool,
) -> Table:
    tasks = list(dict.fromkeys(r.labels["task"] for r in runs))
    sizes = (
        sorted({r.labels["train_size"] for r in runs}, key=lambda s: (s is None, s or 0))
        if by_size
        else [None]
    )
    shown = {task: headline_metrics(runs, task, metrics) for task in tasks}
    groups = {task: [[m] for m in shown[task]] if metric_columns else [shown[task]] for task in tasks}
    columns_keys = [(task, size, group) for task in tasks for size in sizes for group in groups[task]]
    headers = [_column_header(task, size, group, by_size) for task, size, group in columns_keys]
    runs_by_arm: dict[str, list[RunResult]] = defaultdict(list)
    for run in runs:
        runs_by_arm[run.labels["arm"]].append(run)
    extra = (["Average"] if with_average else []) + ["% gap closed"]
    result = Table(_title(table), ["Init", *headers, *extra] + (["lr"] if swept else []))
    notes: set[str] = set()
    for arm in _arm_order(runs):
        arm_runs = runs_by_arm[arm]
        row = [arm]
        for task, size, group in columns_keys:
            cell_runs = [
                r
                for r in arm_runs
                if r.labels["task"] == task and (not by_size or r.labels["train_size"] == size)
            ]
            row.append(_joined_cell(cell_runs, group) if group else "-")
        if with_average:
            means = [
                _mean([r for r in arm_runs if r.labels["task"] == t], shown[t][0]) for t in tasks if shown[t]
            ]
            row.append(f"{statistics.fmean(means):.1f}" if means and None not in means else "-")
        reference = _gap_reference(arm, runs_by_arm)
        row.append(_gap_cell(arm_runs, runs_by_arm, reference, tasks, shown))
        if swept:
            row.append(",".join(sorted({f"{r.labels['lr']:g}" for r in arm_runs})))
        result.rows.append(row)
    gap_index = len(result.columns) - 1 - swept
    if all(row[gap_index] == "-" for row in result.rows):  # no reference anywhere: drop the column
        result.columns.pop(gap_index)
        for row in result.rows:
            row.pop(gap_index)
    else:
        references = sorted({r for a in runs_by_arm if (r := _gap_reference(a, runs_by_arm))})
        notes.add(f"% gap closed: of the {RANDOM_INIT} -> {' / '.join(references)} gap on the first metric "
                  "of each task, averaged over tasks (App. Table 9)")  # fmt: skip
    result.notes += sorted(notes) + _common_notes(runs, swept)
    return result


def _gap_cell(
    arm_runs: list[RunResult], runs_by_arm: dict[str, list[RunResult]], reference: str | None,
    tasks: list[str], shown: dict[str, list[str]],
) -> str:  # fmt: skip
    if reference is None or RANDOM_INIT not in runs_by_arm:
        return "-"
    closed = []
    for task in tasks:
        if not shown[task]:
            continue
        metric = shown[task][0]
        values = [_mean([r for r in group if r.labels["task"] == task], metric)
                  for group in (arm_runs, runs_by_arm[RANDOM_INIT], runs_by_arm[reference])]  # fmt: skip
        if None not in values:
            fraction = gap_closed(*values)  # type: ignore[arg-type]
            if fraction is not None:
                closed.append(fraction)
    return f"{statistics.fmean(closed):.1f}%" if closed else "-"


def _scheme_table(
    runs: list[RunResult], table: int, metrics: list[str] | None, swept: bool,
    pretraining: PretrainingCheck | None,
) -> Table:  # fmt: skip
    """Tables 2/5/7: init schemes (rows) x pre-training tasks (columns) per task, then the checkpoint
    each pre-training task handed on (with ``pretraining``), then the baselines."""
    tasks = list(dict.fromkeys(r.labels["task"] for r in runs))
    pretrained = [r for r in runs if r.labels["init_kind"] == "pretrained"]
    pretrain = list(dict.fromkeys(r.labels["pretrain_task"] for r in pretrained))
    schemes = list(dict.fromkeys(r.labels["scheme"] for r in pretrained))
    shown = {task: headline_metrics(runs, task, metrics) for task in tasks}
    columns = [f"{task} {'/'.join(map(_metric_name, shown[task]))} ({p})" for task in tasks for p in pretrain]
    result = Table(_title(table), ["Init scheme", *columns])
    for scheme in schemes:
        row = [scheme_row_name(scheme)]
        for task in tasks:
            for p in pretrain:
                cell = [
                    r for r in pretrained if r.labels["task"] == task and r.labels["pretrain_task"] == p
                    and r.labels["scheme"] == scheme
                ]  # fmt: skip
                row.append(_joined_cell(cell, shown[task]) if shown[task] else "-")
        result.rows.append(row)
    if pretraining is not None and pretrained:
        result.rows.append(
            [PRETRAINING_COLUMN]
            + [pretraining.cell([r.run_hash for r in pretrained if r.labels["pretrain_task"] == p])
               for _ in tasks for p in pretrain]
        )  # fmt: skip
        result.notes += pretraining.notes([r.run_hash for r in pretrained])
    baselines = [a for a in (RANDOM_INIT, PRETRAINED_T5) if any(r.labels["arm"] == a for r in runs)]
    if baselines:
        result.section_breaks.append(len(result.rows))
    for arm in baselines:
        row = [arm]
        for task in tasks:
            cell = [r for r in runs if r.labels["task"] == task and r.labels["arm"] == arm]
            row += [_joined_cell(cell, shown[task]) if shown[task] else "-"] * len(pretrain)
        result.rows.append(row)
    result.notes += _common_notes(runs, swept)
    return result


def _column_header(task: str, size: int | None, metrics: list[str], by_size: bool) -> str:
    name = f"{task}-{_size_name(size)}" if by_size else task
    return f"{name} {'/'.join(_metric_name(m) for m in metrics)}"


def _size_name(size: int | None) -> str:
    if size is None:
        return "full"
    return f"{size // 1000}K" if size % 1000 == 0 and size else str(size)


def _metric_name(metric: str) -> str:
    return metric.replace("test_", "").replace("val_", "val ").replace("_", " ")


def _title(table: int) -> str:
    return {
        1: "Table 1: fine-tuning results by pre-training task",
        6: "Table 6: fine-tuning results, mean (SD) over seeds",
        4: "Table 4: training-set size ablation",
        2: "Table 2: initialization schemes from pre-trained statistics",
        5: "Table 5: more initialization schemes",
        7: "Table 7: Per Param Mean/SD on every downstream task",
        3: "Table 3: pre-attention layer-norm init value sweep",
        8: "Table 8: pre-attention layer-norm init value sweep, all tasks",
        9: "Table 9: results with the Average and % of gap closed",
    }[table]


def _common_notes(runs: list[RunResult], swept: bool) -> list[str]:
    seeds = sorted({r.labels["seed"] for r in runs})
    notes = [f"mean (sample SD) over {len(seeds)} seeds" if len(seeds) > 1 else f"one seed ({seeds[0]})"]
    if swept:
        notes.append("learning rate: per row, the best mean of the sweep on the App. B selection metric")
    return notes


def render(table: Table, fmt: str) -> str:
    """The table as GitHub markdown, a LaTeX tabular, or CSV."""
    if fmt == "md":
        lines = [f"**{table.title}**", "", _md_row(table.columns), _md_row(["---"] * len(table.columns))]
        lines += [_md_row(row) for row in table.rows]
        return "\n".join(lines + [""] + [f"- {note}" for note in table.notes]) + "\n"
    if fmt == "latex":
        body = []
        for index, row in enumerate(table.rows):
            if index in table.section_breaks:
                body.append("\\midrule")
            body.append(" & ".join(_latex_escape(c) for c in row) + " \\\\")
        head = " & ".join(_latex_escape(c) for c in table.columns) + " \\\\"
        spec = "l" + "c" * (len(table.columns) - 1)
        lines = [f"% {table.title}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule", head, "\\midrule", *body,
                 "\\bottomrule", "\\end{tabular}", *[f"% {note}" for note in table.notes]]  # fmt: skip
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.columns)
        writer.writerows(table.rows)
        return buffer.getvalue()
    raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _latex_escape(text: str) -> str:
    escaped = text.replace("\\", "\\textbackslash{}").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("&", "\\&").replace("†", "\\textdagger{}")
