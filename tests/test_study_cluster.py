"""Studies as job graphs (``study run --executor local|slurm``), really run: a tiny study through local
jobs gives the in-process runner's results; a killed job is run again by the next ``study run`` and
nothing finished is redone; a failed pre-training blocks its fine-tuning runs until ``--retry-failed``.
Slurm: submitit's ``SlurmExecutor`` against a fake ``sbatch`` that keeps the scripts it is given."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.experiments.execute import execute_run
from synthpre.experiments.jobs import read_job
from synthpre.experiments.results import RESULT_FILE, read_result, run_dir_of
from synthpre.experiments.runner import prepare_study, run_study, study_status
from synthpre.experiments.store import Store
from tiny_runs import run_cli, tiny_study

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _one_thread_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs are processes of their own: one torch thread each, like this process."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _spec(tmp_path: Path, steps: int = 8, extra: str = "") -> Path:
    return tiny_study(tmp_path, "[full, per_param_mean_sd]", steps, extra)


def _results(folder: Path) -> dict[tuple[str, str], float]:
    store = Store(folder, read_only=True)
    try:
        rows = store.results("pretrain") + store.results("finetune")
    finally:
        store.close()
    return {(row["arm"] or row["pretrain_task"], row["metric"]): row["value"] for row in rows}


def test_local_jobs_give_the_in_process_results(tmp_path: Path, capsys) -> None:
    spec = _spec(tmp_path)
    _, runs = prepare_study(spec, tmp_path / "in-process")
    assert not run_study(tmp_path / "in-process", runs, execute_run, console=Console(quiet=True)).failed
    jobs = tmp_path / "jobs"
    code, err = run_cli(["study", "run", str(spec), "--out", str(jobs), "--executor", "local"], capsys)
    assert code == 0, err
    records = [read_job(jobs, run.hash) for run in runs]
    assert all(r["executor"] == "local" and Path(r["log"]).is_file() for r in records)
    assert all((run_dir_of(jobs, run) / RESULT_FILE).is_file() for run in runs)
    shown = CliRunner().invoke(app, ["study", "status", str(jobs), "--runs"]).output
    assert "done: 3" in shown and all(f"local job {r['job_id']}" in shown for r in records), shown
    expected = _results(tmp_path / "in-process")
    assert {"val_token_accuracy", "test_em"} <= {metric for _, metric in expected}
    assert _results(jobs) == expected


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"`study run` ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_killed_job_runs_again_and_nothing_finished_is_redone(tmp_path: Path, capsys) -> None:
    spec, out = _spec(tmp_path, steps=20), tmp_path / "study"
    command = [sys.executable, "-c", "from synthpre.cli import main; main()", "study", "run", str(spec),
               "--out", str(out), "--executor", "local"]  # fmt: skip
    _, runs = prepare_study(spec, out)
    pretraining, victim, other = runs
    saved = run_dir_of(out, victim) / "best.json"  # written once its first checkpoint is complete
    study = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(saved.is_file, study, "the first fine-tuning job saves a checkpoint")
        os.kill(read_job(out, victim.hash)["pid"], signal.SIGKILL)  # the job, not `study run`
        output, _ = study.communicate(timeout=300)
    finally:
        study.kill()
        study.wait()
    assert study.returncode == 1, output  # the killed job is reported; the study went on
    counts, rows = study_status(out)
    assert counts["done"] == 2 and counts["interrupted"] == 1, rows
    finished = {run.hash: read_result(run_dir_of(out, run)) for run in (pretraining, other)}

    code, err = run_cli(["study", "run", str(spec), "--out", str(out), "--executor", "local"], capsys)
    assert code == 0, err
    assert read_job(out, victim.hash)["attempt"] == 2
    again = {run.hash: read_result(run_dir_of(out, run)) for run in (pretraining, other)}
    assert again == finished  # nothing finished was run again
    assert [read_job(out, r.hash)["attempt"] for r in (pretraining, other)] == [1, 1]
    log = Path(read_job(out, victim.hash)["log"]).read_text()
    assert "resuming from" in log  # from the killed run's checkpoint
    assert study_status(out)[0]["done"] == 3


def test_a_failed_pretraining_blocks_its_fine_tuning_until_retried(tmp_path: Path, capsys) -> None:
    spec, out = _spec(tmp_path), tmp_path / "study"
    _, runs = prepare_study(spec, out)
    damaged = run_dir_of(out, runs[0]) / "config.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("not json")  # the pre-training job resumes this folder, and fails
    args = ["study", "run", str(spec), "--out", str(out), "--executor", "local"]
    assert run_cli(args, capsys)[0] == 1
    counts, rows = study_status(out)
    assert (counts["failed"], counts["blocked"]) == (1, 2), rows
    failure = read_result(run_dir_of(out, runs[0]))
    assert (
        "config.json is damaged" in failure["error"] and failure["log"] == read_job(out, runs[0].hash)["log"]
    )
    assert all(f"pre-training run {runs[0].hash} failed" in row["detail"] for row in rows[1:])
    shown = CliRunner().invoke(app, ["study", "status", str(out)]).output
    assert "failed: 1" in shown and "blocked: 2" in shown and "config.json is damaged" in shown
    assert f"log {failure['log']}" in shown

    assert run_cli(args, capsys)[0] == 0  # a plain `study run` leaves failed and blocked runs alone
    assert study_status(out)[0]["failed"] == 1 and read_job(out, runs[1].hash) is None
    damaged.unlink()
    assert run_cli([*args, "--retry-failed"], capsys)[0] == 0
    assert study_status(out)[0]["done"] == 3
    assert "config.json is damaged" in (run_dir_of(out, runs[0]) / "previous-failure.json").read_text()


# ---- Slurm, against a fake sbatch


FAKE_SBATCH = """#!/bin/sh
# a fake sbatch: keeps the script it is given, prints what sbatch prints
n=$(( $(cat "$FAKE_SLURM/count" 2>/dev/null || echo 100) + 1 ))
echo $n > "$FAKE_SLURM/count"
cp "$1" "$FAKE_SLURM/job-$n.sh"
echo "Submitted batch job $n"
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sbatch``, ``srun`` (submitit looks for it), ``squeue`` and ``sacct`` first on PATH; the
    queue's answers are the files ``squeue`` and ``sacct`` of the returned folder."""
    pytest.importorskip("submitit")
    folder = tmp_path / "fake-slurm"
    (folder / "bin").mkdir(parents=True)
    scripts = {"sbatch": FAKE_SBATCH, "srun": "#!/bin/sh\nexit 1\n",
               "squeue": '#!/bin/sh\ncat "$FAKE_SLURM/squeue" 2>/dev/null\n',
               "sacct": '#!/bin/sh\ncat "$FAKE_SLURM/sacct" 2>/dev/null\n'}  # fmt: skip
    for name, text in scripts.items():
        (folder / "bin" / name).write_text(text)
        (folder / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(folder))
    return folder


