"""Named configs, T5 and decoder-only: exact parameter counts, each family's init, App. K names,
checkpoints (issue 4, Models)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, T5ForConditionalGeneration

from synthpre.errors import UserError
from synthpre.model import (
    MODEL_CONFIGS,
    build_model,
    causal_std,
    count_parameters,
    exact_parameter_count,
    is_causal,
    is_causal_name,
    is_tied,
    load_model,
    param_info,
    save_checkpoint,
    t5x_names,
    vocab_size_for,
)
from synthpre.tokens import TokenSpace

APPENDIX = Path("/work/shared/paper-appendix.txt")

# Counts verified against transformers 4.57 (which builds v1.1 untied natively), research offline.md 2.
EXPECTED_PARAMETERS = {
    "t5-small": 60_506_624,
    "t5-base": 222_903_552,
    "t5-v1_1-small": 76_961_152,
    "t5-v1_1-base": 247_577_856,
    "t5-tiny": 5_031_680,
    # Decoder-only, at 50,304 ids (GPT-2's 50,257 rounded up to 64; llama-100m: T5's 32,128).  GPT-2
    # small at its own 50,257 ids has 124,439,808 (47 rows of 768 fewer); Pythia-160m is exactly this.
    "gpt2-tiny": 7_363_328,
    "gpt2-small": 124_475_904,
    "pythia-tiny": 13_671_168,
    "pythia-160m": 162_322_944,
    "llama-tiny": 13_681_792,
    "llama-100m": 100_613_760,
}
TIED = {"t5-small", "t5-base", "t5-tiny", "gpt2-tiny", "gpt2-small"}  # T5 v1.0 and GPT-2
TINY_CAUSAL = ("gpt2-tiny", "pythia-tiny", "llama-tiny")


@pytest.fixture(scope="module")
def models() -> dict[str, PreTrainedModel]:
    torch.set_num_threads(2)
    return {name: build_model(name) for name in MODEL_CONFIGS}


def random_tokens_loss(model: PreTrainedModel, seed: int = 0) -> float:
    """Loss on random tokens: T5 maps 32 to 16 of them, a decoder-only model predicts each of 16 from
    the ones before it."""
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    if is_causal(model):
        inputs = labels = torch.randint(2, vocab, (4, 16), generator=generator)
    else:
        inputs = torch.randint(2, vocab, (4, 32), generator=generator)
        labels = torch.randint(2, vocab, (4, 16), generator=generator)
    model.eval()
    with torch.no_grad():
        return model(input_ids=inputs, labels=labels).loss.item()


def test_every_named_config_has_its_exact_parameter_count(models):
    assert set(EXPECTED_PARAMETERS) == set(MODEL_CONFIGS)
    assert {name for name, model in models.items() if is_tied(model)} == TIED
    for name, model in models.items():
        assert count_parameters(model) == EXPECTED_PARAMETERS[name], name
        assert exact_parameter_count(MODEL_CONFIGS[name]) == EXPECTED_PARAMETERS[name], name
        assert is_tied(model) == MODEL_CONFIGS[name].tied
        assert is_causal(model) == is_causal_name(name) == (not name.startswith("t5"))
        assert (model.config.pad_token_id, model.config.eos_token_id) == (0, 1)
        if is_causal(model):  # EOS also starts a sequence, as GPT-2's <|endoftext|>
            assert model.config.bos_token_id == 1
        else:
            assert model.config.decoder_start_token_id == 0


def test_tiny_models_at_the_pilot_vocabulary():
    """At 128 ids the tiny models of both architectures have about as many parameters."""
    expected = {"t5-tiny": 935_680, "gpt2-tiny": 940_800, "pythia-tiny": 826_112, "llama-tiny": 836_736}
    for name, count in expected.items():
        assert count_parameters(build_model(name, vocab_size=128)) == count, name
        assert exact_parameter_count(MODEL_CONFIGS[name], 128) == count, name


def test_every_named_config_starts_near_a_uniform_prediction(models):
    """Each family's own init (for T5, not transformers' std-1.0 lm_head: initial loss ~100 for v1.1)."""
    for name, model in models.items():
        loss = random_tokens_loss(model)
        assert abs(loss - math.log(model.config.vocab_size)) < 1.5, (name, loss)


def test_t5_init_statistics(models):
    model = models["t5-v1_1-small"]
    d, d_kv, d_ff = 512, 64, 1024
    expected = {
        "shared": 1.0,
        "encoder.block.0.layer.0.SelfAttention.q": (d * d_kv) ** -0.5,
        "encoder.block.0.layer.0.SelfAttention.k": d**-0.5,
        "decoder.block.3.layer.1.EncDecAttention.o": (6 * d_kv) ** -0.5,
        "decoder.block.3.layer.2.DenseReluDense.wi_1": d**-0.5,
        "decoder.block.3.layer.2.DenseReluDense.wo": d_ff**-0.5,
        "lm_head": d**-0.5,
    }
    params = dict(model.named_parameters())
    for name, std in expected.items():
        weight = params[f"{name}.weight"]
        assert weight.std().item() == pytest.approx(std, rel=0.05), name
        assert abs(weight.mean().item()) < 0.05 * std, name
    assert torch.all(params["decoder.final_layer_norm.weight"] == 1.0)


# Each family's own initial std of a few weights, written out (GPT-2: N(0, 0.02), residual projections
# 0.02 / sqrt(2 L); Pythia: small_init sqrt(2 / (5 d)), wang_init 2 / (L sqrt(d)) on attention.dense and
# mlp.dense_4h_to_h; Llama: N(0, 0.02)), on the ~100M models (L = 12; d = 768, 768, 640).
CAUSAL_STDS = {
    "gpt2-small": {
        "transformer.wte": 0.02, "transformer.wpe": 0.02, "transformer.h.0.attn.c_attn": 0.02,
        "transformer.h.0.mlp.c_fc": 0.02, "transformer.h.11.attn.c_proj": 0.02 / math.sqrt(24),
        "transformer.h.5.mlp.c_proj": 0.02 / math.sqrt(24),
    },
    "pythia-160m": {
        "gpt_neox.embed_in": math.sqrt(2 / (5 * 768)), "lm_head": math.sqrt(2 / (5 * 768)),
        "gpt_neox.layers.0.attention.query_key_value": math.sqrt(2 / (5 * 768)),
        "gpt_neox.layers.7.mlp.dense_h_to_4h": math.sqrt(2 / (5 * 768)),
        "gpt_neox.layers.0.attention.dense": 2 / (12 * math.sqrt(768)),
        "gpt_neox.layers.11.mlp.dense_4h_to_h": 2 / (12 * math.sqrt(768)),
    },
    "llama-100m": {
        "model.embed_tokens": 0.02, "lm_head": 0.02, "model.layers.0.self_attn.q_proj": 0.02,
        "model.layers.11.self_attn.o_proj": 0.02, "model.layers.3.mlp.down_proj": 0.02,
    },
}  # fmt: skip


def test_causal_init_statistics_per_family(models):
    for name, stds in CAUSAL_STDS.items():
        params = dict(models[name].named_parameters())
        for module, std in stds.items():
            weight = params[f"{module}.weight"]
            assert causal_std(f"{module}.weight", models[name].config) == pytest.approx(std), (name, module)
            assert weight.std().item() == pytest.approx(std, rel=0.05), (name, module)
            assert abs(weight.mean().item()) < 0.05 * std, (name, module)
    for name in (*TINY_CAUSAL, *CAUSAL_STDS):
        params = dict(models[name].named_parameters())
        biases = [p for n, p in params.items() if n.endswith(".bias")]
        norms = [p for n, p in params.items() if p.dim() == 1 and not n.endswith(".bias")]
        assert bool(biases) == (not name.startswith("llama")), name  # Llama has no biases
        assert norms and all(torch.all(p == 1.0) for p in norms), name
        assert all(torch.all(p == 0.0) for p in biases), name


@pytest.mark.parametrize("name", TINY_CAUSAL)
def test_rotary_frequencies_are_transformers_own(name):
    """build_model skips transformers' init: the buffers it computes (rotary frequencies) stay right."""
    model = build_model(name, vocab_size=64)
    plain = dict(AutoModelForCausalLM.from_config(model.config).named_buffers())
    assert all(torch.equal(buffer, plain[key]) for key, buffer in model.named_buffers())
    assert {key for key, _ in model.named_buffers()} == set(plain)


