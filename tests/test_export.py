"""``synthpre generate`` as a Python API: files, manifest, determinism across shards and workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthpre.data.export import export_dataset, jsonl_bytes, make_params, read_dataset
from synthpre.errors import UserError
from synthpre.tasks import VALIDATION_OFFSET, Examples, get_task
from synthpre.tokens import TokenSpace

ROOT = Path(__file__).resolve().parents[1]


def assert_same(a: Examples, b: Examples) -> None:
    for name in ("input_values", "input_offsets", "target_values", "target_offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_writes_the_generated_examples_and_a_manifest(tmp_path: Path, fmt: str) -> None:
    space = TokenSpace(3, 127)
    task = get_task("search")
    params = make_params(task, space, {"min_len": 5, "max_len": 30})
    out = tmp_path / "data"
    content = export_dataset(
        "search", out, 2100, seed=4, fmt=fmt, space=space, params=params, val_num=50, shards=2
    )
    written = json.loads((out / "manifest.json").read_text())
    assert written == content
    assert written["task"] == "search" and written["seed"] == 4 and written["num_examples"] == 2100
    assert written["params"] == {"min_len": 5, "max_len": 30, "present_prob": 0.75}
    assert written["token_space"]["content_ids"] == [3, 127]
    assert (
        written["token_space"]["task_sep"] == space.task_sep
        and written["token_space"]["empty"] == space.empty
    )
    assert written["prefix_ids"] == space.prefix_ids("search")
    assert written["digit_ids"] == space.digit_ids.tolist()
    assert (written["yes_id"], written["no_id"]) == (space.yes, space.no)
    assert written["format"] == fmt and written["synthpre_version"]
    assert written["validation"] == {
        "num_examples": 50,
        "indices": [VALIDATION_OFFSET, VALIDATION_OFFSET + 50],
    }
    assert sorted(f["path"] for f in written["files"]) == sorted(
        p.name for p in out.iterdir() if p.suffix != ".json"
    )
    assert_same(read_dataset(out, "train"), task.generate(params, space, 4, np.arange(2100)))
    validation = task.generate(params, space, 4, VALIDATION_OFFSET + np.arange(50))
    assert_same(read_dataset(out, "validation"), validation)
    assert not list(tmp_path.glob(".data*"))  # no temporary folder left


def test_shards_and_workers_give_the_same_bytes(tmp_path: Path) -> None:
    def files(out: Path) -> bytes:
        names = sorted(p for p in out.iterdir() if p.name.startswith("train"))
        return b"".join(p.read_bytes() for p in names)

    one = tmp_path / "one"
    export_dataset("set", one, 3000, seed=9, shards=1)
    three_serial, three_parallel = tmp_path / "serial", tmp_path / "parallel"
    export_dataset("set", three_serial, 3000, seed=9, shards=3)
    export_dataset("set", three_parallel, 3000, seed=9, shards=3, workers=2)
    assert files(one) == files(three_serial) == files(three_parallel)
    for name in ("train-00000-of-00003.jsonl", "train-00002-of-00003.jsonl"):
        assert (three_serial / name).read_bytes() == (three_parallel / name).read_bytes()
    parquet_one, parquet_many = tmp_path / "p1", tmp_path / "p3"
    export_dataset("union", parquet_one, 3000, seed=9, fmt="parquet")
    export_dataset("union", parquet_many, 3000, seed=9, fmt="parquet", shards=3, workers=3)
    assert_same(read_dataset(parquet_one), read_dataset(parquet_many))


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="--overwrite"):
        export_dataset("identity", out, 10)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export_dataset("identity", out, 10, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train-00000-of-00001.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_examples": 0}, "must be positive"), ({"fmt": "csv"}, "--format"), ({"shards": 20}, "--shards")],
)
def test_bad_requests_write_nothing(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"num_examples": 10, **kwargs}
    with pytest.raises(UserError, match=message):
        export_dataset("reverse", tmp_path / "out", **arguments)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_nothing(tmp_path: Path) -> None:
    def interrupt(written: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_dataset("set", tmp_path / "out", 70_000, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_jsonl_bytes_is_json() -> None:
    examples = Examples.from_lists([[], [0, 5], [31999, 32099, 7]], [[7], [], [10, 100, 1000]])
    lines = jsonl_bytes(examples).decode().splitlines()
    inputs, targets = examples.to_lists()
    assert [json.loads(line) for line in lines] == [
        {"inputs": a, "targets": b} for a, b in zip(inputs, targets, strict=True)
    ]


def test_benchmark_quick_mode_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "generate.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "set" in result.stdout and "ratio" in result.stdout
