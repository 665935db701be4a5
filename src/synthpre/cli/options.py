"""Command-line options derived from pydantic config models.

``model_options(TrainConfig, exclude=["out_dir"])`` gives one ``--field-name`` option per field (help:
the field's description and its default), and ``@with_options(...)`` adds them to a typer command
whose ``**given`` then holds only the options set on the command line::

    @with_options(model_options(TrainConfig, exclude=["out_dir"], aliases={"learning_rate": ["--lr"]}))
    def pretrain(out: Path = typer.Option(..., "--out"), **given: Any) -> None:
        config = TrainConfig(out_dir=str(out), **given)
"""

from __future__ import annotations

import enum
import functools
import inspect
import pathlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import pydantic
import typer
from typer.models import ArgumentInfo, ParameterInfo

from synthpre.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

# Types an option may have once ``None`` is stripped, besides ``Literal[...]`` and ``Enum`` subclasses.
SCALAR_TYPES: tuple[type, ...] = (int, float, str, bool, pathlib.Path)


def _strip_none(annotation: Any) -> Any:
    """``X`` of ``X | None`` / ``Optional[X]``; other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _option_type(model: type[pydantic.BaseModel], name: str, annotation: Any) -> Any:
    """The annotation of the option of field ``name``: the field's, ``None`` stripped (TypeError if none)."""
    annotation = _strip_none(annotation)
    if typing.get_origin(annotation) is Literal:
        # typer makes a Literal a choice among its values (matched as strings, passed on as declared)
        if all(isinstance(v, str | int) and not isinstance(v, bool) for v in typing.get_args(annotation)):
            return annotation
    elif isinstance(annotation, type) and (
        annotation in SCALAR_TYPES or issubclass(annotation, enum.Enum | pathlib.Path)
    ):
        return annotation
    raise TypeError(
        f"{model.__name__}.{name}: a field of type {annotation!r} cannot be a command-line option "
        f"(supported: int, float, str, bool, Path, Enum, Literal of strings or ints); pass "
        f"exclude=[{name!r}] and declare the option by hand"
    )


def _default_text(info: pydantic.fields.FieldInfo) -> str | None:
    """``required``, ``default X``, or None for a default of None (unset: nothing to show)."""
    if info.is_required():
        return "required"
    default = info.get_default(call_default_factory=True)
    return None if default is None else f"default {default}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_names(model: type[pydantic.BaseModel], what: str, names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(model.model_fields))
    if unknown:
        raise ValueError(f"{what} names {unknown}, which are not fields of {model.__name__}")


def model_options(
    model: type[pydantic.BaseModel],
    *,
    exclude: Iterable[str] = (),
    only: Iterable[str] | None = None,
    help: Mapping[str, str] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    defaults_text: Mapping[str, str] | None = None,
) -> list[inspect.Parameter]:
    """One keyword-only ``typer.Option(None, "--field-name", ...)`` parameter per field of ``model``.

    ``None`` means "not given". ``only``/``exclude`` select fields; ``help`` replaces a description,
    ``aliases`` adds flag names (``{"learning_rate": ["--lr"]}``) and ``defaults_text`` replaces the
    default shown in the help (``"(default X)"``). Raises TypeError for a field type with no option.
    """
    exclude = list(exclude)
    only = None if only is None else list(only)
    help, aliases, defaults_text = dict(help or {}), dict(aliases or {}), dict(defaults_text or {})
    for what, names in (
        ("exclude", exclude),
        ("only", only or ()),
        ("help", help),
        ("aliases", aliases),
        ("defaults_text", defaults_text),
    ):
        _check_names(model, what, names)
    for name, extra in aliases.items():
        if isinstance(extra, str):
            raise TypeError(f"aliases[{name!r}] must be a list of flag names, e.g. [{extra!r}]")
    parameters = []
    for name, info in model.model_fields.items():
        if name in exclude or (only is not None and name not in only):
            continue
        annotation = _option_type(model, name, info.annotation)
        flag = _flag(name)
        decls = [f"{flag}/--no-{flag[2:]}" if annotation is bool else flag, *aliases.get(name, ())]
        default = f"default {defaults_text[name]}" if name in defaults_text else _default_text(info)
        text = " ".join(
            part for part in (help.get(name) or info.description, default and f"({default})") if part
        )
        option = typer.Option(None, *decls, help=text)
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    return parameters


