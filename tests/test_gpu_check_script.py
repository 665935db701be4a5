"""``benchmarks/gpu_check.py``: its dry run goes through every part on the CPU (so the GPU check cannot
rot), a part that fails or runs out of time never stops the next one, and what it installs or fetches
leaves the GPU machine's torch alone."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
GPU_TESTS = Path(__file__).parent / "test_gpu.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = load_script()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, str]:
    out = tmp_path_factory.mktemp("gpu_check")
    command = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--budget", "400"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    report = json.loads((out / "gpu_check.json").read_text())
    return done, report, (out / "gpu_check.log").read_text()


@pytest.mark.slow  # about a minute: five tiny trainings, three launches
def test_the_dry_run_passes_every_part_and_logs_what_it_prints(dry_run) -> None:
    done, report, log = dry_run
    assert done.returncode == 0, done.stdout[-3000:]
    statuses = {name: part["status"] for name, part in report["parts"].items()}
    assert statuses == dict.fromkeys(gpu_check.SHARES, "ok"), report
    assert report["dry_run"] and report["elapsed_s"] < report["budget_s"]
    assert all(part["seconds"] <= part["limit_s"] + 1 for part in report["parts"].values())
    for name in gpu_check.SHARES:
        assert f"======== {name}: ok" in log
    for printed in ("engine/this", "weights sharded over 1 process(es)", "resuming from", "done: step 12"):
        assert printed in log and printed in done.stdout
    install = report["parts"]["install"]["figures"]
    assert install["unmet"] == [] and set(install["image_own"]) == {"torch", "accelerate"}
    assert install["environment"]["torch"] == metadata.version("torch")
    assert "--no-index --no-deps" in install["commands"][-1] and install["commands"][-1].endswith(
        f"-e {SCRIPT.parents[1]}"
    )
    assert not any(record["command"].startswith(f"{sys.executable} -m pip") for record in
                   report["parts"]["install"]["commands"])  # fmt: skip


@pytest.mark.slow
def test_the_dry_run_figures(dry_run) -> None:
    _, report, _ = dry_run
    parts = {name: part["figures"] for name, part in report["parts"].items()}
    gpu_tests = GPU_TESTS.read_text().count("\ndef test_")
    assert parts["tests"]["skipped"] == gpu_tests == len(parts["tests"]["outcomes"]) and gpu_tests >= 5
    assert all("needs a CUDA GPU" in outcome for outcome in parts["tests"]["outcomes"].values())

    rows = parts["throughput"]["runs"]["t5-tiny/fixed,synthetic"]
    assert {(r["scenario"], r["trainer"]) for r in rows} == {
        (scenario, trainer) for scenario in ("fixed", "synthetic") for trainer in ("engine", "hf")
    }
    assert all(r["tokens_per_s"] > 0 and r["mfu_measured"] > 0 and r["ratio"] > 0 for r in rows)
    assert all(r["mfu_datasheet"] is None and r["peak_memory_gb"] is None for r in rows)  # a CPU
    assert parts["throughput"]["bf16_tflops"]["measured"] > 0

    fsdp = parts["fsdp"]
    assert fsdp["max_weight_diff"] <= 1e-5 and fsdp["rows_agree"] and fsdp["steps"] == [2, 4]

    slice_ = parts["set"]
    assert slice_["timed_steps"] == [4, 12] and slice_["steps_per_s"] > 0
    assert slice_["projected_80k_steps_h"] == pytest.approx(80_000 / slice_["steps_per_s"] / 3600)
    goals = report["goals"]
    assert len(goals) == len(gpu_check.GOALS) + 1
    assert all(goal["value"] is None for name, goal in goals.items() if "MFU" in name)  # t5-tiny only
    assert goals["80K Set steps of t5-small <= 1 h"]["value"] == slice_["projected_80k_steps_h"]
    assert "not the goals' settings" in report["goals_note"]


def make_check(tmp_path: Path, budget: float) -> tuple:
    log = open(tmp_path / "check.log", "w", encoding="utf-8")  # noqa: SIM115 - closed by the test
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return gpu_check.Check(tmp_path, tmp_path, False, budget, env, log), log


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is no zombie (one killed but not yet reaped is done)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(child.pid))
print("waiting", flush=True)
time.sleep(60)
"""


