"""Parameter statistics, initialization schemes and Figure 6 (issue 5; Sec. 5, App. H)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from synthpre.cli import app
from synthpre.errors import UserError
from synthpre.init import (
    SCHEMES,
    InitConfig,
    ParamStats,
    apply_scheme,
    initialize,
    named_weights,
    parameter_stats,
    pre_attention_norm_means,
    set_pre_attention_norms,
)
from synthpre.model import (
    ModelSpec,
    build_from_config,
    build_model,
    is_tied,
    load_model,
    param_info,
    save_checkpoint,
)

VOCAB = 64
TINY_V11 = ModelSpec(64, 16, 128, 3, 2, 4, "gated-gelu", tied=False)  # untied head, 3+2 layers


def pretend_pretrained(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter its own distinctive statistics, as pre-training does (norms far from 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in named_weights(model).items():
            u = torch.rand(3, generator=generator)
            if param_info(name).is_norm:
                low = 0.1 + 0.5 * u[0].item()
                weight.uniform_(low, low + 0.1 + u[1].item(), generator=generator)
            else:
                sd = weight.std()
                weight.mul_(0.3 + 3 * u[0]).add_((u[1] - 0.5) * sd)
    return model


def fresh_tiny(seed: int = 0, v11: bool = False) -> torch.nn.Module:
    if v11:
        return build_from_config(TINY_V11.t5_config(VOCAB), seed=seed)
    return build_model("t5-tiny", vocab_size=VOCAB, seed=seed)


def clone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: weight.detach().clone() for name, weight in named_weights(model).items()}


def check_scheme_result(produced, fresh: dict, source: dict, scheme: str, groups, source_stats=None) -> None:
    """Statistics of every group match the source's (exactly for constants); the rest is the fresh init."""
    weights = named_weights(produced)
    source_stats = source_stats or {name: ParamStats.of(w) for name, w in source.items()}
    covered = {name for group in groups for name in group.names}
    if scheme != "full":
        assert "token_embedder/embedding" not in covered
    for name in weights.keys() - covered:
        assert torch.equal(weights[name], fresh[name]), (scheme, name)
    for group in groups:
        if group.mode == "copy":
            for name in group.names:
                assert torch.equal(weights[name], source[name]), (scheme, name)
            continue
        want = ParamStats.pooled(source_stats[n] for n in group.names)
        if group.mode == "scale" and param_info(group.names[0]).is_norm:
            constant = torch.tensor(want.mean, dtype=torch.float32)
            assert all(torch.all(weights[n] == constant) for n in group.names), (scheme, group.label)
            continue
        got = ParamStats.pooled(ParamStats.of(weights[n]) for n in group.names)
        mean = want.mean if group.mode == "mean_sd" else 0.0
        assert abs(got.mean - mean) <= 5 * want.sd / math.sqrt(got.count) + 1e-7, (scheme, group.label)
        tolerance = 5 / math.sqrt(2 * got.count) + 1e-6
        assert got.sd == pytest.approx(want.sd, rel=tolerance), (scheme, group.label)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids the pool's overhead on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_source():
    return {v11: pretend_pretrained(fresh_tiny(seed=7, v11=v11), seed=11) for v11 in (False, True)}


@pytest.mark.parametrize("v11", [False, True], ids=["v1.0", "v1.1-untied"])
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme_on_a_tiny_model(scheme, v11, tiny_source):
    source = tiny_source[v11]
    model = fresh_tiny(seed=3, v11=v11)
    fresh = clone(model)
    groups = apply_scheme(model, source, scheme, seed=3)
    assert groups, scheme
    check_scheme_result(model, fresh, clone(source), scheme, groups)
    again = fresh_tiny(seed=3, v11=v11)
    apply_scheme(again, source, scheme, seed=3)
    other = fresh_tiny(seed=4, v11=v11)
    apply_scheme(other, source, scheme, seed=4)
    for name, weight in named_weights(model).items():
        assert torch.equal(weight, named_weights(again)[name]), (scheme, name)
    differs = any(not torch.equal(w, named_weights(other)[n]) for n, w in named_weights(model).items())
    assert differs == (scheme != "full")  # full copies every weight: the seed plays no part


