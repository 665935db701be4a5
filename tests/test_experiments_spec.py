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
