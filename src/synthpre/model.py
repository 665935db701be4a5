"""Stage 3: named T5 configs, T5's own initialization, the App. K name map and checkpoints.

Models are built from config with Hugging Face ``T5ForConditionalGeneration`` (never downloaded).
Three transformers 5.x traps are handled here (research notes ``offline.md`` 2, ``anchors.md`` 2.2):
``T5Config`` forces tied embeddings (v1.1 must have an untied output head), ``decoder_start_token_id``
has no default (T5 uses 0), and the untied ``lm_head`` is initialized with std 1.0 (initial loss ~100),
so :func:`t5_init` re-initializes every parameter the way Mesh TF / T5X do.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import T5Config, T5ForConditionalGeneration
from transformers.initialization import no_init_weights
from transformers.utils import logging as hf_logging

from synthpre.errors import UserError, lookup
from synthpre.tokens import EOS_ID, NUM_SENTINELS, PAD_ID, TokenSpace

DECODER_START_ID = 0  # T5 starts decoding from the pad id
T5_VOCAB_SIZE = 32128


@dataclass(frozen=True)
class ModelSpec:
    """The shape of a T5 model; ``tied`` = v1.0 (shared input/output embedding, output rescaled by d^-0.5)."""

    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    feed_forward_proj: str  # "relu" (v1.0) or "gated-gelu" (v1.1)
    tied: bool
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    vocab_size: int = T5_VOCAB_SIZE
    dropout_rate: float = 0.1
    # True: the vocabulary is sized to the synthetic token space (the CPU pilot's tiny model); False:
    # T5's 32,128 rows, so that the model fine-tunes with T5's tokenizer like the paper's.
    vocab_from_tokens: bool = False

    def t5_config(self, vocab_size: int | None = None, dropout_rate: float | None = None) -> T5Config:
        """A ``T5Config`` with T5's special ids; untied specs get ``tie_word_embeddings=False`` for real."""
        fields = asdict(self)
        tied = fields.pop("tied")
        fields.pop("vocab_from_tokens")
        fields["vocab_size"] = vocab_size or self.vocab_size
        if dropout_rate is not None:
            fields["dropout_rate"] = dropout_rate
        config = T5Config(
            **fields,
            tie_word_embeddings=tied,  # transformers 5.x reads this only as "rescale decoder outputs"
            decoder_start_token_id=DECODER_START_ID,
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
        )
        config.tie_word_embeddings = tied  # __post_init__ forced True; saved in config.json for reloads
        return config


# App. A: the paper pre-trains T5 v1.0 small; v1.1 and base are the other released shapes
# (t5x gin files); t5-tiny is the CPU pilot's model (research pilot.md).
MODEL_CONFIGS: dict[str, ModelSpec] = {
    "t5-small": ModelSpec(512, 64, 2048, 6, 6, 8, "relu", tied=True),
    "t5-base": ModelSpec(768, 64, 3072, 12, 12, 12, "relu", tied=True),
    "t5-v1_1-small": ModelSpec(512, 64, 1024, 8, 8, 6, "gated-gelu", tied=False),
    "t5-v1_1-base": ModelSpec(768, 64, 2048, 12, 12, 12, "gated-gelu", tied=False),
    "t5-tiny": ModelSpec(128, 32, 512, 2, 2, 4, "relu", tied=True, vocab_from_tokens=True),
}


def get_spec(name: str) -> ModelSpec:
    """The named config; a ``UserError`` listing the valid names otherwise."""
    return lookup(MODEL_CONFIGS, name, "model")


