"""``synthpre study plan SPEC [--out DIR]`` (and ``study run --dry-run``): the runs a study would execute,
what is already done in DIR, and how long the rest takes on this machine.

The estimate comes from a probe of each distinct run shape (the run's config without its seed,
learning rate, init arm and step counts): a few real steps through ``synthpre.recipes`` (the run's
model, data, engine and, for fine-tuning, test decoding), in a temporary folder, in a child process
with a time limit.  The probe times a step, one evaluation (scaled to the run's validation set) and
what each run pays once (set-up, a checkpoint, test decoding); a run is estimated as
``once + steps x step + evaluations x evaluation``.  A probe starts from a fresh model: an init arm
does not change the time of a step.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthpre.errors import UserError
from synthpre.experiments.execute import finetuning_settings, pretraining_settings
from synthpre.experiments.plan import PlannedRun, config_hash
from synthpre.experiments.runner import run_rows
from synthpre.experiments.spec import StudySpec
from synthpre.experiments.store import DB_NAME

PROBE_VAL = 128  # validation examples a probe evaluates; the time is scaled to the run's
PROBE_TEST = 16  # test examples a fine-tuning probe decodes; the time is scaled to the run's
PROBE_TIMEOUT_S = 120.0  # a shape whose probe takes longer is not estimated (a GPU-scale run on a CPU)
REQUEST_FILE, RESULT_FILE = "probe_request.json", "probe_result.json"
TO_DO = ("pending", "interrupted")  # what `synthpre study run` executes (failed: with --retry-failed)


@dataclass(frozen=True)
class Probe:
    """What a probe measured: seconds per step, per evaluation of the run's validation set, and once
    per run; or why there is no measurement."""

    step_s: float = 0.0
    eval_s: float = 0.0
    once_s: float = 0.0
    error: str | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class Steps:
    """A run's optimizer steps (at most, when pre-training stops at the threshold) and evaluations."""

    steps: int
    evals: int
    at_most: bool

    def text(self) -> str:
        return f"{'<=' if self.at_most else ''}{self.steps}"


def run_steps(run: PlannedRun) -> Steps:
    """The steps and evaluations of a planned run, from the settings the run itself will build."""
    if run.kind == "pretrain":
        train = pretraining_settings(run.config, Path(".")).train
        steps, every, at_most = train.max_steps, train.eval_every, train.stop_at_threshold
    else:
        config = finetuning_settings(run.config, Path("."), dict.fromkeys(run.deps, ".")).resolved()
        steps, every, at_most = config.max_steps or 0, config.eval_every or 1, False
    return Steps(steps, math.ceil(steps / every), at_most)


def shape_of(run: PlannedRun) -> str:
    """Runs of one shape take the same time per step: the config without seed, lr, init and steps."""
    config = {k: v for k, v in run.config.items() if k not in ("seed", "lr", "init", "train_size")}
    timing = ("max_steps", "eval_every", "save_every", "stop_at_threshold", "selection", "selection_step")
    config["train"] = {k: v for k, v in run.config["train"].items() if k not in timing}
    return config_hash(config)


def shape_name(run: PlannedRun) -> str:
    labels = run.labels
    return f"{'pre-train' if run.kind == 'pretrain' else 'fine-tune'} {labels['model']} on {labels['task']}"


def statuses(runs: list[PlannedRun], folder: Path | None) -> dict[str, str]:
    """Each run's status in the study folder (read only); ``pending`` where there is none yet."""
    status = dict.fromkeys((run.hash for run in runs), "pending")
    if folder is None or not (folder / DB_NAME).is_file():
        return status
    return status | {row["hash"]: row["status"] for row in run_rows(folder, runs)}