@pytest.mark.parametrize("name", ["t5-tiny", *TINY_CAUSAL])
def test_same_seed_same_weights_other_seed_other_weights(name):
    first, again, other = (build_model(name, vocab_size=256, seed=s) for s in (3, 3, 4))
    again_state, other_state = again.state_dict(), other.state_dict()
    for key, weight in first.state_dict().items():
        assert torch.equal(weight, again_state[key]), key
        if weight.dim() > 1:  # norms are 1 and biases 0 whatever the seed
            assert not torch.equal(weight, other_state[key]), key


@pytest.mark.parametrize("name", ["t5-tiny", *TINY_CAUSAL])
def test_build_model_leaves_the_global_rng_alone(name):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    build_model(name, vocab_size=64)
    assert torch.equal(torch.rand(3), expected)


def test_untied_head_survives_save_and_plain_transformers_load(tmp_path):
    model = build_model("t5-v1_1-small", vocab_size=256, seed=1)
    save_checkpoint(model, tmp_path / "a")
    assert (tmp_path / "a" / "model.safetensors").is_file()
    loaded = load_model(tmp_path / "a")
    save_checkpoint(loaded, tmp_path / "b")  # a second round trip must not re-tie or rescale
    plain = T5ForConditionalGeneration.from_pretrained(tmp_path / "b")
    for reloaded in (loaded, plain):
        assert count_parameters(reloaded) == count_parameters(model)
        assert not is_tied(reloaded)
        assert reloaded.config.scale_decoder_outputs is False
        assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)
        assert random_tokens_loss(reloaded) == pytest.approx(random_tokens_loss(model), abs=1e-5)