def test_scheme_groupings_follow_the_paper(tiny_source):
    names = list(named_weights(tiny_source[True]))
    across = {g.label: g.names for g in SCHEMES["across_layers_scale"].groups(names)}
    assert len(across["type/query"]) == 3 + 2 * 2  # encoder self; decoder self and cross
    assert len(across["type/pre_attention_norm"]) == 3 + 2 * 2
    assert len(across["type/mlp_wi"]) == 2 * (3 + 2)  # wi_0 and wi_1
    per_layer = {g.label: g for g in SCHEMES["per_layer_scale"].groups(names)}
    assert {label for label in per_layer if "layers_" in label} == {
        f"{stack}/layers_{i}/{part}"
        for stack, layers in (("encoder", 3), ("decoder", 2))
        for i in range(layers)
        for part in ("weights", "norms")
    }
    assert len(per_layer["decoder/layers_1/weights"].names) == 4 + 4 + 3  # self, cross, wi_0 wi_1 wo
    assert len(per_layer["decoder/layers_1/norms"].names) == 3
    whole = {g.label: len(g.names) for g in SCHEMES["whole_model_scale"].groups(names)}
    assert whole == {"model/weights": 3 * 7 + 2 * 11 + 1, "model/norms": 3 * 2 + 2 * 3 + 2, "model/relpos": 2}
    pre_attn = [n for g in SCHEMES["pre_attn_ln_scale"].groups(names) for n in g.names]
    assert "decoder/layers_0/pre_cross_attention_layer_norm/scale" in pre_attn
    assert {g.names[0] for g in SCHEMES["relpos_mean_sd"].groups(names)} == {
        "encoder/relpos_bias/rel_embedding",
        "decoder/relpos_bias/rel_embedding",
    }


def test_full_with_fresh_embeddings(tiny_source):
    source = tiny_source[False]
    model = fresh_tiny(seed=5)
    fresh = clone(model)
    apply_scheme(model, source, "full", seed=5, fresh_embeddings=True)
    weights = named_weights(model)
    assert torch.equal(weights["token_embedder/embedding"], fresh["token_embedder/embedding"])
    assert model.lm_head.weight is model.shared.weight
    for name, weight in named_weights(source).items():
        if name != "token_embedder/embedding":
            assert torch.equal(weights[name], weight), name