RESOURCES = """\
resources:
  pretrain: {gpus: 1, hours: 1.5, partition: small}
  finetune: {gpus: 2, hours: 0.5, extra: {account: lab}}
"""


def _script(fake: Path, job_id: int) -> str:
    return (fake / f"job-{job_id}.sh").read_text()


def test_slurm_jobs_ask_for_their_resources_and_wait_for_their_pretraining(
    tmp_path: Path, fake_slurm: Path, capsys
) -> None:
    spec, out = _spec(tmp_path, extra=RESOURCES), tmp_path / "study"
    args = ["study", "run", str(spec), "--out", str(out), "--executor", "slurm", "--slurm-time", "2"]
    code, err = run_cli(args, capsys)
    assert code == 0, err
    _, runs = prepare_study(spec, out)
    assert [read_job(out, run.hash)["job_id"] for run in runs] == ["101", "102", "103"]
    pretraining = _script(fake_slurm, 101)
    assert "#SBATCH --partition=small" in pretraining and "#SBATCH --time=120" in pretraining
    assert "#SBATCH --gpus-per-node=1" in pretraining and "dependency" not in pretraining
    for job_id, run in ((102, runs[1]), (103, runs[2])):
        script = _script(fake_slurm, job_id)
        assert "#SBATCH --dependency=afterok:101" in script and "#SBATCH --kill-on-invalid-dep=yes" in script
        assert "#SBATCH --gpus-per-node=2" in script and "#SBATCH --account=lab" in script
        assert "partition" not in script and "#SBATCH --ntasks-per-node=1" in script
        assert "-m accelerate.commands.launch --multi_gpu --num_processes 2" in script
        assert f"-m synthpre.experiments.jobs {out.resolve()} {run.hash}" in script
    # the command submitit runs in the job is the one the script shows
    from submitit.core.utils import DelayedSubmission

    submitted = DelayedSubmission.load(out / "jobs" / "slurm" / "101_submitted.pkl")
    assert submitted.function.command == read_job(out, runs[0].hash)["command"]
    assert submitted.function.command[-3:] == ["synthpre.experiments.jobs", str(out.resolve()), runs[0].hash]

    counts, _ = study_status(out)  # squeue and sacct know nothing yet: submitted counts as queued
    assert counts["queued"] == 3
    assert run_cli(args, capsys)[0] == 0 and (fake_slurm / "count").read_text().strip() == "103"

    (fake_slurm / "squeue").write_text("101|RUNNING\n102|PENDING\n")
    (fake_slurm / "sacct").write_text("103|CANCELLED by 0\n103.batch|CANCELLED\n")
    counts, rows = study_status(out)
    assert [row["status"] for row in rows] == ["running", "queued", "interrupted"], rows
    assert run_cli(args, capsys)[0] == 0  # only the cancelled job is submitted again, after job 101
    assert read_job(out, runs[2].hash)["job_id"] == "104"
    assert "#SBATCH --dependency=afterok:101" in _script(fake_slurm, 104)


