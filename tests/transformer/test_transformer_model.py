"""ScaleTransformer invariants on the tiny preset (CPU, seconds)."""

import dataclasses
import math

import pytest
import torch

from nextscale.presets import tiny, var
from nextscale.pretrained import load_component, save_component
from nextscale.transformer import ScaleTransformer, TransformerConfig
from nextscale.transformer.conditioning import ClassCondition


def tiny_config(**overrides) -> TransformerConfig:
    return dataclasses.replace(tiny()[1], **overrides)


def lively_model(config: TransformerConfig) -> ScaleTransformer:
    """Tiny model whose gates and head are O(1), so attention and masking visibly matter."""
    torch.manual_seed(0)
    model = ScaleTransformer(config)
    model.init_weights(init_adaln_gamma=1.0, init_head=1.0)
    return model.eval()


def inputs(config: TransformerConfig, batch: int = 3):
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, config.num_classes + 1, (batch,), generator=generator)
    teacher = torch.randn(batch, config.schedule.total_tokens - 1, config.code_dim, generator=generator)
    return labels, teacher


def run_cached(
    model: ScaleTransformer, labels: torch.Tensor, teacher: torch.Tensor, plain: bool = False
) -> torch.Tensor:
    """Scale-by-scale inference fed with the teacher-forcing latents, as the sampler drives it (one context
    per call) or, with ``plain``, from the (B, C) condition of ``embed_condition``."""
    offsets = model.schedule.offsets
    if plain:
        context = model.embed_condition(labels)
    else:
        context = model.condition_context(ClassCondition(labels, model.config.null_class_id))
    cache = model.new_kv_cache(labels.shape[0])
    parts = []
    for k in range(model.schedule.num_scales):
        latent = None if k == 0 else teacher[:, offsets[k] - 1 : offsets[k + 1] - 1]
        parts.append(model.forward_cached(model.scale_input(k, context, latent), context, cache))
    return torch.cat(parts, dim=1)


def test_forward_shapes_and_progressive_prefixes():
    config = tiny_config()
    model = lively_model(config)
    labels, teacher = inputs(config)
    logits = model(labels, teacher)
    assert logits.shape == (3, 21, config.vocab_size) and logits.dtype == torch.float32
    for prefix in (1, 5):  # only scale 0; scales 0-1
        part = model(labels, teacher[:, : prefix - 1])
        assert part.shape == (3, prefix, config.vocab_size)
        torch.testing.assert_close(part, logits[:, :prefix], atol=1e-5, rtol=1e-5)


def test_forward_validates_inputs():
    config = tiny_config()
    model = ScaleTransformer(config)
    labels, teacher = inputs(config)
    with pytest.raises(ValueError, match="one less than a scale boundary"):
        model(labels, teacher[:, :7])
    with pytest.raises(ValueError, match="code_dim=8"):
        model(labels, teacher[..., :4])
    with pytest.raises(ValueError, match="2 conditions for a teacher_input batch of 3"):
        model(labels[:2], teacher)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        model(torch.tensor([0, 1, 11]), teacher)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        model.embed_condition(torch.tensor([-1]))
    cond = model.embed_condition(labels)
    with pytest.raises(ValueError, match="next_latent=None"):
        model.scale_input(0, cond, teacher[:, :1])
    with pytest.raises(ValueError, match=r"\(B, 4, 8\)"):
        model.scale_input(1, cond, teacher[:, :3])
    with pytest.raises(ValueError, match="scale_idx"):
        model.scale_input(3, cond, None)


@pytest.mark.parametrize("variant", [{}, {"shared_adaln": True}, {"attn_l2_norm": False}])
def test_cached_inference_equals_masked_full_forward(variant):
    config = tiny_config(**variant)
    model = lively_model(config)
    labels, teacher = inputs(config)
    with torch.no_grad():
        full = model(labels, teacher)
        cached = run_cached(model, labels, teacher)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shared_adaln", [False, True])
