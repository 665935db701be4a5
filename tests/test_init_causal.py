"""Init schemes, the pre-attention LN value, statistics and Figure 6 on decoder-only models (GPT-2,
Pythia, Llama): the groupings of tests/test_init.py with biases and fused q/k/v."""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.downstream.config import FinetuneConfig
from synthpre.downstream.finetune import initial_model
from synthpre.errors import UserError
from synthpre.init import (
    SCHEMES,
    InitConfig,
    ParamStats,
    apply_scheme,
    initialize,
    named_weights,
    parameter_stats,
    plot_figure6,
    pre_attention_norm_means,
    set_pre_attention_norms,
)
from synthpre.model import build_model, is_tied, load_model, param_info, save_checkpoint
from synthpre.tokenizer import CharTokenizer
from test_init import check_scheme_result, clone, fresh_tiny, pretend_pretrained

VOCAB = 256
MODELS = ("gpt2-tiny", "pythia-tiny", "llama-tiny")
ROTARY = ("pythia-tiny", "llama-tiny")  # no position table: the relpos schemes cover nothing
QKV_SCALES = {"query": 30.0, "key": 1.0, "value": 1 / 30}  # q, k, v statistics far apart


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test on one thread (tests/conftest.py)."""


def fresh(model: str, seed: int = 0) -> torch.nn.Module:
    return build_model(model, vocab_size=VOCAB, seed=seed)


def pretend_pretrained_causal(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``pretend_pretrained`` with biases (zero when fresh) drawn first, then q, k and v rescaled apart."""
    generator = torch.Generator().manual_seed(seed)
    weights = named_weights(model)
    with torch.no_grad():
        for name, weight in weights.items():
            if param_info(name).is_bias:
                weight.normal_(0.0, 0.05, generator=generator)
        pretend_pretrained(model, seed)
        for name, weight in weights.items():
            weight.mul_(QKV_SCALES.get(param_info(name).kind, 1.0))
    return model


@pytest.fixture(scope="module")
def sources() -> dict[str, torch.nn.Module]:
    return {model: pretend_pretrained_causal(fresh(model, seed=7), seed=11) for model in MODELS}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme(scheme, model, sources):
    target = fresh(model, seed=3)
    fresh_weights = clone(target)
    if scheme.startswith("relpos") and model in ROTARY:
        with pytest.raises(UserError, match=r"no parameter of this (gpt_neox|llama) model.*TYPEs: token_emb"):
            apply_scheme(target, sources[model], scheme, seed=3)
        return
    groups = apply_scheme(target, sources[model], scheme, seed=3)
    assert groups, scheme
    check_scheme_result(target, fresh_weights, clone(sources[model]), scheme, groups)
    for group in groups:  # biases never pool with kernels or norm scales
        assert len({param_info(name).is_bias for name in group.names}) == 1 or group.mode == "copy"


def test_groupings_per_architecture(sources):
    def groups(model: str, scheme: str) -> dict[str, tuple[str, ...]]:
        return {g.label: g.names for g in SCHEMES[scheme].groups(list(named_weights(sources[model])))}

    across = groups("gpt2-tiny", "across_layers_scale")
    assert len(across["type/query"]) == len(across["type/query_bias"]) == 4
    assert len(across["type/pre_attention_norm_bias"]) == 4 and across["type/position_embedding"]
    assert "type/query_bias" not in groups("llama-tiny", "across_layers_scale")
    per_layer = groups("pythia-tiny", "per_layer_scale")
    assert {label for label in per_layer if "layers_" in label} == {
        f"decoder/layers_{i}/{part}" for i in range(4) for part in ("weights", "norms", "biases")
    }
    assert len(per_layer["decoder/layers_2/weights"]) == 6  # q, k, v (views of one tensor), o, wi, wo
    assert len(per_layer["decoder/layers_2/norms"]) == 2 and len(per_layer["decoder/layers_2/biases"]) == 8
    assert {label for label in groups("llama-tiny", "per_layer_scale") if "layers_0" in label} == {
        "decoder/layers_0/weights",
        "decoder/layers_0/norms",
    }
    sizes = {label: len(names) for label, names in groups("gpt2-tiny", "whole_model_scale").items()}
    assert sizes == {"model/weights": 24, "model/norms": 9, "model/biases": 33, "model/position_embedding": 1}
    sizes = {label: len(names) for label, names in groups("llama-tiny", "whole_model_scale").items()}
    assert sizes == {"model/weights": 4 * 7 + 1, "model/norms": 9}  # the untied head is a weight
    pre_attn = [n for names in groups("gpt2-tiny", "pre_attn_ln_scale").values() for n in names]
    assert "decoder/layers_0/pre_self_attention_layer_norm/bias" in pre_attn and len(pre_attn) == 8
    assert list(groups("gpt2-tiny", "relpos_mean_sd")) == ["decoder/position_embedder/embedding"]