def test_a_slurm_job_runs_its_run_as_submitted(tmp_path: Path, fake_slurm: Path, capsys) -> None:
    """What the job of a pre-training run executes on a node: its result file, then the status."""
    from submitit.core.utils import DelayedSubmission

    spec, out = _spec(tmp_path, extra=RESOURCES), tmp_path / "study"
    assert run_cli(["study", "run", str(spec), "--out", str(out), "--executor", "slurm"], capsys)[0] == 0
    DelayedSubmission.load(out / "jobs" / "slurm" / "101_submitted.pkl").function()
    (fake_slurm / "sacct").write_text("101|COMPLETED\n")
    _, rows = study_status(out)
    assert [row["status"] for row in rows] == ["done", "queued", "queued"]
    assert json.loads((Path(rows[0]["run_dir"]) / RESULT_FILE).read_text())["outcome"]["checkpoint"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--executor", "cloud"], "--executor 'cloud': choose in-process, local, slurm"),
        (["--executor", "local", "--shard", "0/2"], "--shard is for --executor in-process"),
        (["--slurm-partition", "gpu"], "--slurm-partition is for --executor slurm"),
        (["--executor", "slurm", "--slurm-gpus-per-run", "-1"], "--slurm-gpus-per-run -1: must be >= 0"),
        (["--executor", "local", "--jobs", "0"], "--jobs 0: at least 1"),
    ],
)
def test_bad_executor_flags_write_nothing(tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    out = tmp_path / "study"
    code, err = run_cli(["study", "run", str(_spec(tmp_path)), "--out", str(out), *flags], capsys)
    assert code == 2 and message in err
    assert not out.exists()


def test_slurm_without_sbatch_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "study"
    code, err = run_cli(
        ["study", "run", str(_spec(tmp_path)), "--out", str(out), "--executor", "slurm"], capsys
    )
    assert code == 2 and "`sbatch` is not on PATH" in err and not out.exists()
