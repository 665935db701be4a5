"""Checkpoint selection (App. A and App. B): the rules on hand-made evaluations, App. B's named rules,
the best of a sweep, and a real fixed-step run whose best.json names the fixed step."""

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from synthpre.train import SelectionRule, TrainConfig, best_of, finetune_selection, train
from synthpre.train import selection as sel
from tiny_runs import tiny_run

BEST_KEYS = {"step", "checkpoint", "metric", "value", "rule", "threshold", "threshold_met", "reason"}
EVALS = [
    {"step": 5, "acc": 0.5, "checkpoint": "c5"},
    {"step": 10, "acc": 0.995, "checkpoint": "c10"},
    {"step": 15, "acc": 0.999, "checkpoint": "c15"},
    {"step": 20, "acc": 1.0, "checkpoint": None},  # evaluated, not saved: never selected
]


def test_selection_imports_without_torch():
    code = "import sys, synthpre.train.selection; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert SelectionRule is sel.SelectionRule


def test_first_above_threshold_and_max():
    first = SelectionRule("acc", "first_above_threshold", 0.99).select(EVALS)
    assert set(first) == BEST_KEYS
    assert first == {
        "step": 10, "checkpoint": "c10", "metric": "acc", "value": 0.995, "rule": "first_above_threshold",
        "threshold": 0.99, "threshold_met": True,
        "reason": "first checkpoint with acc >= 0.99 (0.9950 at step 10)",
    }  # fmt: skip
    best = SelectionRule("acc", "max").select(EVALS)
    assert best["step"] == 15 and best["reason"] == "max acc (0.9990 at step 15)" and best["threshold_met"]
    fallback = SelectionRule("acc", "first_above_threshold", 0.9999).select(EVALS)
    assert fallback["step"] == 15 and not fallback["threshold_met"]
    assert fallback["reason"].startswith("no checkpoint reached acc >= 0.9999 yet: max acc")
    assert SelectionRule("acc").select([{"step": 5, "acc": 1.0, "checkpoint": None}]) is None


def test_only_first_above_threshold_crosses_it_and_keeps_the_first_crossing():
    over = {"acc": 0.995}
    first = SelectionRule("acc", "first_above_threshold", 0.99)
    assert first.crosses_threshold(over) and not first.crosses_threshold({"acc": 0.5})
    assert first.must_keep(10, over, best=None)
    assert not first.must_keep(15, over, best=first.select(EVALS))  # already met: no extra checkpoint
    for mode, step in (("max", None), ("fixed_step", 10)):
        rule = SelectionRule("acc", mode, 0.99, step)
        assert not rule.crosses_threshold(over) and not rule.must_keep(15, over, best=None)
        assert not rule.evaluates_at(10) or mode == "fixed_step"


def test_fixed_step_reached_not_reached_and_saved_for_the_rule():
    rule = SelectionRule("acc", "fixed_step", step=10)
    chosen = rule.select(EVALS)
    assert set(chosen) == BEST_KEYS
    assert chosen["step"] == 10 and chosen["rule"] == "fixed_step"  # although step 15 has more
    assert chosen["reason"] == "fixed step 10 (0.9950 at step 10)" and chosen["threshold_met"]
    later = SelectionRule("acc", "fixed_step", step=50).select(EVALS)
    assert later["step"] == 15  # the newest saved one (step 20 was not saved)
    assert later["reason"].startswith("fixed step 50 not reached yet: newest checkpoint")
    unsaved = SelectionRule("acc", "fixed_step", step=20).select(EVALS)
    assert unsaved["step"] == 15 and "has no checkpoint" in unsaved["reason"]
    # The engine saves the fixed step whatever save_every says, and evaluates there.
    assert rule.must_keep(10, {"acc": 0.1}, best=None) and not rule.must_keep(15, {"acc": 1.0}, best=None)
    assert rule.evaluates_at(10) and not rule.evaluates_at(15)
    scheduled = [{"step": 5, "acc": 0.5, "checkpoint": None}, {"step": 10, "acc": 0.6, "checkpoint": "c10"}]
    scheduled += [
        {"step": 15, "acc": 0.9, "checkpoint": None},
        {"step": 20, "acc": 0.95, "checkpoint": "c20"},
    ]
    assert rule.select(scheduled)["step"] == 10
    with pytest.raises(ValueError, match="selection_step"):
        SelectionRule("acc", "fixed_step")
    with pytest.raises(ValueError, match="unknown selection mode"):
        SelectionRule("acc", "latest")