def _fused_parts(model: torch.nn.Module, layer: int) -> dict[str, torch.Tensor]:
    """The query, key and value parts of a layer's fused kernel, read from the HF parameter itself."""
    if model.config.model_type == "gpt2":  # Conv1D [d, 3d]: the columns are q | k | v
        fused = model.transformer.h[layer].attn.c_attn.weight
        return dict(zip(QKV_SCALES, fused.chunk(3, dim=1), strict=True))
    fused = model.gpt_neox.layers[layer].attention.query_key_value.weight  # [heads * (q k v) * head_dim, d]
    per_head = fused.view(model.config.num_attention_heads, 3, -1, fused.shape[1])
    return {part: per_head[:, j] for j, part in enumerate(QKV_SCALES)}


@pytest.mark.parametrize("model", ["gpt2-tiny", "pythia-tiny"])
def test_fused_qkv_drawn_per_view(model, sources):
    """q, k, v of one fused tensor each get their own statistics, written into the tensor's own layout."""
    target = fresh(model, seed=3)
    apply_scheme(target, sources[model], "attention_mean_sd", seed=3)
    for layer in range(4):
        got, want = _fused_parts(target, layer), _fused_parts(sources[model], layer)
        for part in QKV_SCALES:
            count = got[part].numel()
            assert got[part].std().item() == pytest.approx(want[part].std().item(), rel=5 / math.sqrt(count))
        assert got["query"].std() > 10 * got["key"].std() > 100 * got["value"].std()


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny"])
def test_full_with_fresh_embeddings(model, sources):
    target = fresh(model, seed=5)
    embedding = target.get_input_embeddings().weight.detach().clone()
    apply_scheme(target, sources[model], "full", seed=5, fresh_embeddings=True)
    assert torch.equal(target.get_input_embeddings().weight, embedding)
    assert is_tied(target) == (model == "gpt2-tiny")  # GPT-2's tied head stays the (fresh) embedding
    weights = named_weights(target)
    for name, weight in named_weights(sources[model]).items():
        if name != "token_embedder/embedding":
            assert torch.equal(weights[name], weight), name


def test_pre_attention_norm_value_sets_scales_only():
    model = fresh("gpt2-tiny", seed=1)
    fresh_weights = clone(model)
    names = set_pre_attention_norms(model, 0.2)
    assert names == [f"decoder/layers_{i}/pre_self_attention_layer_norm/scale" for i in range(4)]
    assert all(torch.all(model.transformer.h[i].ln_1.weight == 0.2) for i in range(4))
    for name, weight in named_weights(model).items():
        if name not in names:
            assert torch.equal(weight, fresh_weights[name]), name  # the norms' biases too
    built = initialize(InitConfig(seed=1, model="llama-tiny", vocab_size=VOCAB, pre_attn_ln_value=0.05))
    assert all(layer.input_layernorm.weight.eq(0.05).all() for layer in built.model.layers)
    assert built.model.layers[0].post_attention_layernorm.weight.eq(1.0).all()


