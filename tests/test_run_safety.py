"""A run folder is one run's: an exclusive lock for the life of a run (real processes), unique temporary
names, a clear refusal to resume from a damaged config.json, and a warning when nothing can be resumed."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from synthpre.errors import UserError
from synthpre.train import checkpoints as ckpt
from synthpre.train import train
from synthpre.train.engine import clear_run_dir
from synthpre.train.runlock import LOCK_FILE, run_lock
from tiny_runs import run_cli, tiny_run

TINY = ["--task", "identity", "--model", "t5-tiny", "--vocab", "3:12", "--min-len", "1", "--max-len", "6"]
TINY += ["--max-input-len", "16", "--max-target-len", "16", "--threads", "1", "--no-progress"]
RUN = [*TINY, "--batch-size", "4", "--max-steps", "30", "--eval-every", "10", "--save-every", "10"]
RUN += ["--num-val-examples", "8"]
# Imports everything first, then waits for its go file: the test decides when each process starts.
WAITING_SCRIPT = """
import sys, time
from pathlib import Path
import accelerate, torch.utils.tensorboard
import synthpre.cli, synthpre.model, synthpre.recipes, synthpre.train.engine
go = Path(sys.argv.pop(1))
while not go.exists():
    time.sleep(0.01)
sys.argv[0] = "synthpre"
synthpre.cli.main()
"""


def start(args: list[str], go: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WAITING_SCRIPT, str(go), "pretrain", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_holder(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> str:
    """The content of the lock file once ``process`` holds it (``pid@host``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            text = (run_dir / LOCK_FILE).read_text().strip()
        except FileNotFoundError:
            text = ""
        if text.startswith(f"{process.pid}@"):
            return text
        time.sleep(0.01)
    raise AssertionError(f"process {process.pid} never held {run_dir / LOCK_FILE}: {process.communicate()}")


def rows(run_dir: Path) -> list[tuple[int, str]]:
    return [
        (r["step"], r["split"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    ]


def test_two_processes_on_one_fresh_folder_one_trains_the_other_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = [*RUN, "--out", str(run_dir)]
    go_first, go_second = tmp_path / "go-first", tmp_path / "go-second"
    first, second = start(args, go_first), start(args, go_second)
    go_first.touch()
    holder = wait_for_holder(run_dir, first)
    go_second.touch()
    second_err = second.communicate(timeout=300)[1]
    first_err = first.communicate(timeout=300)[1]
    assert first.returncode == 0, first_err
    assert second.returncode == 2, second_err
    pid, host = holder.split("@")
    assert f"{run_dir} is in use by process {pid} on {host}" in second_err, second_err
    assert "Traceback" not in second_err and "choose another --out" in second_err
    written = rows(run_dir)
    assert len(written) == len(set(written)), "a step was logged twice"
    assert [step for step, split in written if split == "val"] == [10, 20, 30]
    assert not (run_dir / LOCK_FILE).exists()  # released (and removed) when the run ended


def test_a_holder_killed_with_sigkill_does_not_block_a_resume(tmp_path, capsys, one_thread):
    run_dir = tmp_path / "run"
    args = [*RUN, "--out", str(run_dir)]
    go = tmp_path / "go"
    go.touch()
    process = start(args, go)
    holder = wait_for_holder(run_dir, process)
    while not (run_dir / "checkpoints" / "step_10").exists() and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run finished before it was killed"
    assert (run_dir / LOCK_FILE).read_text().strip() == holder  # left behind by the dead holder

    code, err = run_cli(["pretrain", *args, "--resume"], capsys)
    assert code == 0, err
    assert [step for step, split in rows(run_dir) if split == "val"] == [10, 20, 30]
    assert not (run_dir / LOCK_FILE).exists()


def test_the_lock_names_its_holder_and_a_refused_or_failed_run_leaves_nothing(tmp_path):
    run_dir = tmp_path / "new" / "run"
    with run_lock(run_dir) as lock:
        assert lock.path.read_text() == f"{os.getpid()}@{os.uname().nodename}\n"
        refused = rf"in use by process {os.getpid()} on .*choose another --out"
        # another open file: flock refuses it even in this process
        with pytest.raises(UserError, match=refused), run_lock(run_dir):
            pass
        assert lock.path.is_file()  # the refused one does not remove the holder's file
    assert not (tmp_path / "new").exists()  # made for the lock, removed with it

    with pytest.raises(RuntimeError), run_lock(run_dir):
        raise RuntimeError("a check failed")
    assert list(tmp_path.iterdir()) == []

    run_dir.mkdir(parents=True)
    (run_dir / "mine.txt").write_text("kept")
    with run_lock(run_dir):
        (run_dir / "config.json").write_text("{}")
        clear_run_dir(run_dir)  # --overwrite keeps the lock file
        assert (run_dir / LOCK_FILE).is_file() and not (run_dir / "config.json").exists()
    assert sorted(p.name for p in run_dir.iterdir()) == ["mine.txt"]


def test_a_damaged_config_json_on_resume_exits_2_and_changes_nothing(tmp_path, capsys, one_thread):
    run_dir = tmp_path / "run"
    base = [*TINY, "--batch-size", "4", "--max-steps", "2", "--save-every", "2", "--eval-every", "2"]
    base += ["--num-val-examples", "4", "--out", str(run_dir)]
    assert run_cli(["pretrain", *base], capsys)[0] == 0
    good = json.loads((run_dir / "config.json").read_text())
    cases = {
        "not JSON": (b'{"train": ', "not JSON"),
        "not UTF-8": (b"\xff\xfe{}", "not UTF-8"),
        "a JSON list": (b"[1, 2]", "a JSON list"),
        "no blocks": (b'{"train": {}}', "lacks the block(s) 'model'"),
        "a block that is no object": (json.dumps({**good, "model": []}).encode(), "'model' are not JSON"),
        "a bad train block": (json.dumps({**good, "train": {}}).encode(), "train.out_dir"),
    }
    for name, (content, detail) in cases.items():
        (run_dir / "config.json").write_bytes(content)
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        code, err = run_cli(["pretrain", *base, "--resume"], capsys)
        assert code == 2, (name, err)
        assert f"cannot resume {run_dir}: its config.json is damaged (" in err, (name, err)
        assert detail in err and "use --overwrite to start over" in err, (name, err)
        assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before, name


def test_resume_without_a_usable_checkpoint_warns_and_starts_from_step_0(tmp_path, one_thread, caplog):
    config, model, source = tiny_run(tmp_path)
    train(config, model, source, source.validation())
    root = tmp_path / "run" / "checkpoints"
    with open(root / "step_2" / "model" / "model.safetensors", "r+b") as handle:
        handle.truncate(100)  # the only checkpoint is corrupt
    with caplog.at_level(logging.INFO, logger="synthpre.train"):
        result = train(config, tiny_run(tmp_path)[1], source, source.validation(), resume=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"no usable checkpoint in {root}: starting from step 0" in warnings
    assert result.step == 2 and ckpt.verify_checkpoint(root / "step_2") is None

    ckpt.remove_checkpoint(root / "step_2")  # none saved yet
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="synthpre.train"):
        train(config, tiny_run(tmp_path)[1], source, source.validation(), resume=True)
    assert f"no usable checkpoint in {root}: starting from step 0" in caplog.text


def test_concurrent_atomic_json_writes_of_one_path_never_fail(tmp_path):
    path = tmp_path / "best.json"
    errors = []

    def write(value: int) -> None:
        try:
            for i in range(200):
                ckpt.write_json_atomic(path, {"writer": value, "i": i})
        except Exception as error:  # collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=write, args=(v,)) for v in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads(path.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


def test_remove_leftovers_cleans_the_unique_temporary_names(tmp_path):
    names = [ckpt.temporary_name("config.json"), ".tmp-best.json", ckpt.temporary_name("best.json")]
    others = [".tmp-other.json.1.ab", ".tmp-config.jsonx", "notes.txt"]
    for name in names + others:
        (tmp_path / name).write_text("{}")
    ckpt.remove_leftovers(tmp_path, names=("config.json", "best.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)

    root = tmp_path / "checkpoints"
    (root / ".tmp-step_4").mkdir(parents=True)
    (root / ".trash-step_2").mkdir()
    (root / ckpt.temporary_name("checksums.json")).write_text("{}")
    (root / "step_6").mkdir()
    ckpt.remove_leftovers(root)
    assert [p.name for p in root.iterdir()] == ["step_6"]
