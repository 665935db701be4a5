"""`synthpre demo --quick`: the demo machinery end to end on a tiny budget (its numbers mean nothing),
then the study commands on its folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.experiments.demo import demo_spec, run_demo
from synthpre.experiments.spec import parse_spec
from synthpre.experiments.store import Store


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo") / "study"
    try:
        table = run_demo(out, quick=True, console=Console(quiet=True))
    finally:
        torch.set_num_threads(threads)
    return out, table


def test_demo_prints_measured_numbers(demo_folder: tuple[Path, str]) -> None:
    out, table = demo_folder
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith(
        "| Init | smiles_canonicalize val token accuracy | smiles_canonicalize val loss |"
    )
    body = {line.split(" | ")[0].lstrip("| "): line for line in rows[1:]}
    assert list(body) == ["Random Init", "Set Full Init", "Set Per Param Mean/SD"]
    store = Store(out)
    measured = {r["arm"]: r["value"] for r in store.results() if r["metric"] == "val_token_accuracy"}
    status = {row["status"] for row in store.runs()}
    (set_accuracy,) = [r["value"] for r in store.results("pretrain") if r["metric"] == "val_token_accuracy"]
    store.close()
    assert status == {"done"}
    for arm, value in measured.items():  # the table shows what the runs measured
        assert f"| {value:.1f} |" in body[arm]
    # beside each Set row: the checkpoint it started from, at the fixed budget of --quick (30 steps)
    assert rows[0].endswith("| pre-training val acc @ step |")
    assert body["Set Full Init"].endswith(f"| {set_accuracy:.1f} @ 30 |") and body["Random Init"].endswith(
        "| - |"
    )
    assert "% gap closed" in rows[0]
    assert (out / "plots" / "pretraining_val_accuracy.png").stat().st_size > 0
    assert (out / "plots" / "finetuning_val_accuracy.png").stat().st_size > 0


def test_commands_on_the_demo_folder(demo_folder: tuple[Path, str]) -> None:
    out, _ = demo_folder
    runner = CliRunner()
    again = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--threads", "1"])
    assert again.exit_code == 0, again.output
    assert "Set Per Param Mean/SD" in again.output and "Where everything is" in again.output
    status = runner.invoke(app, ["study", "status", str(out)])
    assert status.exit_code == 0 and "done: 4" in status.output
    latex = runner.invoke(
        app, ["report", str(out), "--table", "1", "--format", "latex", "--metric", "val_loss"]
    )
    assert latex.exit_code == 0 and "\\begin{tabular}" in latex.output
    bad = runner.invoke(app, ["report", str(out), "--table", "12"])
    assert bad.exit_code != 0 and "--table 12" in str(bad.exception)


def test_more_adds_identity_pycode_and_the_relpos_arm() -> None:
    spec = parse_spec(yaml.safe_dump(demo_spec(more=True, quick=False), sort_keys=False))
    assert list(spec.pretraining.tasks) == ["Set", "Identity"]
    assert list(spec.downstream.tasks) == ["smiles_canonicalize", "pycode_summarize"]
    assert "relpos_mean_sd" in spec.init_schemes


@pytest.fixture(scope="module")
def causal_demo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo-causal") / "study"
    try:
        table = run_demo(out, quick=True, console=Console(quiet=True), arch="causal")
    finally:
        torch.set_num_threads(threads)
    return out, table


def test_causal_demo_prints_the_tokens_saved_of_its_own_curves(causal_demo_folder: tuple[Path, str]) -> None:
    """`synthpre demo --arch causal --quick`: pre-pretraining on k-Shuffle Dyck and Set, text_lm from
    Random Init and from each, and a table whose every number is read from the runs' loss curves."""
    from synthpre.experiments.tokens_saved import arm_curves

    out, table = causal_demo_folder
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| Task | Init | val loss @ ") and rows[0].endswith("| tokens saved |")
    body = {line.split(" | ")[1]: line.split(" | ") for line in rows[1:]}
    assert list(body) == ["Random Init", "Shuffle Dyck Full Init", "Set Full Init"]
    store = Store(out)
    try:
        assert {row["status"] for row in store.runs()} == {"done"}
        assert {row["model"] for row in store.runs()} == {"pythia-tiny"}
        curves = arm_curves(store)["text_lm"]
    finally:
        store.close()
    for arm, cells in body.items():
        (curve,) = curves[arm]
        assert list(curve.tokens) == sorted(curve.tokens) and curve.tokens[0] > 0
        assert cells[-4] == f"{curve.final_loss:.3f}"  # the last "val loss @" column
    random = curves["Random Init"][0]
    for arm in ("Shuffle Dyck Full Init", "Set Full Init"):
        reach = curves[arm][0].tokens_to_reach(random.final_loss)
        expected = "-" if reach is None else f"{100 * (1 - reach / random.budget):.0f}%"
        assert body[arm][-1].rstrip(" |") == expected
    assert (out / "plots" / "text_lm_val_loss_vs_tokens.png").stat().st_size > 0
    runner = CliRunner()
    report = runner.invoke(app, ["report", str(out), "--table", "tokens", "--format", "csv"])
    assert report.exit_code == 0 and report.output.startswith("Task,Init,val loss @")
    bad = runner.invoke(app, ["report", str(out), "--table", "toks"])
    assert bad.exit_code != 0 and "--table 'toks'" in str(bad.exception)
