"""Study specs: validation with the line at fault, the run graph, run identity and sharding."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthpre.errors import UserError
from synthpre.experiments.plan import build_plan, parse_shard, shard_runs
from synthpre.experiments.spec import load_spec, parse_spec

PRESETS = Path(__file__).resolve().parents[1] / "src" / "synthpre" / "presets"

GRID = """\
name: grid
model: t5-tiny
vocab: "3:127"
pretraining:
  tasks:
    set: {task: set, params: {min_len: 5, max_len: 30}}
    identity: {task: identity}
init_schemes: [full, per_param_mean_sd]
downstream:
  tasks: [smiles_canonicalize, pycode_summarize]
  lrs: [1e-2, 1e-3]
  seeds: [0, 1]
"""


def test_malformed_spec_names_the_line_at_fault() -> None:
    bad = GRID.replace("  lrs: [1e-2, 1e-3]", "  lrs: [1e-2, -3]").replace("init_schemes", "init_schemez")
    with pytest.raises(UserError) as error:
        parse_spec(bad, "study.yaml")
    message = str(error.value)
    assert "study.yaml:8: init_schemez: unknown field" in message
    assert "study.yaml:11: downstream.lrs" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\ndownstream:\n  tasks: [a]\n  seeds: []\n", "study.yaml:4: downstream.seeds"),
        ("name: x\nname: y\ndownstream: {tasks: [a]}\n", "study.yaml:2: key 'name' appears twice"),
        ("name: x\ndownstream:\n  tasks: [a\n", "study.yaml:4: not valid YAML"),
        ("name: x\n", "study.yaml:1: downstream: Field required"),
        ("name: x\nmodel: t5-tinyy\ndownstream: {tasks: [a]}\n", "study.yaml:2: models: unknown model"),
        (
            "name: x\npretraining:\n  tasks:\n    Set: {task: set, params: {min_length: 3}}\n"
            "downstream: {tasks: [smiles_canonicalize]}\n",
            "study.yaml:4: pretraining.tasks.Set: params of 'set'",
        ),
        (
            "name: x\ndownstream:\n  tasks: [smiles_canonicalize]\n  train: {max_step: 3}\n",
            "study.yaml:4: downstream.train: 'max_step' is not a FinetuneConfig field",
        ),
        (
            "name: x\npretraining:\n  seeds: all\ndownstream: {tasks: [a]}\n",
            "study.yaml:3: pretraining.seeds",
        ),
    ],
)
def test_spec_errors(text: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected.replace(".", r"\.").replace("[", r"\[")):
        parse_spec(text, "study.yaml")


def test_pretraining_runs_are_shared_by_finetuning_runs() -> None:
    runs = build_plan(parse_spec(GRID))
    pretrain = [r for r in runs if r.kind == "pretrain"]
    finetune = [r for r in runs if r.kind == "finetune"]
    # 2 pre-training tasks shared by seeds; arms: random + 2 tasks x 2 schemes = 5; x 2 tasks, 2 lrs, 2 seeds
    assert len(pretrain) == 2
    assert len(finetune) == 5 * 2 * 2 * 2
    assert runs[:2] == pretrain  # pre-training first: a shard never waits on a later run of its own
    users = {p.hash: sum(p.hash in f.deps for f in finetune) for p in pretrain}
    assert users == {p.hash: 2 * 2 * 2 * 2 for p in pretrain}
    assert len({r.hash for r in runs}) == len(runs)


def test_run_identity_is_the_resolved_config() -> None:
    a = build_plan(parse_spec(GRID))
    b = build_plan(parse_spec(GRID.replace("seeds: [0, 1]", "seeds: [1, 0]")))
    assert {r.hash for r in a} == {r.hash for r in b}  # order in the spec does not matter
    c = build_plan(parse_spec(GRID.replace("max_len: 30", "max_len: 31")))
    changed = {r.hash for r in c} - {r.hash for r in a}
    # the set pre-training run and every fine-tuning run that starts from it get a new identity
    assert len(changed) == 1 + 2 * 2 * 2 * 2


def test_per_seed_pretraining_gives_one_pretraining_run_per_seed() -> None:
    text = GRID.replace("pretraining:\n", "pretraining:\n  seeds: per_seed\n")
    assert sum(r.kind == "pretrain" for r in build_plan(parse_spec(text))) == 4


def test_shards_partition_the_study() -> None:
    runs = build_plan(parse_spec(GRID))
    for count in (1, 2, 3, 7):
        parts = [shard_runs(runs, index, count) for index in range(count)]
        hashes = [r.hash for part in parts for r in part]
        assert sorted(hashes) == sorted(r.hash for r in runs)


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "0/0", "-1/2"])
def test_bad_shard(text: str) -> None:
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)


def test_presets_are_valid() -> None:
    presets = sorted(PRESETS.glob("*.yaml"))
    assert {"tiny.yaml", "demo.yaml", "paper-table1.yaml", "paper-table2.yaml"} <= {p.name for p in presets}
    for preset in presets:
        assert build_plan(load_spec(preset)), preset


MATCHED = """\
name: matched
model: t5-tiny
vocab: "3:127"
pretraining:
  rule: {rule}
  train: {{max_steps: 100, eval_every: 10}}
  tasks:
    Set: {{task: set, params: {{min_len: 5, max_len: 30}}{set_train}}}
    Identity: {{task: identity}}
