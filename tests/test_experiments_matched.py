"""Matched pre-training, really run (tiny T5, the real engine): two pre-training tasks that converge at
very different speeds follow the study's one rule, and the report shows the accuracy and step of the
checkpoint each row started from, flagging the task that did not meet the rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.experiments.execute import RULE_MET, execute_run
from synthpre.experiments.runner import prepare_study, run_study
from synthpre.experiments.store import Store

# search (yes/no + EOS) is over 80% validation token accuracy at its first evaluation; reverse (6..12
# tokens) stays near 10% for its whole cap.  The threshold (50%) lies far from both.
SPEC = """\
name: matched-test
model: t5-tiny
vocab: "3:127"
pretraining:
  {rule}
  train: {{max_steps: {cap}, batch_size: 16, dropout: 0.0, max_input_len: 24, max_target_len: 24,
          eval_every: 5, save_every: {cap}, num_val_examples: 32, progress: false{stop}}}
  tasks:
    Fast: {{task: search, params: {{min_len: 4, max_len: 10}}}}
    Slow: {{task: reverse, params: {{min_len: 6, max_len: 12}}}}
init_schemes: [full]
baselines: {{random_init: true}}
downstream:
  tasks: [smiles_canonicalize]
  tokenizer: chars
  lrs: [0.01]
  train: {{max_steps: 2, eval_every: 2, batch_size: 8, val_size: 8, eval_decode: 0, max_decode_len: 4,
          progress: false}}
  test_examples: 2
"""
CAP = 20
THRESHOLD = "rule: threshold\n  threshold: 0.5"
FIXED = "rule: fixed_steps"

pytestmark = pytest.mark.usefixtures("one_thread")


def _run_study(tmp_path: Path, rule: str, stop: bool) -> tuple[Path, dict[str, dict]]:
    """Run the study; return its folder and, per pre-training label, the stored outcome."""
    spec = tmp_path / "study.yaml"
    spec.write_text(SPEC.format(rule=rule, cap=CAP, stop=", stop_at_threshold: true" if stop else ""))
    out = tmp_path / "study"
    _, runs = prepare_study(spec, out)
    report = run_study(out, runs, execute_run, console=Console(quiet=True))
    assert not report.failed, report
    store = Store(out, read_only=True)
    try:
        outcomes: dict[str, dict] = {}
        for row in store.results("pretrain"):
            label = row["pretrain_task"]
            outcomes.setdefault(label, {"step": row["selected_step"], "hash": row["run_hash"]})
            outcomes[label][row["metric"]] = row["value"]
        for outcome in outcomes.values():
            outcome["curve"] = store.curves(outcome["hash"], "val_token_accuracy")
    finally:
        store.close()
    return out, outcomes


def _report(out: Path, table: int) -> str:
    result = CliRunner().invoke(app, ["report", str(out), "--table", str(table), "--metric", "val_loss"])
    assert result.exit_code == 0, result.output
    return result.output


def _row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_threshold_rule_selects_each_task_by_the_same_rule_and_flags_the_unmet(tmp_path: Path) -> None:
    out, outcomes = _run_study(tmp_path, THRESHOLD, stop=True)
    fast, slow = outcomes["Fast"], outcomes["Slow"]
    # the same rule for both: the first evaluation >= 50% (Fast stops there), else the best (Slow's cap)
    first = next(step for step, value in fast["curve"] if value >= 50.0)
    assert fast["step"] == first < CAP and fast[RULE_MET] == 1.0
    assert fast["curve"][-1][0] == first  # stop_at_threshold: it stopped at the checkpoint it hands on
    assert slow["curve"][-1][0] == CAP and max(v for _, v in slow["curve"]) < 50.0
    assert slow["step"] == CAP and slow[RULE_MET] == 0.0

    text = _report(out, 1)
    assert "pre-training val acc @ step" in text.splitlines()[2]
    assert _row(text, "Fast Full Init")[-1] == f"{fast['val_token_accuracy']:.1f} @ {first}"
    assert _row(text, "Slow Full Init")[-1] == f"{slow['val_token_accuracy']:.1f} @ {CAP} †"
    assert _row(text, "Random Init")[-1] == "-"
    assert "validation token accuracy >= 50% (App. A), within its cap of max_steps (Fast 20, Slow 20)" in text
    assert "† pre-training did not meet the study's rule: Slow (seed 0): " in text
    assert "Fast (seed 0)" not in text

    scheme = _report(out, 2)  # init schemes x pre-training tasks: one row with both checkpoints
    cells = _row(scheme, "pre-training val acc @ step")
    assert cells[1:] == [
        f"{fast['val_token_accuracy']:.1f} @ {first}",
        f"{slow['val_token_accuracy']:.1f} @ {CAP} †",
    ]


def test_fixed_steps_rule_gives_every_task_the_same_budget(tmp_path: Path) -> None:
    out, outcomes = _run_study(tmp_path, FIXED, stop=False)
    for outcome in outcomes.values():  # Fast meets 50% at step 5, and still trains the whole budget
        assert outcome["step"] == CAP == outcome["curve"][-1][0] and outcome[RULE_MET] == 1.0
    text = _report(out, 1)
    assert _row(text, "Fast Full Init")[-1] == f"{outcomes['Fast']['val_token_accuracy']:.1f} @ {CAP}"
    assert "every pre-training task trains 20 steps" in text and "†" not in text
