"""Stage 3: named model configs of two architectures, each family's own initialization, the App. K
name map (for init schemes and statistics) and checkpoints.

* **encoder-decoder**: T5 (v1.0, v1.1, t5-tiny), built with ``T5ForConditionalGeneration``;
* **decoder-only** (causal LMs): GPT-2, Pythia (GPT-NeoX) and Llama families, built with
  ``GPT2LMHeadModel``, ``GPTNeoXForCausalLM`` and ``LlamaForCausalLM`` (:class:`CausalSpec`).

Models are built from config (never downloaded).
Three transformers 5.x traps are handled here (research notes ``offline.md`` 2, ``anchors.md`` 2.2):
``T5Config`` forces tied embeddings (v1.1 must have an untied output head), ``decoder_start_token_id``
has no default (T5 uses 0), and the untied ``lm_head`` is initialized with std 1.0 (initial loss ~100),
so :func:`t5_init` re-initializes every parameter the way Mesh TF / T5X do.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import PretrainedConfig, PreTrainedModel, T5Config, T5ForConditionalGeneration
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


@dataclass(frozen=True)
class CausalSpec:
    """The shape of a decoder-only model: ``family`` is ``gpt2``, ``gpt_neox`` (Pythia) or ``llama``.

    Special ids are the synthetic layout's (pad 0, eos 1; eos also starts a sequence, as GPT-2's
    ``<|endoftext|>``).  ``tied``: the output head is the token embedding (GPT-2); Pythia and Llama
    untie it.  Dropout defaults to 0, as these families pre-train.
    """

    family: str
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    max_positions: int
    tied: bool
    vocab_size: int = 50_304  # GPT-2's 50,257 rounded up to a multiple of 64 (Pythia's own size)
    dropout_rate: float = 0.0
    vocab_from_tokens: bool = False

    def hf_config(self, vocab_size: int | None = None, dropout_rate: float | None = None) -> PretrainedConfig:
        """The transformers config of this family (GPT2Config, GPTNeoXConfig or LlamaConfig)."""
        from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

        vocab = vocab_size or self.vocab_size
        rate = self.dropout_rate if dropout_rate is None else dropout_rate
        common = dict(
            vocab_size=vocab, bos_token_id=EOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
            tie_word_embeddings=self.tied,
        )  # fmt: skip
        if self.family == "gpt2":
            config = GPT2Config(
                n_positions=self.max_positions, n_embd=self.d_model, n_layer=self.num_layers,
                n_head=self.num_heads, n_inner=self.d_ff, activation_function="gelu_new",
                resid_pdrop=rate, embd_pdrop=rate, attn_pdrop=rate, **common,
            )  # fmt: skip
        elif self.family == "gpt_neox":  # Pythia: parallel residual, rotary on 25% of each head
            config = GPTNeoXConfig(
                hidden_size=self.d_model, num_hidden_layers=self.num_layers,
                num_attention_heads=self.num_heads, intermediate_size=self.d_ff, hidden_act="gelu",
                max_position_embeddings=self.max_positions, rotary_pct=0.25, rotary_emb_base=10_000,
                use_parallel_residual=True, hidden_dropout=rate, attention_dropout=rate, **common,
            )  # fmt: skip
        else:  # llama: RMSNorm, SwiGLU, rotary, no biases
            config = LlamaConfig(
                hidden_size=self.d_model, num_hidden_layers=self.num_layers,
                num_attention_heads=self.num_heads, num_key_value_heads=self.num_heads,
                intermediate_size=self.d_ff, max_position_embeddings=self.max_positions,
                rms_norm_eps=1e-5, attention_dropout=rate, **common,
            )  # fmt: skip
        config.tie_word_embeddings = self.tied
        return config


# App. A: the paper pre-trains T5 v1.0 small; v1.1 and base are the other released shapes
# (t5x gin files); t5-tiny is the CPU pilot's model (research pilot.md).  Decoder-only families:
# GPT-2 small (124M), Pythia-160m (Hu et al. 2025 pre-pretrain it on k-Shuffle Dyck), a ~100M Llama,
# and a tiny model of each family with as many parameters as t5-tiny's 2+2 layers (4 layers, d 128).
MODEL_CONFIGS: dict[str, ModelSpec | CausalSpec] = {
    "t5-small": ModelSpec(512, 64, 2048, 6, 6, 8, "relu", tied=True),
    "t5-base": ModelSpec(768, 64, 3072, 12, 12, 12, "relu", tied=True),
    "t5-v1_1-small": ModelSpec(512, 64, 1024, 8, 8, 6, "gated-gelu", tied=False),
    "t5-v1_1-base": ModelSpec(768, 64, 2048, 12, 12, 12, "gated-gelu", tied=False),
    "t5-tiny": ModelSpec(128, 32, 512, 2, 2, 4, "relu", tied=True, vocab_from_tokens=True),
    "gpt2-tiny": CausalSpec("gpt2", 128, 4, 4, 512, 1024, tied=True, vocab_from_tokens=True),
    "gpt2-small": CausalSpec("gpt2", 768, 12, 12, 3072, 1024, tied=True),
    "pythia-tiny": CausalSpec("gpt_neox", 128, 4, 4, 512, 1024, tied=False, vocab_from_tokens=True),
    "pythia-160m": CausalSpec("gpt_neox", 768, 12, 12, 3072, 2048, tied=False),
    "llama-tiny": CausalSpec("llama", 128, 4, 4, 352, 1024, tied=False, vocab_from_tokens=True),
    # ~100M: 12 layers of d 640 (10 heads of 64, SwiGLU 1,728), T5's 32,128 ids (its tokenizer fits)
    "llama-100m": CausalSpec("llama", 640, 12, 10, 1728, 2048, tied=False, vocab_size=T5_VOCAB_SIZE),
}


def get_spec(name: str) -> ModelSpec | CausalSpec:
    """The named config; a ``UserError`` listing the valid names otherwise."""
    return lookup(MODEL_CONFIGS, name, "model")


def is_causal_name(name: str) -> bool:
    """Whether the named config is a decoder-only model."""
    return isinstance(get_spec(name), CausalSpec)


def is_causal(model: torch.nn.Module) -> bool:
    """Whether ``model`` (a transformers model) is decoder-only: the engine's collation and loss,
    decoding and the init schemes' parameter names follow from it."""
    return not model.config.is_encoder_decoder


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