def test_statistics_alone_give_the_same_model_as_the_checkpoint(tiny_source, tmp_path):
    source = tiny_source[True]
    save_checkpoint(source, tmp_path / "ckpt")
    runner = CliRunner()
    result = runner.invoke(app, ["stats", str(tmp_path / "ckpt"), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    stats_json = json.loads((tmp_path / "s.json").read_text())["ckpt"]
    from_stats, from_checkpoint = fresh_tiny(seed=2, v11=True), fresh_tiny(seed=2, v11=True)
    apply_scheme(from_stats, stats_json["params"], "per_param_mean_sd", seed=2)
    apply_scheme(from_checkpoint, tmp_path / "ckpt", "per_param_mean_sd", seed=2)
    for name, weight in named_weights(from_stats).items():
        assert torch.equal(weight, named_weights(from_checkpoint)[name]), name
    sd = stats_json["groups"]["type/query"]["sd"]
    queries = [w for n, w in named_weights(source).items() if param_info(n).kind == "query"]
    assert sd == pytest.approx(torch.cat([q.flatten() for q in queries]).double().std(correction=0).item())


def test_pooled_statistics_are_exact():
    generator = torch.Generator().manual_seed(0)
    parts = [
        torch.randn(n, generator=generator) * s + m
        for n, s, m in ((10, 1.0, 0.0), (300, 3.0, 2.0), (7, 0.1, -5))
    ]
    pooled = ParamStats.pooled(ParamStats.of(p) for p in parts)
    direct = ParamStats.of(torch.cat(parts))
    assert pooled.count == direct.count == 317
    for field in ("mean", "sd", "min", "max"):
        assert getattr(pooled, field) == pytest.approx(getattr(direct, field), rel=1e-9), field


def test_pre_attention_norm_value_and_figure6_points():
    model = fresh_tiny(seed=1, v11=True)
    fresh = clone(model)
    names = set_pre_attention_norms(model, 0.2)
    assert len(names) == 3 + 2 + 2
    stats = parameter_stats(model)
    encoder = pre_attention_norm_means(stats, "encoder", "attention")
    assert encoder == [(0, pytest.approx(0.2)), (1, pytest.approx(0.2)), (2, pytest.approx(0.2))]
    cross = pre_attention_norm_means(stats, "decoder", "encoder_decoder_attention")
    assert [layer for layer, _ in cross] == [0, 1]
    for name, weight in named_weights(model).items():
        if name not in names:
            assert torch.equal(weight, fresh[name]), name


def test_t5_small_schemes(tmp_path):
    """Every scheme on the paper's model (its 6+6 layers; a small vocabulary keeps it fast)."""
    source = pretend_pretrained(build_model("t5-small", vocab_size=128, seed=1), seed=2)
    source_weights = clone(source)
    save_checkpoint(source, tmp_path)
    stats = parameter_stats(tmp_path)
    assert stats == parameter_stats(source)
    model = build_model("t5-small", vocab_size=128, seed=0)
    fresh = clone(model)
    for scheme in SCHEMES:
        with torch.no_grad():
            for name, weight in named_weights(model).items():
                weight.copy_(fresh[name])
        groups = apply_scheme(model, source if scheme == "full" else stats, scheme, seed=0)
        check_scheme_result(model, fresh, source_weights, scheme, groups, stats)


def test_initialize_targets_and_errors(tiny_source, tmp_path):
    save_checkpoint(tiny_source[False], tmp_path / "tiny")
    model = initialize(InitConfig(seed=1, scheme="per_layer_scale", source=str(tmp_path / "tiny")))
    assert model.config.num_layers == 2 and model.config.vocab_size == VOCAB
    save_checkpoint(tiny_source[True], tmp_path / "v11")
    v11 = str(tmp_path / "v11")
    untied = initialize(InitConfig(seed=1, scheme="norms_scale", source=v11, vocab_size=2 * VOCAB))
    assert not is_tied(untied) and untied.config.num_layers == 3 and untied.lm_head.weight.shape == (128, 64)
    norm = untied.decoder.final_layer_norm.weight
    expected = tiny_source[True].decoder.final_layer_norm.weight.double().mean().item()
    assert torch.all(norm == norm[0]) and norm[0].item() == pytest.approx(expected)
    ln = initialize(InitConfig(seed=1, model="t5-tiny", vocab_size=VOCAB, pre_attn_ln_value=0.05))
    assert ln.encoder.block[1].layer[0].layer_norm.weight.eq(0.05).all()
    with pytest.raises(UserError, match=r"unknown init scheme 'per_param_mean'.*per_param_mean_sd"):
        initialize(InitConfig(scheme="per_param_mean", source=str(tmp_path / "tiny")))
    with pytest.raises(
        UserError, match=r"parameters differ.*mlp/wi/kernel: target \(1024, 128\) vs source \(512, 128\)"
    ):
        apply_scheme(
            build_from_config(ModelSpec(128, 32, 1024, 2, 2, 4, "relu", tied=True).t5_config(VOCAB)),
            tmp_path / "tiny",
            "per_param_scale",
            seed=0,
        )
    with pytest.raises(UserError, match="missing in the source"):
        apply_scheme(fresh_tiny(v11=True), tmp_path / "tiny", "mlp_scale", seed=0)
    deeper = pretend_pretrained(build_model("t5-tiny", vocab_size=VOCAB), seed=0)
    deeper_config = ModelSpec(128, 32, 512, 3, 2, 4, "relu", tied=True).t5_config(VOCAB)
    with pytest.raises(UserError, match="encoder/layers_2/attention/query/kernel: missing in the target"):
        apply_scheme(deeper, build_from_config(deeper_config), "relpos_mean_sd", seed=0)
    other_vocab = build_from_config(TINY_V11.t5_config(2 * VOCAB))
    apply_scheme(other_vocab, tiny_source[True], "per_param_scale", seed=0)  # head SD transfers
    assert other_vocab.lm_head.weight.std().item() == pytest.approx(
        tiny_source[True].lm_head.weight.std().item(), rel=0.05
    )
    with pytest.raises(UserError, match=r"logits_dense/kernel: target \(128, 64\) vs source \(64, 64\)"):
        apply_scheme(other_vocab, tiny_source[True], "full", seed=0)
    with pytest.raises(UserError, match="does not exist"):
        apply_scheme(fresh_tiny(), tmp_path / "nowhere", "per_param_scale", seed=0)
    with pytest.raises(UserError, match="copies weights"):
        apply_scheme(fresh_tiny(), parameter_stats(tiny_source[False]), "full", seed=0)


def test_cli_init_stats_and_figure6(tiny_source, tmp_path):
    runner = CliRunner()
    save_checkpoint(tiny_source[False], tmp_path / "set")
    out = tmp_path / "init"
    args = ["init", "--from", str(tmp_path / "set"), "--scheme", "across_layers_scale", "--seed", "3"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "init_config.json").read_text())["scheme"] == "across_layers_scale"
    reloaded = load_model(out)
    expected = initialize(InitConfig(seed=3, scheme="across_layers_scale", source=str(tmp_path / "set")))
    for name, weight in named_weights(reloaded).items():
        assert torch.equal(weight, named_weights(expected)[name]), name
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert isinstance(result.exception, UserError) and "not empty" in str(result.exception)
    plot = tmp_path / "fig6.png"
    stats_args = ["stats", str(tmp_path / "set"), str(out), "--label", "Set", "--label", "Stats init"]
    result = runner.invoke(
        app, [*stats_args, "--random-init", "--plot", str(plot), "--out", str(tmp_path / "s.json")]
    )
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 10_000
    report = json.loads((tmp_path / "s.json").read_text())
    assert list(report) == ["Random Init", "Set", "Stats init"]
    name = "encoder/layers_0/pre_attention_layer_norm/scale"
    assert report["Random Init"]["params"][name]["mean"] == 1.0
    made, pooled = report["Stats init"]["params"][name], report["Set"]["groups"]["type/pre_attention_norm"]
    assert made["mean"] == pytest.approx(pooled["mean"]) and made["sd"] == 0.0
    result = runner.invoke(app, ["models"])
    assert "60,506,624" in result.output and "76,961,152" in result.output


def test_bad_input_exits_2_with_a_message(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"pickle")
    init = ["init", "--from", str(tmp_path / "ckpt"), "--out", str(tmp_path / "o"), "--scheme"]
    command = [sys.executable, "-c", "from synthpre.cli import main; main()", *init, "full"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "no .safetensors weights" in done.stderr and "Traceback" not in done.stderr
    for args, message in (
        ([*init, "nope"], "Valid init schemes: full,"),
        (["stats", str(tmp_path / "missing")], "does not exist"),
        (["init", "--pre-attn-ln-value", "0.1", "--out", str(tmp_path / "o")], "--model"),
    ):
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, UserError) and message in str(result.exception), args
    assert not (tmp_path / "o").exists()