def test_block_condition_and_condition_context(shared_adaln):
    config = tiny_config(shared_adaln=shared_adaln)
    model = lively_model(config)
    labels, teacher = inputs(config)
    with torch.no_grad():
        cond = model.embed_condition(labels)
        block_condition = model.block_condition(cond)
        context = model.condition_context(ClassCondition(labels, config.null_class_id))
        # Every block receives one BlockCondition and turns it into its (B, 1, 6, C) modulation.
        assert (block_condition.shared is not None) == shared_adaln
        for block in model.blocks:
            modulation = block.modulation(block_condition)
            expected = block.adaln_offset + model.shared_adaln(cond) if shared_adaln else block.adaln(cond)
            assert modulation.shape == (3, 1, 6, config.embed_dim) and torch.equal(modulation, expected)
        assert len(context) == 3 and torch.equal(context.cond, cond)
        assert torch.equal(context.block_condition.vector, cond)
        # The precomputed context and the plain condition give the same logits, bit for bit.
        torch.testing.assert_close(
            run_cached(model, labels, teacher), run_cached(model, labels, teacher, plain=True), rtol=0, atol=0
        )


def test_logits_of_a_scale_ignore_later_scales():
    config = tiny_config()
    model = lively_model(config)
    labels, teacher = inputs(config)
    offsets = model.schedule.offsets
    with torch.no_grad():
        base = model(labels, teacher)
        for k in range(config.schedule.num_scales - 1):
            changed = teacher.clone()
            changed[:, offsets[k + 1] - 1 :] = torch.randn_like(changed[:, offsets[k + 1] - 1 :])  # scales > k
            out = model(labels, changed)
            torch.testing.assert_close(out[:, : offsets[k + 1]], base[:, : offsets[k + 1]], rtol=0, atol=1e-6)
            assert (out[:, offsets[k + 1] :] - base[:, offsets[k + 1] :]).abs().max() > 1e-3


def test_dropout_paths_are_active_only_in_training():
    config = tiny_config(drop_path_rate=0.5, cond_drop_rate=0.5)
    model = lively_model(config)
    labels, teacher = inputs(config, batch=8)
    with torch.no_grad():
        model.eval()
        first, second = model(labels, teacher), model(labels, teacher)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        model.train()
        torch.manual_seed(3)
        trained = model(labels, teacher, generator=torch.Generator().manual_seed(0))
    assert (trained - first).abs().max() > 1e-3
    assert [b.drop_path.rate for b in model.blocks] == pytest.approx([0.0, 0.5])


def test_from_depth_derives_width_heads_and_drop_path():
    config = TransformerConfig.from_depth(20)
    assert (config.embed_dim, config.num_heads, config.head_dim) == (1280, 20, 64)
    assert config.drop_path_rate == pytest.approx(0.1 * 20 / 24)
    assert config.null_class_id == 1000
    model = ScaleTransformer(tiny_config())
    assert model.config_class is TransformerConfig
    # Derived buffers are not saved: they follow from config.scale_sides.
    assert not {"level_ids", "attn_bias"} & set(model.state_dict())


def test_save_and_load_component_round_trip_bit_exact(tmp_path):
    model = lively_model(tiny_config(shared_adaln=True))
    save_component(model, tmp_path / "transformer")
    loaded = load_component(ScaleTransformer, tmp_path / "transformer")
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    labels, teacher = inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(labels, teacher), model(labels, teacher), rtol=0, atol=0)


def test_init_weights_recipe_and_no_global_patches():
    reset_before = torch.nn.Linear.reset_parameters
    config = tiny_config(shared_adaln=True)
    torch.manual_seed(0)
    model = ScaleTransformer(config)
    assert torch.nn.Linear.reset_parameters is reset_before
    C = config.embed_dim
    assert torch.equal(model.head.bias, torch.zeros_like(model.head.bias))
    assert model.head.weight.std() < 0.02 * math.sqrt(1 / (3 * C)) * 1.5
    for block in model.blocks:
        gates, rest = block.adaln_offset[:, :, :2], block.adaln_offset[:, :, 2:]
        assert gates.abs().max() < 1e-4 < rest.abs().max()
        assert torch.allclose(block.attn.log_temperature, torch.tensor(math.log(4.0)))
    # Re-running init_weights redraws rather than compounding the factors.
    model.init_weights(init_adaln_gamma=1e-3)
    assert 1e-5 < model.blocks[0].adaln_offset[:, :, :2].abs().max() < 1e-2
    plain = ScaleTransformer(tiny_config())
    weight = plain.blocks[1].adaln.linear.weight.detach()
    # Gates are scaled by init_adaln_gamma (1e-5), scale/shift by init_adaln (0.5): std ratio 2e-5.
    assert (weight[: 2 * C].std() / weight[2 * C :].std()).item() == pytest.approx(2e-5, rel=0.1)


