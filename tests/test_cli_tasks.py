"""``synthpre tasks | show | generate`` through the real entry point (``UserError`` -> exit code 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from synthpre.cli import main
from synthpre.tokens import TASK_PREFIX_ORDER


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["synthpre", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def test_tasks_lists_every_simple_task(monkeypatch, capsys) -> None:
    code, out, _ = run(monkeypatch, capsys, "tasks")
    assert code == 0
    for name in TASK_PREFIX_ORDER[:18]:
        assert name in out


def test_show_prints_examples_in_paper_notation(monkeypatch, capsys) -> None:
    code, out, _ = run(monkeypatch, capsys, "show", "set", "-n", "2", "--letters", "--max-len", "20")
    assert code == 0 and out.count("Source:") == 2
    source, target = out.split("Source:\n")[1].split("\n\nTarget:\n")
    assert source.split()[0] == "a" and target.split()[:1] == ["a"]
    code, out, _ = run(monkeypatch, capsys, "show", "search", "-n", "4", "--letters", "--max-len", "12")
    assert "<s>" in out and ("yes" in out or "no" in out)
    code, out, _ = run(monkeypatch, capsys, "show", "length", "-n", "1", "--vocab", "3:127")
    assert code == 0 and "127" not in out.split("Target:")[1]  # digit sentinels, not content ids


def test_generate_writes_a_dataset(monkeypatch, capsys, tmp_path: Path) -> None:
    out = tmp_path / "set"
    code, _, _ = run(
        monkeypatch, capsys, "generate", "set", "--num", "500", "--seed", "3", "--out", str(out),
        "--format", "parquet", "--min-len", "5", "--max-len", "30", "--vocab", "3:127", "--val-num", "20",
        "--quiet",
    )  # fmt: skip
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_examples"] == 500 and manifest["params"] == {"min_len": 5, "max_len": 30}
    assert manifest["validation"]["num_examples"] == 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "sett", "--num", "5"], "Did you mean 'set'"),
        (["generate", "set", "--num", "5", "--min-len", "30", "--max-len", "20"], "min_len 30 > max_len 20"),
        (["generate", "sort", "--num", "5", "--min-len", "2"], "at least 4 tokens"),
        (["generate", "set", "--num", "5", "--vocab", "2:50"], "needs 219"),
        (["generate", "set", "--num", "0"], "must be positive"),
        (["generate", "set", "--num", "5", "--vocab", "9"], "LO:HI"),
        (["generate", "set", "--num", "5", "--param", "colour=red"], "KEY=VALUE"),
        (["show", "identity", "-n", "0"], "must be positive"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(monkeypatch, capsys, tmp_path: Path, args, message) -> None:
    out = tmp_path / "out"
    if args[0] == "generate":
        args = [*args, "--out", str(out)]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2 and message in err
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(monkeypatch, capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    code, _, err = run(monkeypatch, capsys, "generate", "reverse", "--num", "5", "--out", str(out), "--quiet")
    assert code == 2 and "--overwrite" in err and [p.name for p in out.iterdir()] == ["old.txt"]
    args = ("generate", "reverse", "--num", "5", "--out", str(out), "--quiet", "--overwrite")
    code, _, _ = run(monkeypatch, capsys, *args)
    assert code == 0 and (out / "manifest.json").exists() and not (out / "old.txt").exists()


def test_the_command_line_starts_without_torch() -> None:
    """``synthpre --help``, ``tasks``, ``show`` and ``generate`` never import torch or transformers
    (seconds of start-up); the commands that train or load models import them when they run."""
    import subprocess

    script = (
        "import sys; sys.argv = ['synthpre', 'show', 'set', '-n', '1']; from synthpre.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