def _png_height(path) -> int:
    return struct.unpack(">II", path.read_bytes()[16:24])[1]


def test_figure6_panels(sources, tmp_path):
    gpt2 = parameter_stats(sources["gpt2-tiny"])
    points = pre_attention_norm_means(gpt2, "decoder", "self_attention")
    assert [layer for layer, _ in points] == [0, 1, 2, 3]
    assert points[0][1] == pytest.approx(
        sources["gpt2-tiny"].transformer.h[0].ln_1.weight.double().mean().item()
    )
    assert pre_attention_norm_means(gpt2, "encoder", "attention") == []
    one = plot_figure6({"GPT-2": gpt2, "Llama": parameter_stats(sources["llama-tiny"])}, tmp_path / "one.png")
    mixed = plot_figure6({"T5": parameter_stats(fresh_tiny()), "GPT-2": gpt2}, tmp_path / "mixed.png")
    assert (_png_height(one), _png_height(mixed)) == (480, 960)  # 1 panel, 3 panels (figsize 6 x 2+2n)
    with pytest.raises(UserError, match="none of the models"):
        plot_figure6({"nothing": {}}, tmp_path / "none.png")


def test_cli_stats_on_a_gpt2_checkpoint(sources, tmp_path):
    save_checkpoint(sources["gpt2-tiny"], tmp_path / "gpt2")
    plot, out = tmp_path / "fig6.png", tmp_path / "s.json"
    args = ["stats", str(tmp_path / "gpt2"), "--random-init", "--plot", str(plot), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 10_000 and _png_height(plot) == 480
    report = json.loads(out.read_text())
    assert list(report) == ["Random Init", "gpt2"]
    assert report["Random Init"]["params"]["decoder/layers_0/pre_self_attention_layer_norm/bias"]["sd"] == 0.0
    groups = report["gpt2"]["groups"]
    assert {"type/query_bias", "decoder/layers_3/biases", "model/biases", "model/position_embedding"} <= set(
        groups
    )
    queries = [w for n, w in named_weights(sources["gpt2-tiny"]).items() if n.endswith("query/kernel")]
    expected = ParamStats.of(torch.cat([q.flatten() for q in queries]))
    assert groups["type/query"]["sd"] == pytest.approx(expected.sd)
    assert "type/query_bias" in result.output


def test_cli_init_on_a_llama_checkpoint(sources, tmp_path):
    runner = CliRunner()
    save_checkpoint(sources["llama-tiny"], tmp_path / "llama")
    args = ["init", "--from", str(tmp_path / "llama"), "--seed", "2", "--out"]
    result = runner.invoke(app, [*args, str(tmp_path / "out"), "--scheme", "per_param_mean_sd"])
    assert result.exit_code == 0, result.output
    reloaded = load_model(tmp_path / "out")
    assert reloaded.config.model_type == "llama" and not is_tied(reloaded)
    expected = initialize(InitConfig(seed=2, scheme="per_param_mean_sd", source=str(tmp_path / "llama")))
    for name, weight in named_weights(reloaded).items():
        assert torch.equal(weight, named_weights(expected)[name]), name
    result = runner.invoke(app, [*args, str(tmp_path / "rotary"), "--scheme", "relpos_scale"])
    assert isinstance(result.exception, UserError), result.output
    assert "covers no parameter of this llama model" in str(result.exception)
    assert not (tmp_path / "rotary").exists()
    finetune = FinetuneConfig(
        task="smiles_canonicalize", out_dir=str(tmp_path / "ft"), model="llama-tiny",
        init_from=str(tmp_path / "llama"), init_scheme="relpos_mean_sd",
    )  # fmt: skip
    with pytest.raises(UserError, match="covers no parameter of this llama model"):
        initial_model(finetune, CharTokenizer.from_texts(["CCO"]))