def test_a_part_past_its_limit_is_stopped_with_its_children_and_failures_never_stop_the_next(
    tmp_path,
) -> None:
    check, log = make_check(tmp_path, budget=10)
    check.report["parts"] = {}
    pid_file = tmp_path / "grandchild.pid"

    def slow(part) -> None:
        part.figures["before"] = 1
        part.run([sys.executable, "-c", GRANDCHILD, str(pid_file)])

    def failing(part) -> None:
        part.run([sys.executable, "-c", "raise SystemExit(3)"], fraction=0.5, required=False)
        part.run([sys.executable, "-c", "print('after a failure')"])
        raise KeyError("a bug of the script")

    def last(part) -> None:
        part.figures["ran"] = part.run([sys.executable, "-c", "print('last part')"]).rc == 0

    shares = {"slow": 2, "failing": 1, "last": 1}
    start = time.monotonic()
    for name, body in (("slow", slow), ("failing", failing), ("last", last)):
        gpu_check.run_part(check, name, body, shares)
    log.close()
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert time.monotonic() - start < 10 + 2 * gpu_check.KILL_GRACE_S
    assert parts["slow"]["status"] == "timed_out" and parts["slow"]["figures"] == {"before": 1}
    assert parts["slow"]["commands"][0]["timed_out"] and parts["slow"]["limit_s"] == pytest.approx(5, abs=0.5)
    grandchild, deadline = int(pid_file.read_text()), time.monotonic() + gpu_check.KILL_GRACE_S
    while is_running(grandchild) and time.monotonic() < deadline:  # the signal may still be on its way
        time.sleep(0.1)
    assert not is_running(grandchild)  # the whole process group was stopped
    assert parts["failing"]["status"] == "failed" and "KeyError" in parts["failing"]["error"]
    assert [c["rc"] for c in parts["failing"]["commands"]] == [3, 0]
    assert parts["last"] == {**parts["last"], "status": "ok", "figures": {"ran": True}}
    text = (tmp_path / "check.log").read_text()
    assert "waiting" in text and "after a failure" in text and "last part" in text


def test_time_left_by_a_command_goes_to_the_later_ones() -> None:
    assert gpu_check.fractions([70, 80, 70, 40]) == pytest.approx([70 / 260, 80 / 190, 70 / 110, 1.0])
    assert gpu_check.fractions([1]) == [1.0]


def test_installing_and_fetching_wheels_leave_torch_and_accelerate_alone(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("torch-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl", "rouge_score-0.1.2-py3-none-any.whl",
                 "Accelerate-1.15.0-py3-none-any.whl"):  # fmt: skip
        (wheels / name).touch()
    first, checkout = gpu_check.install_commands(wheels)
    assert [Path(arg).name for arg in first if arg.endswith(".whl")] == ["rouge_score-0.1.2-py3-none-any.whl"]
    for command in (first, checkout):
        assert {"--no-index", "--no-deps"} <= set(command)
    assert checkout[-3:] == ["--no-build-isolation", "-e", str(SCRIPT.parents[1])]  # the machine's setuptools
    assert gpu_check.install_commands(None) == [checkout]
    (wheels / "setuptools-84.2.1-py3-none-any.whl").touch()
    checkout = gpu_check.install_commands(wheels)[1]
    assert checkout[-4:] == ["--find-links", str(wheels), "-e", str(SCRIPT.parents[1])]  # the one brought

    names = gpu_check.default_wheel_names()
    assert {"transformers", "rdkit", "setuptools"} <= set(names) and not {"torch", "accelerate"} & set(names)
    assert gpu_check.pinned("rdkit") == f"rdkit=={metadata.version('rdkit')}"
    command = gpu_check.download_command(wheels, "rdkit==2026.9.1", "3.12")
    assert {"--no-deps", "--only-binary=:all:", "manylinux_2_28_x86_64"} <= set(command)
    assert command[command.index("--python-version") + 1] == "3.12" and command[-1] == "rdkit==2026.9.1"
