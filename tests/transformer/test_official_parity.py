"""Parity with the official VAR code (fixtures in shared/reference/var_parity, made by the official repo)."""

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nextscale.transformer import ScaleTransformer, load_official_var
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.official import (
    infer_official_config,
    official_key_to_ours,
    ours_key_to_official,
    to_official_state_dict,
)
from reference_fixtures import require

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
PARITY = REFERENCE / "var_parity"


def needs_fixtures(test):
    """Fail (never skip) when the fixtures are missing."""

    def checked(*args, **kwargs):
        require(PARITY / "var_d2.pth")
        return test(*args, **kwargs)

    return functools.wraps(test)(checked)


OFFICIAL_BUFFERS = ("lvl_1L", "attn_bias_for_masking", "zero_k_bias")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(require(PARITY / "var_parity_d2.pt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model():
    return load_official_var(require(PARITY / "var_d2.pth"))


def official_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """The official trainer's loss: per-token CE x 1/L, summed over tokens, mean over the batch."""
    B, L, V = logits.shape
    per_token = F.cross_entropy(
        logits.reshape(-1, V), targets.reshape(-1), reduction="none", label_smoothing=label_smoothing
    ).view(B, L)
    return per_token.mul(1.0 / L).sum(dim=-1).mean()


def close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-4) -> None:
    diff = (ours.double() - theirs.double()).abs().max().item()
    assert diff <= atol, f"max |diff| {diff:.3g} > {atol}"


@needs_fixtures
def test_inferred_config_of_the_d2_fixture(model):
    config = model.config
    assert (config.depth, config.embed_dim, config.num_heads, config.num_classes) == (2, 128, 2, 1000)
    assert (config.vocab_size, config.code_dim, config.shared_adaln, config.attn_l2_norm) == (4096, 32, False, True)
    assert config.scale_sides == (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    assert config.drop_path_rate == pytest.approx(0.1 * 2 / 24)
    assert not model.training


@needs_fixtures
def test_teacher_forced_logits_and_losses_match_official(model, fixture):
    with torch.no_grad():
        logits = model(fixture["labels"], fixture["x_BLCv_wo_first_l"])
    assert logits.shape == (2, 680, 4096) and logits.dtype == torch.float32
    close(logits[:, fixture["logits_positions"]], fixture["logits_sub"])
    close(logits.logsumexp(-1), fixture["logits_lse"])
    close(logits.amax(-1), fixture["logits_max"])
    close(logits.mean(-1), fixture["logits_mean"])
    close(logits.std(-1), fixture["logits_std"])
    # Argmax must agree except where the official top-2 gap is a near-tie.
    flips = logits.argmax(-1) != fixture["logits_argmax"]
    top2 = logits.topk(2, dim=-1).values
    assert ((top2[..., 0] - top2[..., 1])[flips] < 1e-5).all()
    targets = fixture["idx_all"]
    close(official_loss(logits, targets, 0.0), fixture["train_loss_ls0"])
    close(official_loss(logits, targets, 0.1), fixture["train_loss_ls0.1"])
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    close(per_token, fixture["ce_per_token"])
    per_scale = torch.stack([per_token[:, s].mean() for s in map(model.schedule.scale_slice, range(10))])
    close(per_scale, fixture["ce_per_scale"])


@needs_fixtures
def test_gradients_match_official(model, fixture):
    model.zero_grad()
    logits = model(fixture["labels"], fixture["x_BLCv_wo_first_l"])  # eval mode: no dropout of any kind
    loss = official_loss(logits, fixture["idx_all"], 0.0)
    close(loss, fixture["grad_loss"])
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    total_norm = torch.sqrt(sum(g.double().square().sum() for g in grads))
    assert abs(total_norm.item() / fixture["grad_total_norm"].item() - 1) <= 1e-4
    for ours, key in (
        (model.word_embed.weight.grad, "grad_word_embed_weight"),
        (model.blocks[0].attn.log_temperature.grad, "grad_scale_mul_b0"),
    ):
        theirs = fixture[key]
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    model.zero_grad(set_to_none=True)


@needs_fixtures
def test_cached_scale_by_scale_equals_full_forward_on_d2(model, fixture):
    labels, teacher = fixture["labels"], fixture["x_BLCv_wo_first_l"]
    with torch.no_grad():
        full = model(labels, teacher)
        cond = model.embed_condition(labels)
        cache = model.new_kv_cache(2)
        offsets = model.schedule.offsets
        parts = []
        for k in range(model.schedule.num_scales):
            latent = None if k == 0 else teacher[:, offsets[k] - 1 : offsets[k + 1] - 1]
            parts.append(model.forward_cached(model.scale_input(k, cond, latent), cond, cache))
    assert cache.length == 680
    close(torch.cat(parts, dim=1), full, atol=1e-5)


def test_key_mapping_is_a_bijection_on_the_released_d16_keys():
    keys_file = REFERENCE / "var_state_dict_keys.json"
    require(keys_file)
    official = json.loads(keys_file.read_text())["var_d16"]
    params = [k for k in official if not k.endswith(OFFICIAL_BUFFERS)]
    assert len(official) - len(params) == 2 + 16  # lvl_1L, attn_bias_for_masking, one zero_k_bias per block
    ours = [official_key_to_ours(k) for k in params]
    assert len(set(ours)) == len(params)
    assert [ours_key_to_official(k) for k in ours] == params
    with torch.device("meta"):
        reference = ScaleTransformer(TransformerConfig.from_depth(16))
    own = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert set(ours) == set(own)
    assert all(own[official_key_to_ours(k)] == tuple(shape) for k, shape in official.items() if k in params)
    with pytest.raises(ValueError, match="unknown official VAR key"):
        official_key_to_ours("blocks.0.attn.not_a_weight")


def test_official_round_trip_and_buffer_checks():
    config = TransformerConfig.from_depth(
        2,
        embed_dim=64,
        num_heads=2,
        num_classes=10,
        vocab_size=32,
        code_dim=4,
        scale_sides=(1, 2, 3),
        shared_adaln=True,
    )
    model = ScaleTransformer(config)
    state = to_official_state_dict(model)
    assert "shared_ada_lin.1.weight" in state and "blocks.1.ada_gss" in state and "blocks.0.attn.zero_k_bias" in state
    loaded = load_official_var(state)
    assert loaded.config == config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

    without_levels = {k: v for k, v in state.items() if k != "lvl_1L"}
    with pytest.raises(ValueError, match="cannot infer the scale schedule"):
        infer_official_config(without_levels)
    bad_mask = dict(state, attn_bias_for_masking=torch.zeros_like(state["attn_bias_for_masking"]))
    with pytest.raises(ValueError, match="attn_bias_for_masking"):
        load_official_var(bad_mask)
    bad_k = dict(state, **{"blocks.1.attn.zero_k_bias": torch.ones(64)})
    with pytest.raises(ValueError, match="zero_k_bias"):
        load_official_var(bad_k)
    bad_shape = dict(state, **{"blocks.0.ffn.fc2.bias": torch.zeros(65)})
    with pytest.raises(ValueError, match="fc2.bias"):
        load_official_var(bad_shape)
    missing = {k: v for k, v in state.items() if k != "head.bias"}
    with pytest.raises(ValueError, match="head.bias"):
        load_official_var(missing)
    with pytest.raises(ValueError, match="not an official VAR"):
        load_official_var({"foo": torch.zeros(1)})