@pytest.mark.parametrize("init_std", [-1.0, 0.0])
def test_init_std_must_be_positive(init_std):
    # The official init_std=-1 means "auto" (None here); it used to give weights of std ~0.9 without a word.
    model = ScaleTransformer(tiny_config())
    with pytest.raises(ValueError, match="init_std must be a positive number"):
        model.init_weights(init_std=init_std)
    model.init_weights(init_std=0.01)
    assert model.word_embed.weight.std().item() == pytest.approx(0.01, rel=0.3)


def test_init_stds_per_parameter_group_by_hand():
    """The official recipe, parameter group by group, on a model wide enough for the stds to be measurable."""
    config = TransformerConfig.from_depth(
        4, embed_dim=256, num_heads=4, vocab_size=512, num_classes=10, code_dim=8, scale_sides=(1, 2, 4)
    )
    torch.manual_seed(0)
    model = ScaleTransformer(config)
    model.init_weights(init_adaln=0.5, init_adaln_gamma=1e-3, init_head=0.02)
    std = math.sqrt(1 / (3 * 256))
    for weight in (model.word_embed.weight, model.class_embedder.embedding.weight, model.pos_embed, model.start_pos):
        assert weight.std().item() == pytest.approx(std, rel=0.1)
    assert model.head.weight.std().item() == pytest.approx(0.02 * std, rel=0.1)
    assert model.head_norm.adaln.linear.weight.std().item() == pytest.approx(0.5 * std, rel=0.1)
    for block in model.blocks:
        assert block.attn.qkv.weight.std().item() == pytest.approx(std, rel=0.1)
        for residual in (block.attn.proj.weight, block.ffn.fc2.weight):  # / sqrt(2 depth)
            assert residual.std().item() == pytest.approx(std / math.sqrt(8), rel=0.1)
        adaln = block.adaln.linear.weight
        assert adaln[:512].std().item() == pytest.approx(1e-3 * std, rel=0.1)
        assert adaln[512:].std().item() == pytest.approx(0.5 * std, rel=0.1)
        for bias in (block.adaln.linear.bias, block.attn.q_bias, block.attn.v_bias, block.ffn.fc1.bias):
            assert not bias.any()
        assert torch.equal(block.attn.log_temperature, torch.full((1, 4, 1, 1), math.log(4.0)))
    assert [block.drop_path.rate for block in model.blocks] == pytest.approx([0, 0.1 / 18, 0.2 / 18, 0.3 / 18])


def test_scale_sides_are_stored_as_a_tuple():
    # A list used to stay a list: the frozen config was unhashable and unequal to its own reloaded copy.
    config = tiny_config(scale_sides=[1, 2, 4])
    assert config.scale_sides == (1, 2, 4) and hash(config) == hash(tiny_config())


def test_parameter_counts_of_the_official_sizes():
    """Counts equal the official VAR models; block matrices follow the paper's 73728 d^3 rule.

    Per block the matrices are qkv 3C^2 + proj C^2 + fc1 4C^2 + fc2 4C^2 (= 12 C^2, attention + FFN) plus the
    AdaLN projection 6C^2: 18 C^2 with C = 64 d is 73728 d^2 per block, 73728 d^3 over d blocks. The shared-AdaLN
    d36 has no per-block projection, so its block matrices are 12 C^2 d = 49152 d^3.
    """
    expected = {16: 310_283_520, 20: 600_917_136, 24: 1_033_399_360, 30: 2_010_020_356, 36: 2_353_893_904}
    for depth, count in expected.items():
        with torch.device("meta"):
            model = ScaleTransformer(var(depth)[1])
        assert sum(p.numel() for p in model.parameters()) == count
        block_matrices = sum(p.numel() for block in model.blocks for p in block.parameters() if p.ndim == 2)
        assert block_matrices == (49152 if depth == 36 else 73728) * depth**3


def test_autocast_runs_and_returns_float32_logits():
    config = tiny_config()
    model = lively_model(config)
    labels, teacher = inputs(config)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(labels, teacher)
        cached = run_cached(model, labels, teacher)
    assert full.dtype == cached.dtype == torch.float32
    torch.testing.assert_close(cached, full, atol=0.1, rtol=0.05)
