"""Named T5 configs: exact parameter counts, T5 init, App. K names, checkpoints (issue 4, Models)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from transformers import T5ForConditionalGeneration

from synthpre.errors import UserError
from synthpre.model import (
    MODEL_CONFIGS,
    build_model,
    count_parameters,
    exact_parameter_count,
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
}


@pytest.fixture(scope="module")
def models() -> dict[str, T5ForConditionalGeneration]:
    torch.set_num_threads(2)
    return {name: build_model(name) for name in MODEL_CONFIGS}


def random_tokens_loss(model: T5ForConditionalGeneration, seed: int = 0) -> float:
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(2, vocab, (4, 32), generator=generator)
    labels = torch.randint(2, vocab, (4, 16), generator=generator)
    model.eval()
    with torch.no_grad():
        return model(input_ids=inputs, labels=labels).loss.item()


def test_every_named_config_has_its_exact_parameter_count(models):
    assert set(EXPECTED_PARAMETERS) == set(MODEL_CONFIGS)
    for name, model in models.items():
        assert count_parameters(model) == EXPECTED_PARAMETERS[name], name
        assert exact_parameter_count(MODEL_CONFIGS[name]) == EXPECTED_PARAMETERS[name], name
        assert is_tied(model) == MODEL_CONFIGS[name].tied
        assert model.config.decoder_start_token_id == 0
        assert (model.config.pad_token_id, model.config.eos_token_id) == (0, 1)


def test_tiny_model_at_the_pilot_vocabulary():
    model = build_model("t5-tiny", vocab_size=128)
    assert count_parameters(model) == 935_680
    assert exact_parameter_count(MODEL_CONFIGS["t5-tiny"], 128) == 935_680


def test_every_named_config_starts_near_a_uniform_prediction(models):
    """T5's init, not transformers' std-1.0 lm_head (initial loss ~100 for v1.1)."""
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


def test_same_seed_same_weights_other_seed_other_weights():
    first, again, other = (build_model("t5-tiny", vocab_size=256, seed=s) for s in (3, 3, 4))
    again_state, other_state = again.state_dict(), other.state_dict()
    for name, weight in first.state_dict().items():
        assert torch.equal(weight, again_state[name]), name
        if not name.endswith("layer_norm.weight"):
            assert not torch.equal(weight, other_state[name]), name


def test_build_model_leaves_the_global_rng_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    build_model("t5-tiny", vocab_size=64)
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


def test_vocab_size_for_a_token_space():
    assert vocab_size_for(TokenSpace(2, 127)) == 232  # ids up to 227, rounded up to a multiple of 8
    assert vocab_size_for(TokenSpace()) == 32104
