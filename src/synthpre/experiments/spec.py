"""Study specs: a YAML file that names a grid of pre-training and fine-tuning runs.

A study is the cross product (paper Sec. 3-5, App. A/B/D.3)

    models x init arms x downstream tasks x learning rates x seeds x training-set sizes

where the init arms are the baselines (Random Init, an off-the-shelf "Pre-trained T5" folder), every
pre-training task x init scheme (``full``, ``per_param_mean_sd``, ...), and the pre-attention
layer-norm values of Tables 3/8.  Each pre-training run is shared by every fine-tuning run that uses
it.  Mistakes are reported with the line of the spec at fault (``study.yaml:12: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthpre.errors import UserError, close_match

PAPER_LRS = (1e-2, 3e-3, 1e-3)  # App. B: the fine-tuning learning-rate sweep


# Fields the study sets itself (``execute.pretraining_settings`` / ``finetuning_settings``): a
# ``train:`` block may not override them.  The selection fields of pre-training come from the study's
# one pre-training rule (``pretraining.rule``), the same for every task (matched pre-training).
RULE_FIELDS = ("selection", "selection_metric", "selection_threshold", "selection_step")
STUDY_PRETRAIN_FIELDS = ("out_dir", "seed", "log_with", *RULE_FIELDS)
STUDY_FINETUNE_FIELDS = (
    "task", "out_dir", "model", "data", "init_from", "init_scheme", "tokenizer", "learning_rate", "lr_sweep",
    "train_size", "seed", "dropout", "vocab", "vocab_size", "pre_attn_ln", "log_with",
)  # fmt: skip


def _check_overrides(value: dict[str, Any], module: str, class_name: str, reserved: tuple[str, ...]) -> dict:
    """Reject keys of a ``train:`` block that the stage's config class does not have (or the study sets)."""
    import importlib

    fields = set(getattr(importlib.import_module(module), class_name).model_fields)
    for key in value:
        if key in RULE_FIELDS and key in reserved:
            raise ValueError(
                f"{key!r} is set by the study's pre-training rule, the same for every task "
                "(pretraining.rule: threshold or fixed_steps, pretraining.threshold; docs/studies.md)"
            )
        if key == "log_with":
            raise ValueError("'log_with' is the whole study's: `log_with:` at the top of the spec")
        if key in reserved:
            raise ValueError(f"{key!r} is set by the study itself (one run per value of its grid)")
        if key not in fields:
            hint = close_match(key, fields)
            raise ValueError(
                f"{key!r} is not a {class_name} field{f' (did you mean {hint!r}?)' if hint else ''}"
            )
    return value