downstream: {{tasks: [smiles_canonicalize]}}
"""


def _matched(rule: str = "threshold", set_train: str = "") -> str:
    return MATCHED.format(rule=rule, set_train=f", train: {set_train}" if set_train else "")


def test_every_pretraining_task_follows_the_studys_one_rule() -> None:
    """Threshold: the same selection for every task, per-task caps allowed; fixed_steps: one budget."""
    text = _matched(set_train="{max_steps: 400}").replace("  rule: threshold\n", "  threshold: 0.95\n")
    spec = parse_spec(text)
    trains = {r.labels["pretrain_task"]: r.config["train"] for r in build_plan(spec) if r.kind == "pretrain"}
    for train in trains.values():
        assert {k: train[k] for k in ("selection", "selection_threshold")} == {
            "selection": "first_above_threshold", "selection_threshold": 0.95,
        }  # fmt: skip
    assert trains["Set"]["max_steps"] == 400 and trains["Identity"]["max_steps"] == 100
    assert "accuracy >= 95% (App. A), within its cap of max_steps (Set 400, Identity 100)" in (
        spec.pretraining.rule_text()
    )
    fixed = parse_spec(_matched("fixed_steps"))
    for run in build_plan(fixed):
        if run.kind == "pretrain":
            assert run.config["train"] | {"eval_every": 10} == {
                "max_steps": 100, "eval_every": 10, "selection": "fixed_step", "selection_step": 100,
                "stop_at_threshold": False,
            }  # fmt: skip
    assert fixed.pretraining.rule_text().startswith("every pre-training task trains 100 steps")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_matched(set_train="{selection: max}"), r"study.yaml:8: pretraining.tasks.Set.train: 'selection' is "
         r"set by the study's pre-training rule, the same for every task \(pretraining.rule"),
        (_matched().replace("eval_every: 10", "selection_threshold: 0.5"),
         r"study.yaml:6: pretraining.train: 'selection_threshold' is set by the study's pre-training rule"),
        (_matched("fixed_steps", "{max_steps: 400}"),
         r"study.yaml:4: pretraining: tasks.Set.train.max_steps: rule fixed_steps gives every task the same"),
        (_matched("fixed_steps").replace("max_steps: 100, ", ""),
         r"rule fixed_steps needs the budget all tasks share: pretraining.train.max_steps"),
        (_matched("fixed_steps", "{stop_at_threshold: true}"),
         r"stop_at_threshold \(task Set\): rule fixed_steps trains every task its whole budget"),
        (_matched("fixed_steps").replace("  rule:", "  threshold: 0.9\n  rule:"),
         r"threshold belongs to rule: threshold"),
        (_matched("until_done"),
         r"study.yaml:5: pretraining.rule: Input should be 'threshold' or 'fixed_steps'"),
    ],
)  # fmt: skip
def test_a_rule_that_is_not_one_for_all_tasks_is_refused(text: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected):
        parse_spec(text, "study.yaml")