def padded_vocab_size(num_ids: int) -> int:
    """A model vocabulary that holds ``num_ids`` ids, rounded up to a multiple of 8."""
    return -(-num_ids // 8) * 8


def vocab_size_for(space: TokenSpace) -> int:
    """Model vocabulary for a token space: every id of the space, rounded up to a multiple of 8."""
    return padded_vocab_size(space.vocab_size)


def model_vocab_size(name: str, space: TokenSpace) -> int:
    """THE vocabulary rule of a model trained on ``space`` (pre-training, and the Random Init or
    statistics arms that must have its shape): a ``vocab_from_tokens`` model (t5-tiny) gets the
    smallest vocabulary that holds the space, the others keep their spec's (T5's 32,128).
    ``UserError`` when the space does not fit (setting ``vocab``, flag ``--vocab``)."""
    spec = get_spec(name)
    size = vocab_size_for(space) if spec.vocab_from_tokens else spec.vocab_size
    if space.vocab_size > size:
        raise UserError(
            f"vocab {space.lo}:{space.hi} (--vocab) needs {space.vocab_size} token ids but {name} has "
            f"{size}; lower HI to at most {size - NUM_SENTINELS - 1}"
        )
    return size


def is_tied(model: T5ForConditionalGeneration) -> bool:
    """Whether the output head shares the token embedding (T5 v1.0)."""
    return model.lm_head.weight is model.shared.weight


def build_model(
    name: str, vocab_size: int | None = None, dropout_rate: float | None = None, seed: int = 0
) -> T5ForConditionalGeneration:
    """A freshly initialized named T5 (:func:`t5_init` with ``seed``); the global RNG is left untouched."""
    return build_from_config(get_spec(name).t5_config(vocab_size, dropout_rate), seed)


def build_from_config(config: T5Config, seed: int = 0) -> T5ForConditionalGeneration:
    """A fresh T5 of ``config`` (e.g. a checkpoint's); untied when ``config.tie_word_embeddings`` is False."""
    config = copy.deepcopy(config)  # the model owns its config; the caller's stays untouched
    tied = config.tie_word_embeddings
    with torch.random.fork_rng(devices=[]), no_init_weights():  # t5_init below sets every weight
        model = T5ForConditionalGeneration(config)
    model.tie_weights()  # init_weights (skipped) also ties; ties nothing when untied
    if not tied:  # untying also untied the encoder/decoder inputs: share them again (offline.md 2)
        model.encoder.embed_tokens.weight = model.shared.weight
        model.decoder.embed_tokens.weight = model.shared.weight
    t5_init(model, seed)
    return model


def init_std(hf_name: str, config: T5Config) -> float:
    """T5's (Mesh TF / T5X) initial std of a parameter; layer-norm scales are 1.0 instead.

    Embedding 1.0; q (d_model*d_kv)^-0.5 (T5 folds the 1/sqrt(d_kv) attention scaling into q);
    k, v, wi, relative bias and the untied output head d_model^-0.5; o (heads*d_kv)^-0.5; wo d_ff^-0.5.
    """
    kind = param_info(t5x_name(hf_name)).kind
    d, d_kv, heads = config.d_model, config.d_kv, config.num_heads
    stds = {
        "token_embedding": 1.0,
        "query": (d * d_kv) ** -0.5,
        "key": d**-0.5,
        "value": d**-0.5,
        "out": (heads * d_kv) ** -0.5,
        "mlp_wi": d**-0.5,
        "mlp_wo": config.d_ff**-0.5,
        "relpos": d**-0.5,
        "logits": d**-0.5,
    }
    return stds[kind]


def t5_init(model: T5ForConditionalGeneration, seed: int) -> None:
    """Re-initialize every parameter in place, deterministically from ``seed`` (in name order)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for hf_name, param in model.named_parameters():
            if is_norm(t5x_name(hf_name)):
                param.fill_(1.0)
            else:
                param.normal_(0.0, init_std(hf_name, model.config), generator=generator)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


# --- App. K names -------------------------------------------------------------------------------

_ATTENTION_NAMES = {"q": "query", "k": "key", "v": "value", "o": "out"}
_BLOCK_PATTERN = re.compile(r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)\.weight")


def t5x_name(hf_name: str) -> str:
    """The T5X name (App. K) of a transformers parameter, e.g. ``encoder/layers_0/attention/query/kernel``."""
    fixed = {
        "shared.weight": "token_embedder/embedding",
        "lm_head.weight": "decoder/logits_dense/kernel",
        "encoder.final_layer_norm.weight": "encoder/encoder_norm/scale",
        "decoder.final_layer_norm.weight": "decoder/decoder_norm/scale",
    }
    if hf_name in fixed:
        return fixed[hf_name]
    match = _BLOCK_PATTERN.fullmatch(hf_name)
    if match is None:
        raise ValueError(f"not a T5 parameter name: {hf_name!r}")
    stack, layer, sub, rest = match[1], int(match[2]), int(match[3]), match[4]
    if rest == "SelfAttention.relative_attention_bias":
        return f"{stack}/relpos_bias/rel_embedding"
    if stack == "encoder":
        block = ("attention", "mlp")[sub]
        norm = ("pre_attention_layer_norm", "pre_mlp_layer_norm")[sub]
    else:
        block = ("self_attention", "encoder_decoder_attention", "mlp")[sub]
        norm = ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm", "pre_mlp_layer_norm")[sub]
    prefix = f"{stack}/layers_{layer}"
    if rest == "layer_norm":
        return f"{prefix}/{norm}/scale"
    module, _, proj = rest.partition(".")
    if module in ("SelfAttention", "EncDecAttention"):
        return f"{prefix}/{block}/{_ATTENTION_NAMES[proj]}/kernel"
    if module == "DenseReluDense":
        return f"{prefix}/mlp/{proj}/kernel"  # wi, wo (v1.0); wi_0, wi_1, wo (v1.1)
    raise ValueError(f"not a T5 parameter name: {hf_name!r}")


def t5x_names(model: T5ForConditionalGeneration) -> dict[str, str]:
    """HF name -> App. K name for every distinct parameter (tied copies appear once, as the embedding)."""
    return {hf_name: t5x_name(hf_name) for hf_name, _ in model.named_parameters()}


@dataclass(frozen=True)
class ParamInfo:
    """Where an App. K parameter lives and what TYPE it is (the groupings of App. H / Sec. 5).

    ``kind``: query, key, value, out, mlp_wi, mlp_wo, pre_attention_norm (incl. the decoder's
    pre-self- and pre-cross-attention norms), pre_mlp_norm, final_norm, relpos, token_embedding, logits.
    ``block``: attention, self_attention, encoder_decoder_attention, mlp, or None outside the layers.
    """

    stack: str | None
    layer: int | None
    block: str | None
    kind: str

    @property
    def is_norm(self) -> bool:
        return self.kind.endswith("_norm")


_LAYER_PATTERN = re.compile(r"(encoder|decoder)/layers_(\d+)/([a-z_]+?)(_layer_norm)?/(\w+)(?:/kernel)?")
_NORM_KINDS = {
    "pre_attention": ("attention", "pre_attention_norm"),
    "pre_self_attention": ("self_attention", "pre_attention_norm"),
    "pre_cross_attention": ("encoder_decoder_attention", "pre_attention_norm"),
    "pre_mlp": ("mlp", "pre_mlp_norm"),
}


def param_info(name: str) -> ParamInfo:
    """Stack, layer index, block and TYPE of an App. K name."""
    if name == "token_embedder/embedding":
        return ParamInfo(None, None, None, "token_embedding")
    stack, _, rest = name.partition("/")
    if rest == "logits_dense/kernel":
        return ParamInfo(stack, None, None, "logits")
    if rest == "relpos_bias/rel_embedding":
        return ParamInfo(stack, None, None, "relpos")
    if rest in ("encoder_norm/scale", "decoder_norm/scale"):
        return ParamInfo(stack, None, None, "final_norm")
    match = _LAYER_PATTERN.fullmatch(name)
    if match is None:
        raise ValueError(f"not an App. K parameter name: {name!r}")
    layer, block, norm_suffix, leaf = int(match[2]), match[3], match[4], match[5]
    if norm_suffix:
        block, kind = _NORM_KINDS[block]
    elif block == "mlp":
        kind = "mlp_wo" if leaf == "wo" else "mlp_wi"
    else:
        kind = leaf
    return ParamInfo(stack, layer, block, kind)


def is_norm(name: str) -> bool:
    """Whether an App. K name is a layer-norm scale."""
    return name.endswith("/scale")


# --- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(model: T5ForConditionalGeneration, directory: str | Path) -> Path:
    """Write ``model`` as a Hugging Face folder (config.json + model.safetensors) for plain transformers."""
    model.config.tie_word_embeddings = is_tied(model)  # reloads untie v1.1 heads from this flag
    model.save_pretrained(str(directory))
    return Path(directory)


def check_checkpoint(directory: str | Path) -> Path:
    """The model folder of a checkpoint, if it holds a config and readable safetensors weights; else
    ``UserError``.

    Takes a Hugging Face model folder, an engine checkpoint (``checkpoints/step_N``: its ``model/``)
    or a run folder (the checkpoint its ``best.json`` selected).  A checkpoint with ``checksums.json``
    (the model folder's or its parent's) is verified first; every weights file's header must parse.
    """
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a checkpoint or model folder")
    if not path.is_dir():
        raise UserError(f"checkpoint {str(path)!r} does not exist (expected a folder written by synthpre)")
    if (path / "best.json").is_file():
        path = path / json.loads((path / "best.json").read_text())["checkpoint"]
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        raise UserError(
            f"checkpoint {str(path)!r} has no config.json: not a model folder, a checkpoint (step_N) "
            "or a run folder with best.json"
        )
    if not any(path.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
        raise UserError(
            f"checkpoint {str(path)!r} has no .safetensors weights (found: {found}); synthpre loads only "
            "safetensors, never pickles: re-save it with save_pretrained(..., safe_serialization=True)"
        )
    verify_checksums(path)
    for weights in sorted(path.glob("*.safetensors")):
        _check_safetensors(weights)
    return path


# checkpoint folder -> the (path, size, mtime) of its files when their checksums last matched
_VERIFIED: dict[Path, tuple] = {}


def verify_checksums(model_dir: Path) -> None:
    """``UserError`` when the checkpoint holding ``model_dir`` (``model_dir`` itself or its parent, the
    first with ``checksums.json``) does not match its checksums; nothing to check without one."""
    from synthpre.train.checkpoints import CHECKSUMS, verify_checkpoint  # imports torch and safetensors

    for root in (model_dir, model_dir.parent):
        if not (root / CHECKSUMS).is_file():
            continue
        files = sorted(p for p in root.rglob("*") if p.is_file())
        signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        if _VERIFIED.get(root.resolve()) == signature:
            return
        problem = verify_checkpoint(root)
        if problem is not None:
            raise UserError(f"checkpoint {root} is damaged: {problem}; use an earlier checkpoint")
        _VERIFIED[root.resolve()] = signature
        return


def _check_safetensors(weights: Path) -> None:
    """``UserError`` naming ``weights`` when its header does not parse or the file is cut short."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise UserError(
            f"checkpoint weights {weights} are damaged ({error}): the file is truncated or not "
            "safetensors; re-save the model or use another checkpoint"
        ) from error