def test_rule_from_config_and_fixed_step_needs_its_step(tmp_path):
    config = TrainConfig(out_dir=str(tmp_path), selection="fixed_step", selection_step=50_000)
    assert SelectionRule.from_config(config) == SelectionRule(
        "val_token_accuracy", "fixed_step", 0.99, 50_000
    )
    assert SelectionRule.from_config(TrainConfig(out_dir=str(tmp_path), selection_step=7)).step is None
    with pytest.raises(ValidationError, match="selection_step"):
        TrainConfig(out_dir=str(tmp_path), selection="fixed_step")
    with pytest.raises(ValidationError):
        TrainConfig(out_dir=str(tmp_path), selection="fixed_step", selection_step=0)


def test_app_b_rules_as_train_config_fields(tmp_path):
    assert sel.MAX_VAL_TOKEN_ACCURACY == "max_val_token_accuracy" and sel.FIXED_STEP == "fixed_step"
    assert sel.BEST_VAL_METRIC == "best_val_metric" and set(sel.RULE_TEXT) == {
        sel.MAX_VAL_TOKEN_ACCURACY, sel.FIXED_STEP, sel.BEST_VAL_METRIC,
    }  # fmt: skip
    assert finetune_selection(sel.MAX_VAL_TOKEN_ACCURACY, "rouge2") == {
        "selection": "max", "selection_metric": "val_token_accuracy", "selection_step": None,
    }  # fmt: skip
    assert finetune_selection(sel.BEST_VAL_METRIC, "f1") == {
        "selection": "max", "selection_metric": "val_f1", "selection_step": None,
    }  # fmt: skip
    fixed = finetune_selection(sel.FIXED_STEP, "rouge2", 50_000)
    assert fixed == {
        "selection": "fixed_step",
        "selection_metric": "val_token_accuracy",
        "selection_step": 50_000,
    }
    assert TrainConfig(out_dir=str(tmp_path), **fixed).selection_step == 50_000
    with pytest.raises(ValueError, match=r"unknown App\. B selection rule"):
        finetune_selection("latest", "f1")


def test_best_of_takes_the_first_of_equal_maxima_and_missing_as_minus_infinity():
    records = [{"lr": 1e-2}, {"lr": 3e-3, "acc": 0.7}, {"lr": 1e-3, "acc": 0.9}, {"lr": 3e-4, "acc": 0.9}]
    assert best_of(records, "acc")["lr"] == 1e-3
    assert best_of([{"lr": 1e-2}, {"lr": 1e-3}], "acc")["lr"] == 1e-2
    with pytest.raises(ValueError):
        best_of([], "acc")


def test_a_fixed_step_run_selects_its_step_over_better_later_checkpoints(tmp_path, one_thread):
    config, model, source = tiny_run(
        tmp_path, max_steps=12, batch_size=8, dropout=0.0, eval_every=4, save_every=100, num_val_examples=16,
        log_every=4, selection="fixed_step", selection_step=3,
    )  # fmt: skip  # step 3: no scheduled evaluation, no scheduled checkpoint
    result = train(config, model, source, source.validation())
    run = tmp_path / "run"
    best = json.loads((run / "best.json").read_text())
    assert set(best) == BEST_KEYS and best == result.best
    assert best["step"] == 3 and best["checkpoint"] == "checkpoints/step_3" and best["rule"] == "fixed_step"
    assert best["reason"].startswith("fixed step 3")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = {row["step"]: row["val_token_accuracy"] for row in rows if row["split"] == "val"}
    assert sorted(val) == [3, 4, 8, 12]
    assert max(val[4], val[8], val[12]) > best["value"]  # later evaluations are better, yet not chosen
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"step_3", "step_12"}
