"""Bad input fails with a ``UserError`` (the CLI: message, exit 2), before anything is written: damaged
checkpoints (checksums verified wherever one is read), files given for folders, negative seeds; and
``generate`` writes the same files for any number of workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.errors import UserError
from tiny_runs import tiny_run

RUNNER = CliRunner()


def invoke(*args: str):
    return RUNNER.invoke(app, list(args))


def user_error(result) -> str:
    """The message of the ``UserError`` a command raised (the entry point prints it and exits 2)."""
    assert isinstance(result.exception, UserError), (result.exception, result.output)
    return str(result.exception)


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory) -> Path:
    """A real 2-step run whose only checkpoint has a truncated model.safetensors."""
    import torch

    from synthpre.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config, model, source = tiny_run(tmp_path_factory.mktemp("runs"))
        train(config, model, source, source.validation())
    finally:
        torch.set_num_threads(threads)
    run = Path(config.out_dir)
    weights = run / "checkpoints" / "step_2" / "model" / "model.safetensors"
    assert weights.is_file()
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    return run


@pytest.mark.parametrize("where", ["run", "step", "model"])
def test_stats_refuses_a_damaged_checkpoint(damaged_run: Path, tmp_path: Path, where: str) -> None:
    step = damaged_run / "checkpoints" / "step_2"
    path = {"run": damaged_run, "step": step, "model": step / "model"}[where]
    out = tmp_path / "stats.json"
    message = user_error(invoke("stats", str(path), "--out", str(out)))
    assert f"checkpoint {step} is damaged" in message
    assert "model/model.safetensors does not match its checksum (corrupt)" in message
    assert "use an earlier checkpoint" in message
    assert not out.exists()


def test_init_from_a_damaged_checkpoint_writes_nothing(damaged_run: Path, tmp_path: Path) -> None:
    step = damaged_run / "checkpoints" / "step_2"
    out = tmp_path / "init"
    result = invoke("init", "--from", str(step), "--scheme", "full", "--out", str(out))
    assert "model/model.safetensors does not match its checksum" in user_error(result)
    assert not out.exists()


def test_load_model_verifies_checksums(damaged_run: Path) -> None:
    from synthpre.model import check_checkpoint, load_model

    for call in (check_checkpoint, load_model):
        with pytest.raises(UserError, match=r"is damaged: model/model\.safetensors"):
            call(damaged_run / "checkpoints" / "step_2")


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory) -> Path:
    """A Hugging Face folder (no checksums.json) of a tiny model."""
    from synthpre.model import build_model, save_checkpoint

    folder = tmp_path_factory.mktemp("hf") / "model"
    return save_checkpoint(build_model("t5-tiny", vocab_size=128), folder)


def test_a_plain_folder_loads_and_its_truncated_weights_are_named(plain_folder: Path, tmp_path: Path) -> None:
    import shutil

    from synthpre.model import load_model

    assert load_model(plain_folder).config.vocab_size == 128
    damaged = shutil.copytree(plain_folder, tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    message = user_error(invoke("stats", str(damaged)))
    assert str(weights) in message and "truncated" in message
    out = tmp_path / "init"
    assert str(weights) in user_error(
        invoke("init", "--from", str(damaged), "--scheme", "full", "--out", str(out))
    )
    assert not out.exists()


def test_stats_of_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("not a model")
    assert user_error(invoke("stats", str(file))) == f"{file} is a file, not a checkpoint or model folder"
    assert "does not exist" in user_error(invoke("stats", str(tmp_path / "missing")))


@pytest.mark.parametrize("command", ["generate", "show"])
def test_a_negative_seed_is_refused_before_anything_is_created(tmp_path: Path, command: str) -> None:
    out = tmp_path / "new" / "data"
    extra = ["--num", "5", "--out", str(out)] if command == "generate" else []
    message = user_error(invoke(command, "set", "--seed", "-1", *extra))
    assert "--seed -1" in message and "non-negative" in message
    assert list(tmp_path.iterdir()) == []


def test_any_number_of_workers_writes_the_same_files(tmp_path: Path) -> None:
    folders = {}
    for workers in ("1", "2"):
        out = tmp_path / f"workers{workers}"
        arguments = ["generate", "set", "--num", "300", "--val-num", "20", "--seed", "5", "--quiet"]
        result = invoke(*arguments, "--workers", workers, "--out", str(out))
        assert result.exit_code == 0, (result.exception, result.output)
        folders[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(folders["1"]) == ["manifest.json", "train-00000-of-00001.jsonl", "validation.jsonl"]
    assert folders["1"] == folders["2"]


def test_explicit_shards_still_split_the_files(tmp_path: Path) -> None:
    from synthpre.data.export import default_shards

    assert default_shards(1) == default_shards(50_000) == 1 and default_shards(50_001) == 2
    out = tmp_path / "out"
    result = invoke(
        "generate", "set", "--num", "30", "--shards", "3", "--workers", "2", "--quiet", "--out", str(out)
    )
    assert result.exit_code == 0, (result.exception, result.output)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", *(f"train-0000{k}-of-00003.jsonl" for k in range(3))]