def _as_value_error(lookup: Any, name: str) -> None:
    """Run a registry lookup; its ``UserError`` becomes a validation error (reported with the line)."""
    try:
        lookup(name)
    except UserError as error:
        raise ValueError(str(error)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PretrainTask(_Strict):
    """One pre-training data source: a registered task (or a mixture) and its generation parameters."""

    task: str | list[str] = Field(description="task name, or several names mixed at equal rates")
    params: dict[str, Any] = Field(default_factory=dict, description="generation parameters (min_len, ...)")
    train: dict[str, Any] = Field(default_factory=dict, description="engine overrides for this task only")

    @model_validator(mode="after")
    def _known_tasks_and_params(self) -> PretrainTask:
        from synthpre.tasks import get_task

        for name in self.task_names:
            _as_value_error(get_task, name)
            try:
                get_task(name).params_cls(**self.params)
            except (TypeError, UserError) as error:
                raise ValueError(f"params of {name!r}: {error}") from None
        return self

    @field_validator("train")
    @classmethod
    def _engine_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_overrides(value, "synthpre.train", "TrainConfig", STUDY_PRETRAIN_FIELDS)

    @property
    def task_names(self) -> list[str]:
        return [self.task] if isinstance(self.task, str) else list(self.task)


class Pretraining(_Strict):
    """App. A: pre-train each task once; fine-tune from the checkpoint that the study's one rule picks
    for every task (matched pre-training): ``threshold``, the first checkpoint >= ``threshold``
    validation token accuracy (App. A; ``max_steps`` caps each task, per task if needed), or
    ``fixed_steps``, the checkpoint at ``pretraining.train.max_steps``, one budget for all tasks."""

    tasks: dict[str, PretrainTask] = Field(default_factory=dict, description="label -> task")
    train: dict[str, Any] = Field(default_factory=dict, description="engine overrides (TrainConfig fields)")
    # "shared": one pre-training run (seed 0) for all fine-tuning seeds; "per_seed": one per seed, a new
    # synthetic dataset each time (App. Table 6: "for each seed, a different synthetic pre-training set").
    seeds: Literal["shared", "per_seed"] = "shared"
    rule: Literal["threshold", "fixed_steps"] = Field(
        "threshold", description="threshold: first checkpoint >= threshold (App. A); fixed_steps: max_steps"
    )
    threshold: float = Field(0.99, gt=0, le=1, description="validation token accuracy of rule: threshold")

    @field_validator("train")
    @classmethod
    def _engine_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_overrides(value, "synthpre.train", "TrainConfig", STUDY_PRETRAIN_FIELDS)

    @model_validator(mode="after")
    def _one_budget(self) -> Pretraining:
        """``fixed_steps``: one stated budget, shared by every task, that no early stop cuts short."""
        if self.rule != "fixed_steps" or not self.tasks:
            return self
        if "threshold" in self.model_fields_set:
            raise ValueError("threshold belongs to rule: threshold; rule fixed_steps selects the step")
        if "max_steps" not in self.train:
            raise ValueError("rule fixed_steps needs the budget all tasks share: pretraining.train.max_steps")
        for label, task in self.tasks.items():
            if "max_steps" in task.train:
                raise ValueError(
                    f"tasks.{label}.train.max_steps: rule fixed_steps gives every task the same budget "
                    "(pretraining.train.max_steps); per-task caps are for rule: threshold"
                )
            if {**self.train, **task.train}.get("stop_at_threshold"):
                raise ValueError(
                    f"stop_at_threshold (task {label}): rule fixed_steps trains every task its whole budget"
                )
        return self

    def engine_fields(self) -> dict[str, Any]:
        """The ``TrainConfig`` fields of the study's rule: the same for every pre-training task."""
        if self.rule == "fixed_steps":
            budget = self.train["max_steps"]
            return {"selection": "fixed_step", "selection_step": budget, "stop_at_threshold": False}
        return {"selection": "first_above_threshold", "selection_threshold": self.threshold}

    def task_train(self, label: str) -> dict[str, Any]:
        """The engine overrides of one task's run: the shared ones, the task's own, then the rule's."""
        return {**self.train, **self.tasks[label].train, **self.engine_fields()}

    def rule_text(self) -> str:
        """The rule in words, with each task's cap or the shared budget."""
        from synthpre.train.config import TrainConfig

        if self.rule == "fixed_steps":
            budget = self.train["max_steps"]
            return (
                f"every pre-training task trains {budget} steps and fine-tuning starts from its "
                f"step-{budget} checkpoint (one fixed budget)"
            )
        caps = {label: TrainConfig(out_dir="", **self.task_train(label)).max_steps for label in self.tasks}
        cap_text = ", ".join(f"{label} {cap}" for label, cap in caps.items())
        return (
            "fine-tuning starts from each pre-training task's first checkpoint with validation token "
            f"accuracy >= {self.threshold * 100:g}% (App. A), within its cap of max_steps ({cap_text})"
        )


class Baselines(_Strict):
    random_init: bool = True
    pretrained_t5: str | None = Field(default=None, description="a local Hugging Face T5 folder")


class DownstreamTask(_Strict):
    data: str | None = None
    train: dict[str, Any] = Field(default_factory=dict)

    @field_validator("train")
    @classmethod
    def _finetune_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_overrides(value, "synthpre.downstream.config", "FinetuneConfig", STUDY_FINETUNE_FIELDS)


class Downstream(_Strict):
    tasks: dict[str, DownstreamTask] = Field(description="downstream task name -> options")
    lrs: list[float] = Field(default_factory=lambda: list(PAPER_LRS))
    seeds: list[int] = Field(default_factory=lambda: [0])
    train_sizes: list[int | None] = Field(default_factory=lambda: [None])
    train: dict[str, Any] = Field(default_factory=dict, description="engine overrides for fine-tuning")
    tokenizer: str | None = Field(default=None, description="'chars' or a local tokenizer folder")
    evaluate_test: bool = Field(
        default=True, description="decode the test split with the selected checkpoint"
    )
    beams: int = Field(default=1, ge=1, description="test decoding: 1 = greedy; the authors used 4")
    test_examples: int | None = Field(default=None, gt=0, description="decode only the first N (smoke tests)")

    @field_validator("train")
    @classmethod
    def _finetune_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_overrides(value, "synthpre.downstream.config", "FinetuneConfig", STUDY_FINETUNE_FIELDS)

    @field_validator("tasks", mode="before")
    @classmethod
    def _list_to_mapping(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {name: {} for name in value}
        return value

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: dict[str, DownstreamTask]) -> dict[str, DownstreamTask]:
        from synthpre.downstream.registry import get_downstream_task

        for name in value:
            _as_value_error(get_downstream_task, name)
        return value

    @field_validator("lrs")
    @classmethod
    def _positive_lrs(cls, value: list[float]) -> list[float]:
        if not value or any(lr <= 0 for lr in value):
            raise ValueError("learning rates must be a non-empty list of positive numbers, e.g. [1e-2, 3e-3]")
        return value

    @field_validator("seeds", "train_sizes")
    @classmethod
    def _non_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("must list at least one value")
        if any(v is not None and v < 0 for v in value):
            raise ValueError("values must be >= 0")
        return value


class ReportDefaults(_Strict):
    """Defaults of ``synthpre report`` for this study (the command line overrides them)."""

    metrics: list[str] | None = Field(default=None, description="metrics shown, e.g. [test_em, val_loss]")
    lr_choice: Literal["row", "random_init"] = "row"


class RunResources(_Strict):
    """What the Slurm job of one run asks for (``study run --executor slurm``); no part of a run's hash."""

    partition: str | None = Field(default=None, description="Slurm partition (default: the cluster's)")
    gpus: int = Field(default=1, ge=0, description="GPUs per run (over 1: `accelerate launch` of as many)")
    hours: float = Field(default=24.0, gt=0, description="time limit of the job")
    cpus: int | None = Field(default=None, gt=0, description="CPUs of the job")
    mem_gb: int | None = Field(default=None, gt=0, description="memory of the job")
    extra: dict[str, str] = Field(default_factory=dict, description="more sbatch options: {account: lab}")


class Resources(_Strict):
    """The resources of each kind of run (``--slurm-*`` flags override them for both)."""

    pretrain: RunResources = Field(default_factory=RunResources)
    finetune: RunResources = Field(default_factory=RunResources)


class StudySpec(_Strict):
    """The whole study; see ``docs/studies.md`` for every field."""

    name: str
    description: str = ""
    models: list[str] = Field(default_factory=lambda: ["t5-small"])
    vocab: str | None = Field(default=None, description="LO:HI content ids of the synthetic tasks")
    dropout: float | None = Field(default=None, description="fine-tuning dropout (None: the model's)")
    pretraining: Pretraining = Field(default_factory=Pretraining)
    init_schemes: list[str] = Field(default_factory=lambda: ["full"])
    baselines: Baselines = Field(default_factory=Baselines)
    pre_attn_ln_values: list[float] = Field(default_factory=list, description="Tables 3/8 sweep")
    downstream: Downstream
    report: ReportDefaults = Field(default_factory=ReportDefaults)
    resources: Resources = Field(default_factory=Resources)
    log_with: Literal["tensorboard", "wandb", "mlflow"] = Field(
        "tensorboard", description="every run's tracker beside tb/ (not part of the runs' hashes)"
    )

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        from synthpre.model import get_spec

        for name in value:
            _as_value_error(get_spec, name)
        return value

    @field_validator("init_schemes")
    @classmethod
    def _known_schemes(cls, value: list[str]) -> list[str]:
        from synthpre.init import check_scheme

        for scheme in value:
            _as_value_error(check_scheme, scheme)
        return value

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" in data:
            if "models" in data:
                raise ValueError("give either `model` or `models`, not both")
            model = data["model"]
            data = {key: value for key, value in data.items() if key != "model"}
            data["models"] = model if isinstance(model, list) else [model]
        return data

    @model_validator(mode="after")
    def _has_arms(self) -> StudySpec:
        if not self.models:
            raise ValueError("`models` is empty")
        has_arm = self.pretraining.tasks and self.init_schemes
        has_arm = (
            has_arm or self.baselines.random_init or self.baselines.pretrained_t5 or self.pre_attn_ln_values
        )
        if not has_arm:
            raise ValueError("no init arm: add pretraining.tasks, baselines or pre_attn_ln_values")
        return self


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec; every mistake names ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"study spec {path} not found (ready-made specs: `synthpre study presets`)")
    return parse_spec(path.read_text(), str(path))