def load_model(directory: str | Path) -> T5ForConditionalGeneration:
    """Load a checkpoint folder (safetensors only, checksums verified); an untied v1.1 head stays untied."""
    from safetensors import SafetensorError

    path = check_checkpoint(directory)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # silence "will NOT tie" for untied heads: that is what we want
    try:
        model = T5ForConditionalGeneration.from_pretrained(str(path), use_safetensors=True)
    except SafetensorError as error:
        raise UserError(
            f"cannot load checkpoint {str(path)!r}: damaged safetensors weights ({error})"
        ) from error
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load checkpoint {str(path)!r}: {error}") from error
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.tie_word_embeddings = is_tied(model)
    if model.config.decoder_start_token_id is None:
        model.config.decoder_start_token_id = DECODER_START_ID
    return model


def model_summary(name: str) -> dict:
    """One row of ``synthpre models``: the config and its exact parameter count at the default vocabulary."""
    spec = get_spec(name)
    return {"name": name, **asdict(spec), "parameters": exact_parameter_count(spec)}


def exact_parameter_count(spec: ModelSpec, vocab_size: int | None = None) -> int:
    """Parameter count from the shape alone; equals ``count_parameters(build_model(...))``."""
    vocab = vocab_size or spec.vocab_size
    d, inner = spec.d_model, spec.num_heads * spec.d_kv
    attention = 4 * d * inner
    mlp = (3 if spec.feed_forward_proj.startswith("gated") else 2) * d * spec.d_ff
    relpos = spec.relative_attention_num_buckets * spec.num_heads
    encoder = spec.num_layers * (attention + mlp + 2 * d) + relpos + d
    decoder = spec.num_decoder_layers * (2 * attention + mlp + 3 * d) + relpos + d
    head = 0 if spec.tied else vocab * d
    return vocab * d + encoder + decoder + head