def is_tied(model: PreTrainedModel) -> bool:
    """Whether the output head shares the token embedding (T5 v1.0, GPT-2)."""
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


def build_model(
    name: str, vocab_size: int | None = None, dropout_rate: float | None = None, seed: int = 0
) -> PreTrainedModel:
    """A freshly initialized named model (its family's own init with ``seed``); the global RNG is left
    untouched."""
    spec = get_spec(name)
    if isinstance(spec, CausalSpec):
        return build_from_config(spec.hf_config(vocab_size, dropout_rate), seed)
    return build_from_config(spec.t5_config(vocab_size, dropout_rate), seed)


def build_from_config(config: PretrainedConfig, seed: int = 0) -> PreTrainedModel:
    """A fresh model of ``config`` (e.g. a checkpoint's); untied when ``tie_word_embeddings`` is False."""
    config = copy.deepcopy(config)  # the model owns its config; the caller's stays untouched
    tied = config.tie_word_embeddings
    if not config.is_encoder_decoder:
        return _build_causal(config, tied, seed)
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


# --- decoder-only families ----------------------------------------------------------------------


def _build_causal(config: PretrainedConfig, tied: bool, seed: int) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]), no_init_weights():  # causal_init below sets every weight
        model = AutoModelForCausalLM.from_config(config)
    model.config.tie_word_embeddings = tied
    if tied:
        model.tie_weights()
    causal_init(model, seed)
    return model


def causal_std(hf_name: str, config: PretrainedConfig) -> float:
    """Each family's own initial std of a weight matrix or embedding (norms: 1, biases: 0).

    GPT-2 (and transformers' GPT2): N(0, 0.02), the residual projections ``c_proj`` 0.02 / sqrt(2 L).
    Pythia (GPT-NeoX's ``small_init`` / ``wang_init``): sqrt(2 / (5 d)), the residual projections
    ``attention.dense`` and ``mlp.dense_4h_to_h`` 2 / (L sqrt(d)).  Llama: N(0, 0.02) everywhere.
    """
    if config.model_type == "gpt2":
        residual = hf_name.endswith("c_proj.weight")
        return 0.02 / math.sqrt(2 * config.n_layer) if residual else 0.02
    if config.model_type == "gpt_neox":
        d, layers = config.hidden_size, config.num_hidden_layers
        residual = hf_name.endswith(("attention.dense.weight", "mlp.dense_4h_to_h.weight"))
        return 2 / (layers * math.sqrt(d)) if residual else math.sqrt(2 / (5 * d))
    return 0.02