def parse_spec(text: str, source: str = "<spec>") -> StudySpec:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UserError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if node is None:
        raise UserError(f"{source}: empty study spec; see docs/studies.md or `synthpre study presets`")
    lines: dict[tuple, int] = {}
    _record_lines(node, (), lines, source)
    if ("model",) in lines:  # the `model:` shorthand is validated as `models`
        lines[("models",)] = lines[("model",)]
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise UserError(f"{source}:1: a study spec is a mapping (name:, downstream:, ...)")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as error:
        raise UserError(_format_errors(error, lines, source)) from None
    check_runs(spec, lines, source)
    return spec


def check_runs(spec: StudySpec, lines: dict[tuple, int], source: str) -> None:
    """Build the full settings of every planned run (what the run itself will build), so that a bad value
    in a ``train:`` block fails here, with its line, and not when the run starts."""
    from synthpre.experiments.execute import finetuning_settings, pretraining_settings
    from synthpre.experiments.plan import build_plan

    placeholder = Path("<run folder>")
    messages: set[tuple[int, str]] = set()
    for run in build_plan(spec):
        try:
            if run.kind == "pretrain":
                pretraining_settings(run.config, placeholder)
            else:
                finetuning_settings(run.config, placeholder, dict.fromkeys(run.deps, "<pre-training run>"))
        except ValidationError as error:
            for item in error.errors():
                loc = _spec_loc(spec, run.kind, run.labels, error.title, tuple(item["loc"]))
                messages.add(_error_line(item, loc, lines, source))
    if messages:
        raise UserError("invalid study spec:\n  " + "\n  ".join(text for _, text in sorted(messages)))