def run_table(runs: list[PlannedRun], status: dict[str, str]) -> list[str]:
    """One line per run: kind, task, init, seed (lr and training-set size where the study varies them),
    steps and status."""
    finetune = [r for r in runs if r.kind == "finetune"]
    extra = [k for k in ("lr", "train_size") if len({r.labels[k] for r in finetune}) > 1]
    header = ["#", "kind", "task", "init", "seed", *extra, "steps", "status"]
    rows = [header]
    for index, run in enumerate(runs, 1):
        labels = run.labels
        init = labels["arm"] if run.kind == "finetune" else "-"
        values = [str(labels[k]) if run.kind == "finetune" else "-" for k in extra]
        task = labels["task"] if run.kind == "finetune" else f"{labels['pretrain_task']} ({labels['task']})"
        rows.append([str(index), run.kind, task, init, str(labels["seed"]), *values,
                     run_steps(run).text(), status[run.hash]])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def run_seconds(run: PlannedRun, probe: Probe) -> float:
    steps = run_steps(run)
    return probe.once_s + steps.steps * probe.step_s + steps.evals * probe.eval_s


def print_plan(
    spec: StudySpec,
    runs: list[PlannedRun],
    folder: Path | None,
    probe_steps: int,
    echo: Callable[[str], None] = print,
) -> float | None:
    """List the runs and what is done, probe each shape still to run, print the estimate; returns it
    (seconds; None without one)."""
    status = statuses(runs, folder)
    kinds = {kind: sum(r.kind == kind for r in runs) for kind in ("pretrain", "finetune")}
    to_do = [run for run in runs if status[run.hash] in TO_DO]
    where = f"; in {folder}: {sum(s == 'done' for s in status.values())} done" if folder else ""
    echo(f"Study {spec.name}: {len(runs)} runs ({kinds['pretrain']} pre-training, {kinds['finetune']} "
         f"fine-tuning){where}, {len(to_do)} to run")  # fmt: skip
    for line in run_table(runs, status):
        echo("  " + line)
    if spec.pretraining.tasks:
        echo(f"Pre-training rule: {spec.pretraining.rule_text()}.")
    failed = sum(s == "failed" for s in status.values())
    if failed:
        echo(f"{failed} failed run(s) not counted: `synthpre study run ... --retry-failed` runs them again.")
    if not to_do:
        echo("Nothing to run.")
        return 0.0
    if probe_steps <= 0:
        echo("No estimate (--probe-steps 0).")
        return None
    return _estimate(to_do, probe_steps, echo)


def _estimate(to_do: list[PlannedRun], probe_steps: int, echo: Callable[[str], None]) -> float | None:
    shapes: dict[str, list[PlannedRun]] = {}
    for run in to_do:
        shapes.setdefault(shape_of(run), []).append(run)
    echo(f"Probing {len(shapes)} run shape(s), {probe_steps} timed steps each:")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1  # before the probes add their own
    total, unknown, too_slow = 0.0, 0, set()
    for members in shapes.values():
        sample = members[0]
        model_kind = (sample.kind, sample.labels["model"])
        if model_kind in too_slow:
            probe = Probe(error="not probed: a probe of the same model timed out")
        else:
            probe = probe_shape(sample, probe_steps)
        if probe.error is not None:
            too_slow |= {model_kind} if probe.timed_out else set()
            unknown += len(members)
            echo(f"  {shape_name(sample)}: {probe.error}")
            continue
        seconds = sum(run_seconds(run, probe) for run in members)
        total += seconds
        echo(f"  {shape_name(sample)}: {probe.step_s:.3g} s/step, {probe.eval_s:.3g} s/evaluation, "
             f"{probe.once_s:.3g} s once -> {_minutes(seconds)} for {len(members)} run(s)")  # fmt: skip
    if unknown == len(to_do):
        echo("No estimate: no run shape could be probed here.")
        return None
    at_most = any(run_steps(run).at_most for run in to_do)
    scope = (
        f"the {len(to_do) - unknown} runs probed; {unknown} not estimated"
        if unknown
        else f"the {len(to_do)} runs to do"
    )
    bound = " at most (a pre-training run stops once it meets the threshold)" if at_most else ""
    echo(f"Estimate: ≈ {_minutes(total)} on this machine for {scope}{bound}.")
    if load > cores / 2:
        echo(f"(This machine was busy when probed, load {load:.1f} on {cores} cores: the estimate is for it "
             "as loaded; on quiet cores it takes less.)")  # fmt: skip
    return None if unknown else total


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    text = f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"
    return text + (f" ({minutes / 60:.1f} h)" if minutes >= 120 else "")