def _flags(parameter: inspect.Parameter) -> set[str]:
    """The flag names typer gives a command parameter (none for an argument)."""
    annotation, default = parameter.annotation, parameter.default
    decls: list[str] = []
    metadata = getattr(annotation, "__metadata__", ())
    if metadata:  # Annotated[T, typer.Option("--name", ...)]: the first flag name is stored as `default`
        annotation = typing.get_args(annotation)[0]
        info = next((m for m in metadata if isinstance(m, ParameterInfo)), None)
        if info is not None and isinstance(info.default, str):
            decls.append(info.default)
    else:
        info = default if isinstance(default, ParameterInfo) else None
    if info is not None:
        decls.extend(info.param_decls or ())
    if isinstance(info, ArgumentInfo) or (info is None and default is inspect.Parameter.empty):
        return set()
    if not decls:
        flag = _flag(parameter.name)
        decls = [f"{flag}/--no-{flag[2:]}" if _strip_none(annotation) is bool else flag]
    return {name.strip() for decl in decls for name in decl.split("/") if name.strip().startswith("-")}


def with_options(*parameter_groups: list[inspect.Parameter]) -> Callable[[F], F]:
    """Add the derived option parameters to a typer command ``def cmd(own..., **given: Any)``.

    The command's ``__signature__`` (and ``__annotations__``, which typer reads through
    ``typing.get_type_hints``) become its own parameters followed by the derived ones, and ``given``
    receives only the derived options set on the command line (those left ``None`` are dropped).
    Raises ValueError at decoration time when a name or a flag is declared twice.
    """
    derived = [p for group in parameter_groups for p in group]
    names = [p.name for p in derived]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"options {twice} are in more than one of the parameter groups")

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        if len(own) == len(signature.parameters):
            raise TypeError(f"{func.__qualname__} needs a **given parameter to receive the derived options")
        clashes = sorted(set(names) & {p.name for p in own})
        if clashes:
            raise ValueError(
                f"{func.__qualname__}: its own parameters {clashes} clash with derived options; "
                "exclude them from model_options or rename the parameters"
            )
        seen: dict[str, str] = {}
        for parameter in [*own, *derived]:
            for flag in _flags(parameter):
                if flag in seen:
                    raise ValueError(
                        f"{func.__qualname__}: flag {flag} is declared by both {seen[flag]!r} and "
                        f"{parameter.name!r}"
                    )
                seen[flag] = parameter.name
        derived_names = frozenset(names)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs = {k: v for k, v in kwargs.items() if not (k in derived_names and v is None)}
            return func(*args, **kwargs)

        parameters = [*own, *derived]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        annotations = {
            p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty
        }
        if signature.return_annotation is not inspect.Signature.empty:
            annotations["return"] = signature.return_annotation
        wrapper.__annotations__ = annotations  # a new dict: functools.wraps shared func's
        return typing.cast(F, wrapper)

    return decorate


def invalid_settings(error: pydantic.ValidationError, what: str) -> UserError:
    """A UserError listing each problem of ``error`` under its flag and field (``--steps (steps): ...``)."""
    problems = []
    for problem in error.errors():
        names = [part for part in problem["loc"] if isinstance(part, str)]
        where = f"{_flag(names[-1])} ({'.'.join(names)}): " if names else ""
        problems.append(f"{where}{problem['msg']}")
    return UserError(f"invalid {what} settings: {'; '.join(problems)}")
