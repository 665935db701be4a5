"""Full disks: a checkpoint that does not fit stops the run cleanly (exit 2, a message with the sizes,
no temporary folder, resumable to bitwise-equal weights once space is freed); so does a checkpoint
whose write fails part-way with ENOSPC; `synthpre generate` keeps an existing dataset.  The faults are
injected (no root, no tmpfs needed): the real writes run and one of them raises ENOSPC."""

from __future__ import annotations

import errno
import os
from collections import namedtuple
from pathlib import Path

from safetensors.torch import load_file

from synthpre.train import checkpoints as ckpt
from synthpre.train import engine
from tiny_runs import launch, run_cli

PRETRAIN = ["pretrain", "--task", "identity", "--model", "t5-tiny", "--vocab", "3:12", "--min-len", "1",
            "--max-len", "6", "--batch-size", "4", "--max-input-len", "16", "--max-target-len", "16",
            "--eval-every", "2", "--save-every", "2", "--num-val-examples", "8", "--no-progress",
            "--threads", "1"]  # fmt: skip


def _weights(run: Path, step: int) -> dict:
    return load_file(run / "checkpoints" / f"step_{step}" / "model" / "model.safetensors")


def _leftovers(run: Path) -> list[str]:
    return [p.name for p in run.rglob("*") if p.name.startswith((ckpt.TMP_PREFIX, ckpt.TRASH_PREFIX))]


def test_a_checkpoint_write_failing_with_enospc_stops_cleanly_and_resumes_bitwise(
    tmp_path, capsys, monkeypatch
):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli([*PRETRAIN, "--max-steps", "6", "--out", str(whole)], capsys)[0] == 0
    real_write = ckpt.write_main_files

    def full_at_step_4(tmp: Path, *args) -> None:
        if tmp.name.endswith("step_4"):
            (tmp / "optimizer.pt").write_bytes(b"half a file")  # a write cut short, then no space
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "optimizer.pt"))
        real_write(tmp, *args)

    monkeypatch.setattr(ckpt, "write_main_files", full_at_step_4)
    code, err = run_cli([*PRETRAIN, "--max-steps", "6", "--out", str(cut)], capsys)
    assert code == 2 and "disk full while writing checkpoint step 4" in err and "MB free" in err, err
    assert "--resume" in err
    assert _leftovers(cut) == [] and sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["step_2"]
    monkeypatch.setattr(ckpt, "write_main_files", real_write)  # space is freed
    code, err = run_cli([*PRETRAIN, "--max-steps", "6", "--out", str(cut), "--resume"], capsys)
    assert code == 0, err
    assert all((_weights(whole, 6)[k] == v).all() for k, v in _weights(cut, 6).items())


def test_a_checkpoint_that_cannot_fit_is_not_started(tmp_path, capsys, monkeypatch):
    """Before writing a checkpoint the engine compares the free space with the previous checkpoint's
    size: too little, and it stops before writing anything (the run stays resumable)."""
    run = tmp_path / "run"
    assert run_cli([*PRETRAIN, "--max-steps", "2", "--out", str(run)], capsys)[0] == 0
    size = sum(p.stat().st_size for p in (run / "checkpoints" / "step_2").rglob("*") if p.is_file())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(engine.shutil, "disk_usage", lambda path: usage(10**12, 10**12, size // 2))
    code, err = run_cli([*PRETRAIN, "--max-steps", "4", "--out", str(run), "--resume"], capsys)
    assert code == 2 and "disk full while writing checkpoint step 4" in err, err
    assert f"needs ~{size / 1e6:,.0f} MB" in err
    assert _leftovers(run) == [] and sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_2"]


def test_generate_on_a_full_disk_exits_2_and_keeps_the_existing_dataset(tmp_path, capsys, monkeypatch):
    from synthpre.data import export

    out = tmp_path / "data"
    args = ["generate", "set", "--num", "200", "--seed", "0", "--out", str(out)]
    assert run_cli(args, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def no_space(job):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(job.path))
        yield  # a generator, as write_shard is

    monkeypatch.setattr(export, "write_shard", no_space)
    code, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 2 and "disk full" in err and "MB free" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the temporary folder is gone


FULL_AT_STEP_4 = """
import errno, os, sys
from synthpre.train import checkpoints as ckpt
real_write = ckpt.write_main_files
def full_at_step_4(tmp, *args):
    if tmp.name.endswith("step_4"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "optimizer.pt"))
    real_write(tmp, *args)
ckpt.write_main_files = full_at_step_4
from synthpre.cli import main
sys.argv[0] = "synthpre"
main()
"""


def test_with_two_processes_a_failed_checkpoint_write_stops_both(tmp_path):
    """The main process's failure reaches the other process, which would otherwise wait for it at the
    next collective forever; the run then resumes on two processes."""
    run = tmp_path / "run"
    args = [*PRETRAIN, "--batch-size", "8", "--max-steps", "6", "--out", str(run)]
    done = launch(2, args, tmp_path, script=FULL_AT_STEP_4, timeout=240)
    assert done.returncode != 0 and "disk full while writing checkpoint step 4" in done.stderr, done.stderr[
        -3000:
    ]
    assert _leftovers(run) == [] and sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_2"]
    resumed = launch(2, [*args, "--resume"], tmp_path, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run / "checkpoints" / "step_6").is_dir()


def test_a_run_folder_that_cannot_take_its_config_leaves_nothing(tmp_path, capsys, monkeypatch):
    """With no space left at all, writing config.json fails: exit 2, and no empty temporary file."""
    import json

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, "dump", no_space)
    out = tmp_path / "run"
    code, err = run_cli([*PRETRAIN, "--max-steps", "2", "--out", str(out)], capsys)
    assert code == 2 and "disk full while writing" in err, err
    assert not out.exists()  # the lock's folder is removed with the temporary file