def test_tied_model_round_trip(tmp_path):
    model = build_model("t5-tiny", vocab_size=128, dropout_rate=0.0, seed=2)
    loaded = load_model(save_checkpoint(model, tmp_path))
    assert is_tied(loaded) and loaded.config.scale_decoder_outputs
    assert loaded.config.dropout_rate == 0.0
    assert random_tokens_loss(loaded) == pytest.approx(random_tokens_loss(model), abs=1e-5)


@pytest.mark.parametrize("name", TINY_CAUSAL)
def test_causal_round_trip_keeps_weights_class_and_tying(tmp_path, name):
    model = build_model(name, vocab_size=128, seed=2)
    loaded = load_model(save_checkpoint(model, tmp_path / "a"))
    save_checkpoint(loaded, tmp_path / "b")  # a second round trip must not re-tie or untie
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "b")
    state = model.state_dict()
    for reloaded in (loaded, plain):
        assert type(reloaded) is type(model)
        assert is_tied(reloaded) == MODEL_CONFIGS[name].tied
        assert reloaded.state_dict().keys() == state.keys()
        assert all(torch.equal(weight, state[key]) for key, weight in reloaded.state_dict().items())
        assert random_tokens_loss(reloaded) == random_tokens_loss(model)


def test_a_checkpoint_of_another_model_type_is_a_user_error(tmp_path):
    save_checkpoint(build_model("gpt2-tiny", vocab_size=64), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(UserError, match=r"is a 'bert' model; synthpre trains t5, gpt2, gpt_neox, llama"):
        load_model(tmp_path)


def test_bad_model_name_and_bad_checkpoints(tmp_path):
    with pytest.raises(UserError, match=r"t5-small.*t5-tiny"):
        build_model("t5-smal")
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "missing")
    model = build_model("t5-tiny", vocab_size=64)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"no \.safetensors"):
        load_model(tmp_path)


def appendix_k_names() -> set[str]:
    text = APPENDIX.read_text()
    section = text[text.index("K T5 Small Parameters List") : text.index("Table 9:")]
    return set(re.findall(r"(?:encoder|decoder)/[a-z_0-9/]+", section))


@pytest.mark.skipif(not APPENDIX.exists(), reason="paper appendix not available")
def test_t5_small_names_are_exactly_appendix_k_plus_the_embedding(models):
    listed = appendix_k_names()
    assert len(listed) == 2 + 2 + 6 * 8 + 6 * 13  # relpos x2, final norms x2, encoder and decoder layers
    assert set(t5x_names(models["t5-small"]).values()) == listed | {"token_embedder/embedding"}


def test_param_info_types_and_layers(models):
    info = {name: param_info(name) for name in t5x_names(models["t5-v1_1-small"]).values()}
    assert info["decoder/layers_7/pre_cross_attention_layer_norm/scale"].kind == "pre_attention_norm"
    assert info["decoder/layers_7/pre_cross_attention_layer_norm/scale"].block == "encoder_decoder_attention"
    assert info["encoder/layers_2/attention/query/kernel"].layer == 2
    assert info["decoder/layers_0/mlp/wi_1/kernel"].kind == "mlp_wi"
    assert info["decoder/logits_dense/kernel"].kind == "logits"
    assert info["encoder/relpos_bias/rel_embedding"].kind == "relpos"
    kinds = {i.kind for i in info.values()}
    assert kinds == {
        "token_embedding", "logits", "relpos", "final_norm", "pre_attention_norm", "pre_mlp_norm",
        "query", "key", "value", "out", "mlp_wi", "mlp_wo",
    }  # fmt: skip
    layers = {(i.stack, i.layer) for i in info.values() if i.layer is not None}
    assert layers == {(s, n) for s in ("encoder", "decoder") for n in range(8)}


def test_models_command_lists_both_architectures_with_their_counts():
    from typer.testing import CliRunner

    from synthpre.cli import app

    result = CliRunner().invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    t5_part, causal_part = result.output.split("decoder-only")
    assert "encoder-decoder (T5)" in t5_part and "5,031,680" in t5_part and "gpt2" not in t5_part
    for name in TINY_CAUSAL + tuple(CAUSAL_STDS):
        line = next(line for line in causal_part.splitlines() if f" {name} " in line)
        assert f"{EXPECTED_PARAMETERS[name]:,}" in line and ("untied" in line) != (name in TIED), line
    assert "2,048 (rotary)" in causal_part and "1,024 (learned)" in causal_part


def test_vocab_size_for_a_token_space():
    assert vocab_size_for(TokenSpace(2, 127)) == 232  # ids up to 227, rounded up to a multiple of 8
    assert vocab_size_for(TokenSpace()) == 32104