# Where in the spec a field of a run's settings comes from (other than its ``train:`` blocks).
_PRETRAIN_SOURCES = {"model": ("models",), "vocab": ("vocab",)}
_FINETUNE_SOURCES = {
    "model": ("models",), "vocab": ("vocab",), "dropout": ("dropout",),
    "learning_rate": ("downstream", "lrs"), "train_size": ("downstream", "train_sizes"),
    "seed": ("downstream", "seeds"),
    "tokenizer": ("downstream", "tokenizer"), "init_from": ("baselines", "pretrained_t5"),
    "init_scheme": ("init_schemes",), "pre_attn_ln": ("pre_attn_ln_values",),
}  # fmt: skip


def _spec_loc(spec: StudySpec, kind: str, labels: dict[str, Any], title: str, loc: tuple) -> tuple:
    """The key path of the spec that set the field at ``loc`` of a run's settings (class ``title``)."""
    if kind == "pretrain":
        label = labels["pretrain_task"]
        own, shared = ("pretraining", "tasks", label, "train"), ("pretraining", "train")
        own_keys = spec.pretraining.tasks[label].train
        if title == "Pretraining":  # the recipe around the engine's TrainConfig
            sources = {**_PRETRAIN_SOURCES, "task": (*own[:3], "task"), "task_params": (*own[:3], "params")}
            return (*sources.get(str(loc[0]), own[:3]), *loc[1:]) if loc else own[:3]
    else:
        task = labels["task"]
        own, shared = ("downstream", "tasks", task, "train"), ("downstream", "train")
        own_keys = spec.downstream.tasks[task].train
        if loc and loc[0] not in own_keys and loc[0] not in spec.downstream.train:
            sources = {**_FINETUNE_SOURCES, "task": own[:3], "data": (*own[:3], "data")}
            return (*sources.get(str(loc[0]), ("downstream",)), *loc[1:])
    if not loc:  # a check of the whole block
        return own if own_keys else shared
    return (*(own if loc[0] in own_keys else shared), *loc)


def _record_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int], source: str) -> None:
    """Map every key path of the YAML tree to its 1-based line; reject duplicate keys."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise UserError(f"{source}:{key_node.start_mark.line + 1}: key {key!r} appears twice")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _record_lines(value_node, (*path, key), lines, source)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines, source)


def _format_errors(error: ValidationError, lines: dict[tuple, int], source: str) -> str:
    messages = [_error_line(item, tuple(item["loc"]), lines, source) for item in error.errors()]
    return "invalid study spec:\n  " + "\n  ".join(text for _, text in sorted(messages))


def _error_line(item: Any, loc: tuple, lines: dict[tuple, int], source: str) -> tuple[int, str]:
    """``(line, "file:line: key.path: message")`` of one pydantic error found at ``loc`` of the spec."""
    loc = tuple(part for part in loc if not (isinstance(part, str) and "[" in part))
    line = _line_of(loc, lines)
    field = ".".join(str(part) for part in loc) or "(top level)"
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown field (see docs/studies.md for the fields of a study spec)"
    return line, f"{source}:{line}: {field}: {message}"


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


def preset_paths() -> list[Path]:
    """The ready-made specs shipped with the package (``synthpre study presets``)."""
    return sorted(PRESETS_DIR.glob("*.yaml"))


def resolve_spec(spec: str) -> Path:
    """A spec file path, or the name of a preset (``tiny``, ``paper-table1``, ...)."""
    if Path(spec).is_file():
        return Path(spec)
    preset = PRESETS_DIR / f"{spec.removesuffix('.yaml')}.yaml"
    if preset.is_file():
        return preset
    names = ", ".join(p.stem for p in preset_paths())
    raise UserError(f"study spec {spec!r}: no such file, and not a preset ({names})")