def probe_shape(run: PlannedRun, steps: int, timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """Probe one run's shape in a child process (``python -m synthpre.experiments.estimate DIR``)."""
    with tempfile.TemporaryDirectory(prefix="synthpre-probe-") as tmp:
        folder = Path(tmp)
        (folder / REQUEST_FILE).write_text(
            json.dumps({"kind": run.kind, "config": run.config, "steps": steps})
        )
        command = [sys.executable, "-m", "synthpre.experiments.estimate", str(folder)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            error = f"no estimate: its probe took over {timeout_s:g} s here (a GPU-scale run?)"
            return Probe(error=error, timed_out=True)
        if not (folder / RESULT_FILE).is_file():
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return Probe(error=f"probe failed: {last}")
        return Probe(**json.loads((folder / RESULT_FILE).read_text()))


def measure(kind: str, config: dict[str, Any], steps: int, folder: Path) -> Probe:
    """Train ``steps`` real steps of a run of this shape in ``folder`` and time them (the child's work)."""
    import synthpre.downstream.finetune
    import synthpre.train.engine  # noqa: F401 - imported once per study, not timed per run
    from synthpre import recipes
    from synthpre.train.metrics import read_metrics

    run_dir = folder / "run"
    probe_train = {"max_steps": steps, "eval_every": steps, "progress": False}
    if kind == "pretrain":
        settings = pretraining_settings(config, run_dir)
        real_val, real_test = settings.train.num_val_examples, 0
        probe_val = min(real_val, PROBE_VAL)
        train = settings.train.model_copy(update={
            **probe_train, "save_every": steps, "num_val_examples": probe_val, "selection": "max",
            "stop_at_threshold": False,
        })  # fmt: skip
        started = time.perf_counter()
        recipes.pretrain(settings.model_copy(update={"train": train}))
    else:
        settings = finetuning_settings({**config, "init": {"kind": "random"}}, run_dir, {}).resolved()
        real_val, real_test = _split_sizes(settings, config["test"])
        probe_val = min(real_val, PROBE_VAL)
        started = time.perf_counter()
        recipes.finetune(settings.model_copy(update={**probe_train, "val_size": probe_val}))
    finished = time.perf_counter()
    rows = read_metrics(run_dir)
    trained = next(r["elapsed_s"] for r in rows if r["split"] == "train" and r["step"] == steps)
    evaluated = next(r["elapsed_s"] for r in rows if r["split"] == "val" and r["step"] == steps)
    once = finished - started - evaluated
    if real_test:
        decoded = min(real_test, PROBE_TEST)
        before = time.perf_counter()
        recipes.evaluate(run_dir, "test", beams=config["test"]["beams"], limit=decoded, progress=False)
        once += (time.perf_counter() - before) * real_test / decoded
    return Probe(trained / steps, (evaluated - trained) * real_val / probe_val, once)


def _split_sizes(settings: Any, test: dict[str, Any]) -> tuple[int, int]:
    """Validation examples of a fine-tuning run, and test examples it decodes (0: none)."""
    from synthpre.downstream.finetune import read_split
    from synthpre.downstream.registry import get_downstream_task

    task = get_downstream_task(settings.task)
    val = len(read_split(task, settings, "validation"))
    if not test["evaluate"]:
        return val, 0
    count = len(read_split(task, settings, "test"))
    return val, min(count, test["examples"] or count)


def main(argv: list[str] | None = None) -> None:
    """The child of :func:`probe_shape`: read ``DIR/probe_request.json``, probe, write the result."""
    folder = Path((argv or sys.argv[1:])[0])
    request = json.loads((folder / REQUEST_FILE).read_text())
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        probe = measure(request["kind"], request["config"], request["steps"], folder)
    except UserError as error:
        probe = Probe(error=f"not probed: {error}")
    (folder / RESULT_FILE).write_text(json.dumps(probe.__dict__))


if __name__ == "__main__":
    main()
