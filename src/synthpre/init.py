"""Stage 5: parameter statistics, initialization schemes from statistics, and Figure 6 (Sec. 5, App. H).

Statistics are keyed by App. K (T5X) names, App. K-style ones for decoder-only models (GPT-2, Pythia,
Llama: :func:`synthpre.model.named_weights`; a fused q/k/v projection is three views, query, key and
value, each a parameter of its own here).  Every scheme starts from a fresh initialization of the target
config (its family's own) and overwrites the parameters it covers, group by group, in one of two modes
(the authors' ``init_mean_std`` and ``init_scale``, research ``original_repo.md`` 4):

* ``mean_sd``: every parameter of the group ~ N(pooled mean, pooled SD);
* ``scale``: layer-norm scales = the pooled mean (a constant), other parameters (a norm's bias too)
  ~ N(0, pooled SD).

The token embedding is never set from statistics (the authors' groupings leave it out); position tables
(T5's relative ones, GPT-2's absolute one) are ordinary parameters; biases (GPT-2, Pythia) are pooled
only with biases.  ``docs/init_schemes.md`` has the table of schemes with the paper's names.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from synthpre.errors import UserError, lookup
from synthpre.model import (
    ParamInfo,
    build_from_config,
    build_model,
    is_norm,
    load_model,
    named_weights,
    param_info,
)

# --- statistics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamStats:
    """Mean, SD (population, as the authors' ``np.std``), min, max and count of one parameter or group."""

    mean: float
    sd: float
    min: float
    max: float
    count: int
    shape: tuple[int, ...] | None = None  # None for a pooled group

    @classmethod
    def of(cls, tensor: torch.Tensor) -> ParamStats:
        values = tensor.detach().double()
        sd, mean = torch.std_mean(values, correction=0)
        low, high = torch.aminmax(values)
        shape = tuple(values.shape)
        return cls(mean.item(), sd.item(), low.item(), high.item(), values.numel(), shape)

    @classmethod
    def pooled(cls, parts: Iterable[ParamStats]) -> ParamStats:
        """Statistics of the union of several parameters, exactly, from their own statistics."""
        parts = list(parts)
        count = sum(p.count for p in parts)
        mean = sum(p.count * p.mean for p in parts) / count
        second_moment = sum(p.count * (p.sd**2 + p.mean**2) for p in parts) / count
        sd = math.sqrt(max(second_moment - mean**2, 0.0))
        return cls(mean, sd, min(p.min for p in parts), max(p.max for p in parts), count)

    @classmethod
    def from_dict(cls, data: Mapping) -> ParamStats:
        shape = data.get("shape")
        return cls(
            float(data["mean"]),
            float(data["sd"]),
            float(data["min"]),
            float(data["max"]),
            int(data["count"]),
            tuple(shape) if shape is not None else None,
        )


Stats = dict[str, ParamStats]  # App. K name -> statistics
Source = PreTrainedModel | str | Path | Mapping[str, ParamStats] | Mapping[str, torch.Tensor]


def source_weights(source: Source) -> dict[str, torch.Tensor] | None:
    """The weights of a model (T5 or decoder-only), checkpoint folder or ``{App. K name: tensor}``;
    None for statistics."""
    if isinstance(source, PreTrainedModel):
        return named_weights(source)
    if isinstance(source, str | Path):
        return named_weights(load_model(source))
    if all(isinstance(value, torch.Tensor) for value in source.values()):
        return dict(source)
    return None


def parameter_stats(source: Source) -> Stats:
    """Per App. K name: mean, SD, min, max, count (and shape) of a model, checkpoint or state."""
    weights = source_weights(source)
    if weights is None:
        return {name: _as_stats(value) for name, value in source.items()}
    return {name: ParamStats.of(weight) for name, weight in weights.items()}


def _as_stats(value: ParamStats | Mapping) -> ParamStats:
    return value if isinstance(value, ParamStats) else ParamStats.from_dict(value)


# --- groups and schemes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Parameters that share one statistic; ``mode`` is ``mean_sd`` or ``scale`` (module docstring)."""

    label: str
    names: tuple[str, ...]
    mode: str


# What pools with what, the one rule for every architecture (T5, GPT-2, Pythia, Llama): a parameter's
# TYPE for the across-layers statistics, its PART for the per-layer and whole-model ones.  Biases never
# pool with kernels, nor a norm's bias with its scale.
POSITION_KINDS = frozenset({"relpos", "position_embedding"})  # T5's relative tables, GPT-2's absolute one


def param_type(name: str) -> str:
    """The TYPE of a parameter: its kind (``query``, ``pre_attention_norm``, ...), ``<kind>_bias`` for
    a bias."""
    info = param_info(name)
    return f"{info.kind}_bias" if info.is_bias else info.kind


def param_part(name: str) -> str:
    """The PART of a parameter: ``norms`` (a norm's scale), ``biases`` (of kernels and norms), its kind
    for a position table (``relpos``, ``position_embedding``), else ``weights``."""
    info = param_info(name)
    if info.is_norm:
        return "norms"
    if info.is_bias:
        return "biases"
    return info.kind if info.kind in POSITION_KINDS else "weights"


def _statistics_names(names: Iterable[str]) -> list[str]:
    """Every parameter but the token embedding, which statistics schemes leave fresh (App. H, authors)."""
    return [n for n in names if param_info(n).kind != "token_embedding"]


def _pooled_groups(names: Iterable[str], label: Callable[[str], str]) -> list[Group]:
    """Scale-mode groups of the parameters that share a label, in the order of their first parameter."""
    groups: dict[str, list[str]] = {}
    for name in _statistics_names(names):
        groups.setdefault(label(name), []).append(name)
    return [Group(key, tuple(members), "scale") for key, members in groups.items()]


def per_param_groups(names: Iterable[str], mode: str, kinds: frozenset[str] | None = None) -> list[Group]:
    """One group per parameter, optionally only the parameters of the given kinds (their biases too)."""
    chosen = [n for n in _statistics_names(names) if kinds is None or param_info(n).kind in kinds]
    return [Group(n, (n,), mode) for n in chosen]


def across_layers_groups(names: Iterable[str]) -> list[Group]:
    """App. H Across Layers Scale: one group per parameter TYPE (``type/query``, ``type/query_bias``,
    ...), pooled over every layer and both stacks."""
    return _pooled_groups(names, lambda name: f"type/{param_type(name)}")


def per_layer_groups(names: Iterable[str]) -> list[Group]:
    """App. H Per Layer Scale: per layer, its weights (SD), its norms (mean) and its biases (SD).

    Parameters outside the layers (final norms and their biases, position tables, an untied output head)
    keep one statistic each, as in the authors' code.  The layers come from the names, i.e. the config.
    """

    def label(name: str) -> str:
        info = param_info(name)
        return name if info.layer is None else f"{info.stack}/layers_{info.layer}/{param_part(name)}"

    return _pooled_groups(names, label)


def whole_model_groups(names: Iterable[str]) -> list[Group]:
    """App. H Whole Model Scale: one SD for all weight matrices, one mean for all norms (final ones too),
    one SD for all biases.

    The position tables pool into a statistic of their own, as in the authors' code: pooled with the
    kernels, their SD (tiny count) would be replaced by the kernels'.
    """
    return _pooled_groups(names, lambda name: f"model/{param_part(name)}")


ATTENTION_KINDS = frozenset({"query", "key", "value", "out"})
NORM_KINDS = frozenset({"pre_attention_norm", "pre_mlp_norm", "final_norm"})

# Named parameter groups for the per-parameter schemes "<group>_mean_sd" and "<group>_scale", by kind:
# a kind selects the biases of its kernels and norms too.
PARAM_GROUPS: dict[str, frozenset[str] | None] = {
    "per_param": None,  # every parameter but the token embedding
    "pre_attn_ln": frozenset({"pre_attention_norm"}),  # incl. the decoder pre-cross-attention norms
    "attention": ATTENTION_KINDS,  # q, k, v, o of every attention block
    "pre_mlp_ln": frozenset({"pre_mlp_norm"}),
    "mlp": frozenset({"mlp_wi", "mlp_wo"}),
    "relpos": POSITION_KINDS,  # the position tables (the name stays, for existing studies)
    "norms": NORM_KINDS,
}


@dataclass(frozen=True)
class Scheme:
    """An initialization scheme: its row name in the tables (the paper's, for the schemes the paper
    has), where the paper reports it (None: ours), a description and its groups."""

    row_name: str
    paper_ref: str | None
    description: str
    groups: Callable[[list[str]], list[Group]] | None  # None: copy the weights (full)


def _per_param_scheme(group: str, mode: str) -> Callable[[list[str]], list[Group]]:
    return lambda names: per_param_groups(names, mode, PARAM_GROUPS[group])


_GROUP_WORDS = {  # group -> (what it re-draws, the row-name prefix)
    "per_param": ("every parameter but the token embedding", "Per Param"),
    "pre_attn_ln": (
        "the pre-attention norms (T5: encoder, decoder pre-self and pre-cross; decoder-only: pre-self), "
        "with any biases",
        "Pre-attn LN Per Param",
    ),
    "attention": ("q, k, v, o of every attention block, with any biases", "Attention Per Param"),
    "pre_mlp_ln": ("the pre-MLP norms, with any biases", "Pre-MLP LN Per Param"),
    "mlp": ("the MLP wi (wi_0, wi_1) and wo, with any biases", "MLP Per Param"),
    "relpos": (
        "the position tables (T5's relative-position tables, GPT-2's absolute one; rotary Pythia and "
        "Llama have none)",
        "Rel-pos Tables",
    ),
    "norms": ("all layer norms (pre-attention, pre-MLP, final), with any biases", "Layer Norms"),
}
_MODE_WORDS = {  # mode -> (how, the row-name suffix)
    "mean_sd": ("each drawn from N(mean, SD) of that pre-trained parameter", "Mean/SD"),
    "scale": (
        "norm scales set to the mean of that pre-trained scale, others (biases too) drawn from N(0, its SD)",
        "Scale",
    ),
}
_PAPER_REFS = {
    "per_param_mean_sd": "Sec. 5.1, Tables 2, 5, 7",
    "per_param_scale": "Sec. 5.2, Table 5",
    "pre_attn_ln_scale": "Table 5",
    "attention_scale": "Table 5",
    "pre_mlp_ln_scale": "Table 5",
    "mlp_scale": "Table 5",
}

SCHEMES: dict[str, Scheme] = {
    "full": Scheme(
        "Full Init",
        "Sec. 3, 4, Table 1",
        "all weights copied (optionally the token embedding left fresh, as in the authors' fine-tuning)",
        None,
    ),
    **{
        f"{group}_{mode}": Scheme(
            f"{_GROUP_WORDS[group][1]} {_MODE_WORDS[mode][1]}",
            _PAPER_REFS.get(f"{group}_{mode}"),
            f"{_GROUP_WORDS[group][0]}: {_MODE_WORDS[mode][0]}; everything else fresh",
            _per_param_scheme(group, mode),
        )
        for group in PARAM_GROUPS
        for mode in ("mean_sd", "scale")
    },
    "across_layers_scale": Scheme(
        "Across Layers Scale",
        "App. H, Table 5",
        "per_param_scale with one statistic per parameter TYPE pooled over all layers: queries, keys, "
        "values, attention outputs, MLP wi, MLP wo, pre-attention norms, pre-MLP norms, final norms, "
        "position tables (and an untied output head); the biases of each TYPE one statistic of their own",
        across_layers_groups,
    ),
    "per_layer_scale": Scheme(
        "Per Layer Scale",
        "App. H, Table 5",
        "per layer: SD of all its weight matrices, mean of all its norms, SD of all its biases; final "
        "norms, position tables and an untied output head one statistic each",
        per_layer_groups,
    ),
    "whole_model_scale": Scheme(
        "Whole Model Scale",
        "Table 5",
        "one SD for all weight matrices, one mean for all norms, one SD for all biases, one SD for the "
        "position tables",
        whole_model_groups,
    ),
}


def scheme_row_name(name: str | None) -> str:
    """The row name of scheme ``name`` in the tables (the name itself for an unknown one)."""
    return SCHEMES[name].row_name if name in SCHEMES else str(name)


def check_scheme(name: str) -> Scheme:
    """The scheme called ``name``; a ``UserError`` listing the valid schemes otherwise."""
    return lookup(SCHEMES, name, "init scheme")


def stats_groups(names: Iterable[str]) -> list[Group]:
    """The groupings reported by ``synthpre stats``: per TYPE, per layer and whole model."""
    names = list(names)
    return across_layers_groups(names) + per_layer_groups(names) + whole_model_groups(names)


def group_stats(stats: Stats, groups: Iterable[Group]) -> dict[str, ParamStats]:
    """Pooled statistics of each group (groups of one parameter included)."""
    return {g.label: ParamStats.pooled(stats[n] for n in g.names) for g in groups}


# --- applying a scheme --------------------------------------------------------------------------


def _draw_generator(seed: int) -> torch.Generator:
    """The generator of statistics draws: a stream of ``seed`` distinct from the fresh init's."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 5]).generate_state(1)[0]))


def _check_shapes(
    target: Mapping[str, torch.Tensor],
    source_shapes: Mapping[str, tuple[int, ...] | None],
    names: Iterable[str],
    statistics: bool,
) -> None:
    """``UserError`` naming the parameters whose shapes differ or that only one side has.

    For statistics the vocabulary size of an untied output head does not matter (only its width).
    """
    names = list(names)

    def comparable(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)[1:] if statistics and param_info(name).kind == "logits" else tuple(shape)

    problems = [f"{n}: missing in the source" for n in names if n not in source_shapes]
    problems += [
        f"{n}: target {tuple(target[n].shape)} vs source {source_shapes[n]}"
        for n in names
        if source_shapes.get(n) is not None
        and comparable(n, source_shapes[n]) != comparable(n, target[n].shape)
    ]
    problems += [
        f"{n}: missing in the target"
        for n in source_shapes
        if n not in target and param_info(n).kind not in ("token_embedding", "logits")
    ]
    if problems:
        raise UserError(
            f"the source does not match the target config ({len(problems)} parameters differ): "
            f"{'; '.join(problems[:8])}. Use --model with the source's config (or omit it)."
        )


def apply_scheme(
    model: PreTrainedModel,
    source: Source,
    scheme: str,
    seed: int,
    *,
    fresh_embeddings: bool = False,
) -> list[Group]:
    """Overwrite, in place, the parameters of a freshly initialized ``model`` that ``scheme`` covers.

    ``source``: a pre-trained model, checkpoint folder, ``{App. K name: tensor}``, or statistics
    (``parameter_stats`` or a ``synthpre stats`` JSON entry) for the statistics schemes.
    ``seed`` seeds the draws.  ``fresh_embeddings`` (``full`` only) keeps the token embedding fresh.
    Returns the groups set (``full``: one group of the copied names).  A scheme that covers no parameter
    of ``model`` (the position tables of a rotary model) is a ``UserError``.
    """
    spec = check_scheme(scheme)
    target = named_weights(model)
    if spec.groups is None:
        return [_copy_weights(target, source, fresh_embeddings)]
    groups = spec.groups(list(target))
    if not groups:
        types = ", ".join(dict.fromkeys(map(param_type, target)))
        raise UserError(
            f"init scheme {scheme!r} covers no parameter of this {model.config.model_type} model: it sets "
            f"{spec.description}. This model's parameter TYPEs: {types}"
        )
    stats = parameter_stats(source)
    shapes = {name: value.shape for name, value in stats.items()}
    _check_shapes(target, shapes, [n for g in groups for n in g.names], statistics=True)
    generator = _draw_generator(seed)
    with torch.no_grad():
        for group in groups:
            pooled = ParamStats.pooled(stats[n] for n in group.names)
            for name in group.names:
                if group.mode == "scale" and is_norm(name):
                    target[name].fill_(pooled.mean)
                else:
                    mean = pooled.mean if group.mode == "mean_sd" else 0.0
                    target[name].normal_(mean, pooled.sd, generator=generator)
    return groups


def _copy_weights(target: dict[str, torch.Tensor], source: Source, fresh_embeddings: bool) -> Group:
    weights = source_weights(source)
    if weights is None:
        raise UserError("scheme 'full' copies weights: give a checkpoint or model, not statistics")
    names = [n for n in target if not (fresh_embeddings and param_info(n).kind == "token_embedding")]
    _check_shapes(target, {n: tuple(w.shape) for n, w in weights.items()}, names, statistics=False)
    with torch.no_grad():
        for name in names:
            target[name].copy_(weights[name])
    return Group("full", tuple(names), "copy")


def set_pre_attention_norms(model: PreTrainedModel, value: float) -> list[str]:
    """Table 3 / App. Table 8: all pre-attention norm scales = ``value`` (T5: encoder, decoder self and
    cross; decoder-only: pre-self-attention); their biases stay as they are."""
    names = []
    with torch.no_grad():
        for name, weight in named_weights(model).items():
            if _is_pre_attention_scale(name):
                weight.fill_(value)
                names.append(name)
    return names


@dataclass(frozen=True)
class InitConfig:
    """How an initialization was made; written whole next to the weights (``init_config.json``)."""

    seed: int = 0
    scheme: str | None = None
    source: str | None = None
    model: str | None = None
    vocab_size: int | None = None
    fresh_embeddings: bool = False
    pre_attn_ln_value: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def initialize(config: InitConfig) -> PreTrainedModel:
    """A fresh model of the target config with the scheme applied (or the pre-attention norms set).

    The target is ``config.model`` (at the source's vocabulary unless ``vocab_size`` is given), else the
    source checkpoint's own config.  Raises ``UserError`` on bad input, before anything is written.
    """
    if (config.scheme is None) == (config.pre_attn_ln_value is None):
        raise UserError(
            "give either a scheme with a source checkpoint (--scheme, --from) or --pre-attn-ln-value"
        )
    if config.scheme is not None:
        check_scheme(config.scheme)
        if config.source is None:
            raise UserError(f"scheme {config.scheme!r} needs a pre-trained checkpoint: add --from CKPT")
    source = load_model(config.source) if config.source is not None else None
    if config.model is not None:
        vocab = config.vocab_size or (source.config.vocab_size if source is not None else None)
        model = build_model(config.model, vocab_size=vocab, seed=config.seed)
    elif source is not None:
        target_config = copy.deepcopy(source.config)  # a round trip through a dict would re-tie v1.1
        target_config.vocab_size = config.vocab_size or target_config.vocab_size
        model = build_from_config(target_config, seed=config.seed)
    else:
        raise UserError(
            "--pre-attn-ln-value builds a fresh model: name it with --model (e.g. t5-small, gpt2-small)"
        )
    if config.scheme is not None:
        apply_scheme(model, source, config.scheme, config.seed, fresh_embeddings=config.fresh_embeddings)
    else:
        set_pre_attention_norms(model, config.pre_attn_ln_value)
    return model


# --- Figure 6 -----------------------------------------------------------------------------------

FIGURE6_PANELS = (  # a decoder-only model has the second one only
    ("encoder", "attention", "encoder pre-attention layer norm"),
    ("decoder", "self_attention", "decoder pre-self-attention layer norm"),
    ("decoder", "encoder_decoder_attention", "decoder pre-cross-attention layer norm"),
)


def _is_pre_attention_scale(name: str) -> bool:
    info = param_info(name)
    return info.kind == "pre_attention_norm" and info.is_norm


def pre_attention_norm_means(stats: Stats, stack: str, block: str) -> list[tuple[int, float]]:
    """(layer, mean of that layer's pre-attention norm scale) for one panel of Figure 6."""
    points = []
    for name, value in stats.items():
        info: ParamInfo = param_info(name)
        if _is_pre_attention_scale(name) and info.stack == stack and info.block == block:
            points.append((info.layer, value.mean))
    return sorted(points)


def plot_figure6(stats_by_model: Mapping[str, Stats], path: str | Path) -> Path:
    """Figure 6: per layer, the mean pre-attention norm scale; one line per model, one panel per norm
    that some model has (T5 three, a decoder-only model one); each model keeps its colour throughout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = []  # (title, model -> points) of the panels that some model has
    for stack, block, title in FIGURE6_PANELS:
        by_model = {label: pre_attention_norm_means(s, stack, block) for label, s in stats_by_model.items()}
        if any(by_model.values()):
            panels.append((title, by_model))
    if not panels:
        raise UserError("Figure 6: none of the models has pre-attention norm scales to plot")
    figure, axes = plt.subplots(len(panels), 1, figsize=(6, 2 + 2 * len(panels)), sharex=True, squeeze=False)
    handles = {}
    for axis, (title, by_model) in zip(axes[:, 0], panels, strict=True):
        for colour, (label, points) in enumerate(by_model.items()):
            if points:
                (handles[label],) = axis.plot(
                    [p[0] for p in points], [p[1] for p in points], marker="o", color=f"C{colour}"
                )
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("mean scale")
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("layer")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    labels = [label for label in stats_by_model if label in handles]
    axes[0, 0].legend([handles[label] for label in labels], labels, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return Path(path)
