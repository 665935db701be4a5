"""Options derived from pydantic models (``synthpre.cli.options``) through a real typer app."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Literal

import pytest
import typer
from pydantic import BaseModel, Field, ValidationError
from typer.testing import CliRunner

from synthpre.cli.options import invalid_settings, model_options, with_options
from synthpre.train.config import TrainConfig

# Wide enough that rich never wraps a help row.
WIDE = {"COLUMNS": "300", "TERMINAL_WIDTH": "300"}


class Knobs(BaseModel):
    """A small config with one field of each supported kind."""

    name: str = Field(description="what the run is called")
    steps: int = Field(100, gt=0, description="optimizer steps")
    rate: float = Field(0.5, description="the learning rate")
    label: str = Field("plain", description="a free-form label")
    fast: bool = Field(False, description="go fast")
    shuffle: bool = Field(True, description="shuffle the data")
    mode: Literal["train", "eval"] = Field("train", description="what to do")
    limit: int | None = Field(None, gt=0, description="stop after N examples")
    scale: float | None = Field(None, description="a scale")


def make_app(*groups: list[inspect.Parameter]) -> typer.Typer:
    """An app whose ``run`` command prints its own ``--out`` and ``given`` as JSON."""
    app = typer.Typer(
        add_completion=False, context_settings={"max_content_width": 300, "terminal_width": 300}
    )

    @app.command("run")
    @with_options(*groups)
    def run(out: Path = typer.Option(None, "--out", help="the run folder"), **given: Any) -> None:
        """Print the options given."""
        print(json.dumps({"out": None if out is None else str(out), "given": given}))

    @app.command("other")
    def other() -> None:
        """A second command, so that ``run`` is a sub-command."""

    return app


def invoke(app: typer.Typer, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(app, ["run", *args], env=WIDE)
    return result.exit_code, (json.loads(result.output) if result.exit_code == 0 else result.output)


def help_rows(app: typer.Typer) -> list[str]:
    result = CliRunner().invoke(app, ["run", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows: list[str] = []
    for line in result.output.splitlines():
        text = " ".join(line.replace("│", " ").split())
        if rows and rows[-1].startswith("-") and text and not text.startswith("-"):
            rows[-1] += " " + text  # a wrapped help text (plain click puts it under long flags)
        else:
            rows.append(text)
    return rows


def flags_of(row: str) -> list[str]:
    """The leading flag names of a help row (rich joins long names with ",", click writes "--a / --b")."""
    names = []
    for token in row.replace(",", " ").split():
        if not token.startswith("-") and token != "/":
            break
        names.append(token)
    return names


def row_of(rows: list[str], flag: str) -> str:
    found = [r for r in rows if flag in flags_of(r)]
    assert len(found) == 1, (flag, rows)
    return found[0]


KNOBS = make_app(
    model_options(Knobs, aliases={"rate": ["--lr", "-r"]}, help={"label": "a label for the plots"})
)


def test_help_shows_each_flag_with_its_description_and_default() -> None:
    rows = help_rows(KNOBS)
    assert "(required)" in row_of(rows, "--name") and "what the run is called" in row_of(rows, "--name")
    assert "optimizer steps (default 100)" in row_of(rows, "--steps")
    assert "the learning rate (default 0.5)" in row_of(rows, "--rate")
    assert "a label for the plots (default plain)" in row_of(rows, "--label")  # help= replaces it
    assert row_of(rows, "--limit").endswith("stop after N examples")  # a None default shows nothing
    assert row_of(rows, "--scale").endswith("a scale")
    assert "go fast (default False)" in row_of(rows, "--fast")
    mode = row_of(rows, "--mode")
    assert "what to do (default train)" in mode and "train|eval" in mode  # the choices are shown
    assert "--no-shuffle" in row_of(rows, "--shuffle") and "shuffle the data (default True)" in row_of(
        rows, "--shuffle"
    )
    assert row_of(rows, "--rate") == row_of(rows, "--lr") and "-r" in flags_of(row_of(rows, "--rate"))
    assert "the run folder" in row_of(rows, "--out")  # the command's own option is kept


def test_given_holds_exactly_the_options_passed() -> None:
    assert invoke(KNOBS) == (0, {"out": None, "given": {}})
    code, out = invoke(KNOBS, "--steps", "7", "--mode", "eval", "--out", "runs/x", "--limit", "3")
    assert code == 0
    assert out == {"out": "runs/x", "given": {"steps": 7, "mode": "eval", "limit": 3}}
    code, out = invoke(KNOBS, "--name", "a", "--label", "b", "--scale", "2")
    assert out["given"] == {"name": "a", "label": "b", "scale": 2.0}
    assert Knobs(**out["given"]).scale == 2.0  # ready for the model


def test_an_alias_sets_the_field() -> None:
    assert invoke(KNOBS, "--lr", "0.1")[1]["given"] == {"rate": 0.1}
    assert invoke(KNOBS, "-r", "0.2")[1]["given"] == {"rate": 0.2}
    assert invoke(KNOBS, "--rate", "0.3")[1]["given"] == {"rate": 0.3}


def test_literal_rejects_a_value_outside_its_choices() -> None:
    code, output = invoke(KNOBS, "--mode", "predict")
    assert code == 2
    assert "--mode" in output and "predict" in output
    assert invoke(KNOBS, "--steps", "many")[0] == 2  # and an int option a non-number


def test_bool_fields_are_on_off_flags() -> None:
    assert invoke(KNOBS, "--fast")[1]["given"] == {"fast": True}
    assert invoke(KNOBS, "--no-fast")[1]["given"] == {"fast": False}
    assert invoke(KNOBS, "--no-shuffle", "--fast")[1]["given"] == {"shuffle": False, "fast": True}
    assert invoke(KNOBS, "--fast", "yes")[0] == 2  # a flag takes no value


def test_only_exclude_and_defaults_text() -> None:
    app = make_app(
        model_options(Knobs, only=["steps", "rate"], exclude=["rate"], defaults_text={"steps": "the task's"})
    )
    rows = help_rows(app)
    assert "optimizer steps (default the task's)" in row_of(rows, "--steps")
    assert not any(r.startswith(("--rate", "--name", "--mode")) for r in rows)
    assert invoke(app, "--steps", "5")[1]["given"] == {"steps": 5}
    assert invoke(app, "--rate", "1")[0] == 2


def test_two_groups_and_a_direct_call() -> None:
    app = make_app(model_options(Knobs, only=["steps"]), model_options(Knobs, only=["fast"]))
    assert invoke(app, "--steps", "2", "--fast")[1]["given"] == {"steps": 2, "fast": True}

    @with_options(model_options(Knobs, only=["steps", "fast"]))
    def command(out: str = "x", **given: Any) -> tuple[str, dict[str, Any]]:
        return out, given

    assert command(steps=None, fast=True) == ("x", {"fast": True})
    assert list(inspect.signature(command).parameters) == ["out", "steps", "fast"]


def test_declaration_errors_are_clear() -> None:
    class Lists(BaseModel):
        rates: list[float] | None = None
        size: int = 1

    with pytest.raises(TypeError, match=r"Lists\.rates.*exclude=\['rates'\]"):
        model_options(Lists)
    assert [p.name for p in model_options(Lists, exclude=["rates"])] == ["size"]
    with pytest.raises(ValueError, match="not fields of Knobs"):
        model_options(Knobs, exclude=["stpes"])
    with pytest.raises(ValueError, match="not fields of Knobs"):
        model_options(Knobs, aliases={"lr": ["--lr"]})

    with pytest.raises(ValueError, match=r"\['steps'\] clash"):

        @with_options(model_options(Knobs))
        def clash_name(steps: int = typer.Option(1), **given: Any) -> None: ...

    with pytest.raises(ValueError, match="flag --lr"):

        @with_options(model_options(Knobs, aliases={"rate": ["--lr"]}))
        def clash_flag(lr: float = typer.Option(None, "--lr"), **given: Any) -> None: ...

    with pytest.raises(ValueError, match="more than one"):
        with_options(model_options(Knobs, only=["steps"]), model_options(Knobs, only=["steps"]))

    with pytest.raises(TypeError, match=r"\*\*given"):

        @with_options(model_options(Knobs))
        def no_kwargs(out: str = "x") -> None: ...


def test_train_config_becomes_options() -> None:
    options = model_options(TrainConfig, exclude=["out_dir"], aliases={"learning_rate": ["--lr"]})
    fields = [name for name in TrainConfig.model_fields if name != "out_dir"]
    assert [p.name for p in options] == fields
    app = make_app(options)
    rows = help_rows(app)
    for name in fields:
        info = TrainConfig.model_fields[name]
        row = row_of(rows, "--" + name.replace("_", "-"))
        value = info.get_default(call_default_factory=True)
        default = "(required)" if info.is_required() else (None if value is None else f"(default {value})")
        assert " ".join(filter(None, (info.description, default))) in row
    assert "--no-stop-at-threshold" in row_of(rows, "--stop-at-threshold")
    assert "t5_rsqrt|constant" in row_of(rows, "--lr-schedule")
    code, out = invoke(app, "--out", "r", "--lr", "0.001", "--precision", "bf16", "--no-progress")
    assert code == 0
    config = TrainConfig(out_dir=out["out"], **out["given"])
    assert (config.learning_rate, config.precision, config.progress) == (0.001, "bf16", False)
    assert config.batch_size == 128  # not given: the model's default
    assert invoke(app, "--precision", "fp16")[0] == 2


def test_invalid_settings_names_the_flags() -> None:
    with pytest.raises(ValidationError) as caught:
        Knobs(name="a", steps=0, mode="predict")
    message = str(invalid_settings(caught.value, "test"))
    assert message.startswith("invalid test settings: ")
    assert "--steps (steps): Input should be greater than 0" in message and "--mode (mode): " in message