def causal_init(model: PreTrainedModel, seed: int) -> None:
    """Re-initialize every parameter in place, deterministically from ``seed`` (in name order): weight
    matrices and embeddings ~ N(0, :func:`causal_std`), norm scales 1, biases 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for hf_name, param in model.named_parameters():
            if hf_name.endswith(".bias"):
                param.zero_()
            elif param.dim() == 1:  # LayerNorm / RMSNorm scales
                param.fill_(1.0)
            else:
                param.normal_(0.0, causal_std(hf_name, model.config), generator=generator)


# Where each family keeps its parameters, in App. K's vocabulary (the decoder stack of T5): the layer
# prefix, the modules of a layer, and the modules outside the layers.  A fused q/k/v projection
# (GPT-2's ``c_attn``, GPT-NeoX's ``query_key_value``) is ``self_attention/qkv``: three views
# (:func:`_qkv_views`).
_CAUSAL_LAYERS = {"gpt2": "transformer.h.", "gpt_neox": "gpt_neox.layers.", "llama": "model.layers."}
_CAUSAL_LAYER_MODULES = {
    "gpt2": {
        "ln_1": "pre_self_attention_layer_norm", "attn.c_attn": "self_attention/qkv",
        "attn.c_proj": "self_attention/out", "ln_2": "pre_mlp_layer_norm", "mlp.c_fc": "mlp/wi",
        "mlp.c_proj": "mlp/wo",
    },
    "gpt_neox": {
        "input_layernorm": "pre_self_attention_layer_norm", "attention.query_key_value": "self_attention/qkv",
        "attention.dense": "self_attention/out", "post_attention_layernorm": "pre_mlp_layer_norm",
        "mlp.dense_h_to_4h": "mlp/wi", "mlp.dense_4h_to_h": "mlp/wo",
    },
    "llama": {
        "input_layernorm": "pre_self_attention_layer_norm", "self_attn.q_proj": "self_attention/query",
        "self_attn.k_proj": "self_attention/key", "self_attn.v_proj": "self_attention/value",
        "self_attn.o_proj": "self_attention/out", "post_attention_layernorm": "pre_mlp_layer_norm",
        "mlp.gate_proj": "mlp/wi_0", "mlp.up_proj": "mlp/wi_1", "mlp.down_proj": "mlp/wo",
    },
}  # fmt: skip
_CAUSAL_OUTSIDE = {
    "gpt2": {
        "transformer.wte": "token_embedder", "transformer.wpe": "decoder/position_embedder",
        "transformer.ln_f": "decoder/decoder_norm", "lm_head": "decoder/logits_dense",
    },
    "gpt_neox": {
        "gpt_neox.embed_in": "token_embedder", "gpt_neox.final_layer_norm": "decoder/decoder_norm",
        "lm_head": "decoder/logits_dense",
    },
    "llama": {
        "model.embed_tokens": "token_embedder", "model.norm": "decoder/decoder_norm",
        "lm_head": "decoder/logits_dense",
    },
}  # fmt: skip


def causal_module_name(family: str, hf_module: str) -> str:
    """The App. K-style module of a decoder-only model's module, e.g. ``transformer.h.3.mlp.c_fc`` ->
    ``decoder/layers_3/mlp/wi``."""
    prefix = _CAUSAL_LAYERS[family]
    if hf_module.startswith(prefix):
        layer, _, inner = hf_module[len(prefix) :].partition(".")
        if inner in _CAUSAL_LAYER_MODULES[family]:
            return f"decoder/layers_{layer}/{_CAUSAL_LAYER_MODULES[family][inner]}"
    elif hf_module in _CAUSAL_OUTSIDE[family]:
        return _CAUSAL_OUTSIDE[family][hf_module]
    raise ValueError(f"not a {family} parameter: {hf_module!r}")


def _leaf(module: str, hf_leaf: str) -> str:
    """``kernel``, ``scale`` (norms), ``embedding`` (embedding tables) or ``bias``."""
    if hf_leaf == "bias":
        return "bias"
    if module.endswith("_norm"):
        return "scale"
    return "embedding" if module.endswith("embedder") else "kernel"


def _qkv_views(family: str, param: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, ...]:
    """Views of the query, key and value parts of a fused projection (writing to a view writes the
    parameter).  GPT-2's ``Conv1D`` weight is [d, 3d] (input rows, outputs q | k | v); GPT-NeoX's
    ``Linear`` weight is [3d, d] with the outputs grouped per head (head 0's q, k, v, then head 1's)."""
    if family == "gpt2":
        return param.chunk(3, dim=-1)
    per_head = param.view(num_heads, 3, -1, *param.shape[1:])
    return tuple(per_head[:, j] for j in range(3))


def _causal_weights(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    family, heads = model.config.model_type, model.config.num_attention_heads
    weights = {}
    for hf_name, param in model.named_parameters():  # a tied head is the embedding, listed once
        hf_module, _, hf_leaf = hf_name.rpartition(".")
        module = causal_module_name(family, hf_module)
        leaf = _leaf(module, hf_leaf)
        if module.endswith("/qkv"):
            stack = module.removesuffix("/qkv")
            for part, view in zip(("query", "key", "value"), _qkv_views(family, param, heads), strict=True):
                weights[f"{stack}/{part}/{leaf}"] = view
        else:
            weights[f"{module}/{leaf}"] = param
    return weights


def named_weights(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """App. K name -> parameter (or view of a fused parameter) of every distinct parameter of a T5 or
    decoder-only model: the names that statistics and init schemes use (a tied head appears once, as
    the embedding)."""
    if is_causal(model):
        return _causal_weights(model)
    params = dict(model.named_parameters())
    return {t5x: params[hf] for hf, t5x in t5x_names(model).items()}


def set_dropout(model: PreTrainedModel, rate: float) -> None:
    """Every dropout of the model: the ``nn.Dropout`` layers, the attention-probability rates that
    T5 (``dropout``), GPT-NeoX and Llama (``attention_dropout``) keep as float attributes, and the
    config's fields (so that config.json says the rate the model trained with)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate
        for attribute in ("dropout", "attention_dropout"):
            if isinstance(getattr(module, attribute, None), float):
                setattr(module, attribute, rate)
    fields = {
        "t5": ("dropout_rate",),
        "gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop"),
        "gpt_neox": ("hidden_dropout", "attention_dropout"),
        "llama": ("attention_dropout",),
    }[model.config.model_type]
    for name in fields:
        setattr(model.config, name, rate)


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
    pre-self- and pre-cross-attention norms), pre_mlp_norm, final_norm, relpos, position_embedding
    (GPT-2's absolute table), token_embedding, logits.  A ``.../bias`` name has its kernel's or norm's
    kind and ``is_bias``.
    ``block``: attention, self_attention, encoder_decoder_attention, mlp, or None outside the layers.
    """

    stack: str | None
    layer: int | None
    block: str | None
    kind: str
    is_bias: bool = False  # the bias of that kernel or norm (GPT-2, Pythia); T5 and Llama have none

    @property
    def is_norm(self) -> bool:
        """A norm's scale (not its bias)."""
        return self.kind.endswith("_norm") and not self.is_bias


_LAYER_PATTERN = re.compile(r"(encoder|decoder)/layers_(\d+)/([a-z_]+?)(_layer_norm)?/(\w+)(?:/kernel)?")
_NORM_KINDS = {
    "pre_attention": ("attention", "pre_attention_norm"),
    "pre_self_attention": ("self_attention", "pre_attention_norm"),
    "pre_cross_attention": ("encoder_decoder_attention", "pre_attention_norm"),
    "pre_mlp": ("mlp", "pre_mlp_norm"),
}


def param_info(name: str) -> ParamInfo:
    """Stack, layer index, block and TYPE of an App. K name."""
    if name.endswith("/bias"):
        base = name.removesuffix("/bias")
        leaf = "/scale" if base.endswith("_norm") else "/kernel"
        return dataclasses.replace(param_info(base + leaf), is_bias=True)
    if name == "token_embedder/embedding":
        return ParamInfo(None, None, None, "token_embedding")
    stack, _, rest = name.partition("/")
    if rest == "logits_dense/kernel":
        return ParamInfo(stack, None, None, "logits")
    if rest == "relpos_bias/rel_embedding":
        return ParamInfo(stack, None, None, "relpos")
    if rest == "position_embedder/embedding":
        return ParamInfo(stack, None, None, "position_embedding")
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


def save_checkpoint(model: PreTrainedModel, directory: str | Path) -> Path:
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


def model_class(path: Path) -> type[PreTrainedModel]:
    """``T5ForConditionalGeneration`` for a T5 folder, transformers' causal-LM class for a decoder-only
    one (its config.json's ``model_type``: gpt2, gpt_neox, llama); ``UserError`` for another type."""
    from transformers import AutoModelForCausalLM

    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise UserError(f"cannot load checkpoint {str(path)!r}: config.json unreadable ({error})") from None
    if model_type == "t5":
        return T5ForConditionalGeneration
    if model_type in _CAUSAL_LAYERS:
        return AutoModelForCausalLM
    raise UserError(
        f"checkpoint {str(path)!r} is a {model_type!r} model; synthpre trains t5, "
        f"{', '.join(_CAUSAL_LAYERS)} (`synthpre models`)"
    )


def load_model(directory: str | Path) -> PreTrainedModel:
    """Load a checkpoint folder (safetensors only, checksums verified); an untied head stays untied."""
    from safetensors import SafetensorError

    path = check_checkpoint(directory)
    cls = model_class(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # silence "will NOT tie" for untied heads: that is what we want
    try:
        model = cls.from_pretrained(str(path), use_safetensors=True)
    except SafetensorError as error:
        raise UserError(
            f"cannot load checkpoint {str(path)!r}: damaged safetensors weights ({error})"
        ) from error
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load checkpoint {str(path)!r}: {error}") from error
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.tie_word_embeddings = is_tied(model)
    if model.config.is_encoder_decoder and model.config.decoder_start_token_id is None:
        model.config.decoder_start_token_id = DECODER_START_ID
    return model


def model_summary(name: str) -> dict:
    """One row of ``synthpre models``: the config and its exact parameter count at the default vocabulary."""
    spec = get_spec(name)
    return {"name": name, **asdict(spec), "parameters": exact_parameter_count(spec)}


def exact_parameter_count(spec: ModelSpec | CausalSpec, vocab_size: int | None = None) -> int:
    """Parameter count from the shape alone; equals ``count_parameters(build_model(...))``."""
    vocab = vocab_size or spec.vocab_size
    if isinstance(spec, CausalSpec):
        return _causal_parameter_count(spec, vocab)
    d, inner = spec.d_model, spec.num_heads * spec.d_kv
    attention = 4 * d * inner
    mlp = (3 if spec.feed_forward_proj.startswith("gated") else 2) * d * spec.d_ff
    relpos = spec.relative_attention_num_buckets * spec.num_heads
    encoder = spec.num_layers * (attention + mlp + 2 * d) + relpos + d
    decoder = spec.num_decoder_layers * (2 * attention + mlp + 3 * d) + relpos + d
    head = 0 if spec.tied else vocab * d
    return vocab * d + encoder + decoder + head


def _causal_parameter_count(spec: CausalSpec, vocab: int) -> int:
    d, d_ff, layers = spec.d_model, spec.d_ff, spec.num_layers
    head = 0 if spec.tied else vocab * d
    if spec.family == "llama":  # no biases; RMSNorm scales only; gate, up and down projections
        return vocab * d + layers * (4 * d * d + 3 * d * d_ff + 2 * d) + d + head
    # GPT-2 and GPT-NeoX: biases everywhere, LayerNorm scale and bias; GPT-2 adds a position table
    attention = 4 * d * d + 4 * d
    mlp = 2 * d * d_ff + d_ff + d
    positions = spec.max_positions * d if spec.family == "gpt2" else 0
    return vocab * d + positions + layers * (attention + mlp + 4 * d) + 2 * d + head
