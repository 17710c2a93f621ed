"""The FlexAttention form of the training mask: its tiles and elementwise rule equal the dense block-causal bias,
flex and dense teacher-forced logits agree for VAR, STAR and the raster baseline, a flex model never builds the
dense bias, and the switch is validated where it is set (model, attend, TrainConfig, trainer).

On CPU flex runs eagerly and forward only (PyTorch 2.13 has no CPU backward for it); the gradient and compiled
kernel checks are the ``gpu`` cases.
"""

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, create_mask

from nextscale.layers.attention import attend
from nextscale.presets import tiny
from nextscale.scales import SIDES_256, ScaleSchedule
from nextscale.transformer import ScaleTransformer
from nextscale.transformer.block_mask import ATTENTION_MASKS, block_causal_mask, dense_bias
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer, causal_bias
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

# Two flex tiles of 128 with a ragged last one: 1 + 4 + 16 + 64 + 144 = 229 positions.
TWO_TILE_SIDES = (1, 2, 4, 8, 12)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# Eager flex on CPU is the intended path here (PyTorch warns that it is unfused).
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


# ----------------------------------------------------------------------------------------------- models
def var_model(sides=None, seed: int = 0) -> ScaleTransformer:
    config = tiny()[1]
    if sides is not None:
        config = dataclasses.replace(config, scale_sides=sides)
    torch.manual_seed(seed)
    model = ScaleTransformer(config)
    model.init_weights(init_adaln_gamma=1.0, init_head=1.0)  # O(1) gates: the mask visibly matters
    return model.eval()


def var_inputs(model: ScaleTransformer, prefix: int, device="cpu"):
    generator = torch.Generator().manual_seed(1)
    config = model.config
    labels = torch.randint(0, config.num_classes + 1, (2,), generator=generator)
    teacher = torch.randn(2, prefix - 1, config.code_dim, generator=generator)
    return labels.to(device), teacher.to(device)


def star_model(sides=(1, 2, 4), seed: int = 0) -> TextScaleTransformer:
    config = TextTransformerConfig.from_depth(
        2, embed_dim=64, num_heads=2, vocab_size=64, code_dim=8, scale_sides=sides, text_dim=24
    )
    torch.manual_seed(seed)
    model = TextScaleTransformer(config).eval()
    with torch.no_grad():  # non-zero biases, so every path matters
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.3)
    return model


def star_inputs(model: TextScaleTransformer, prefix: int, device="cpu"):
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 5, 24, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    condition = TextCondition(hidden, mask, torch.randn(2, 24, generator=generator))
    teacher = torch.randn(2, prefix - 1, model.config.code_dim, generator=generator)
    if device != "cpu":
        condition = TextCondition(condition.hidden.to(device), condition.mask.to(device), condition.pooled.to(device))
    return condition, teacher.to(device)


def raster_model(side: int = 12, seed: int = 0) -> RasterTransformer:
    torch.manual_seed(seed)
    config = RasterConfig.from_depth(2, embed_dim=64, num_heads=2, num_classes=3, vocab_size=11, side=side)
    model = RasterTransformer(config).eval()
    model.init_weights(init_adaln_gamma=0.5)
    return model


def raster_inputs(model: RasterTransformer, device="cpu"):
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, model.config.vocab_size, (2, model.config.sequence_length), generator=generator)
    return torch.tensor([0, 2], device=device), tokens.to(device)


def logits_both_ways(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    dense = model.use_attention_mask("dense")(*inputs)
    flex = model.use_attention_mask("flex")(*inputs)
    return dense, flex


# ------------------------------------------------------------------------------------------ block mask
def tile_matrix(num_blocks: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(1, 1, Qt) counts + (1, 1, Qt, Kt) indices -> (Qt, Kt) bool tiles that are listed."""
    tiles = torch.zeros(indices.shape[-2:], dtype=torch.bool)
    for row, count in enumerate(num_blocks[0, 0].tolist()):
        tiles[row, indices[0, 0, row, :count].long()] = True
    return tiles


def applied_mask(block_mask) -> torch.Tensor:
    """What a block-sparse kernel applies, elementwise (L, L): full tiles allowed, partial tiles by the mask
    rule, unlisted tiles skipped."""
    q_len, kv_len = block_mask.seq_lengths
    size = block_mask.BLOCK_SIZE[0]
    partial = tile_matrix(block_mask.kv_num_blocks, block_mask.kv_indices)
    full = tile_matrix(block_mask.full_kv_num_blocks, block_mask.full_kv_indices)
    assert not (partial & full).any()

    def expand(tiles):
        return tiles.repeat_interleave(size, 0).repeat_interleave(size, 1)[:q_len, :kv_len]

    rule = create_mask(block_mask.mask_mod, 1, 1, q_len, kv_len, "cpu")[0, 0]
    return expand(full) | (expand(partial) & rule)


@pytest.mark.parametrize("sides", [(1, 2, 4), TWO_TILE_SIDES, SIDES_256])
def test_block_mask_applies_exactly_the_schedule_bias(sides):
    schedule = ScaleSchedule(sides)
    for prefix in (schedule.offsets[-2], schedule.total_tokens):  # a progressive prefix and all scales
        block_mask = block_causal_mask(schedule.level_ids()[:prefix])
        expected = schedule.attention_bias()[0, 0, :prefix, :prefix]
        applied = applied_mask(block_mask)
        bias = torch.zeros(applied.shape).masked_fill_(~applied, float("-inf"))
        assert torch.equal(bias, expected)


def test_block_mask_tiles_equal_create_block_mask():
    levels = ScaleSchedule(SIDES_256).level_ids()  # 680 positions: full, partial and skipped tiles, ragged end
    ours = block_causal_mask(levels)
    reference = create_block_mask(lambda b, h, q, kv: levels[kv] <= levels[q], None, None, 680, 680, device="cpu")
    for pair in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
        mine, theirs = (tile_matrix(*(getattr(mask, name) for name in pair)) for mask in (ours, reference))
        assert torch.equal(mine, theirs), pair
    assert ours.seq_lengths == (680, 680) and ours.sparsity() > 0


def test_raster_levels_give_the_causal_mask():
    levels = torch.arange(300)
    assert torch.equal(dense_bias(levels), causal_bias(300, 300))
    applied = applied_mask(block_causal_mask(levels))
    assert torch.equal(applied, torch.ones(300, 300, dtype=torch.bool).tril())


# ----------------------------------------------------------------------------------- flex == dense (CPU)
@pytest.mark.parametrize("sides", [None, TWO_TILE_SIDES])
def test_var_flex_logits_equal_dense_with_progressive_prefix(sides):
    model = var_model(sides)
    offsets = model.schedule.offsets
    with torch.no_grad():  # FlexAttention has no CPU backward
        for prefix in (offsets[-2], offsets[-1]):
            dense, flex = logits_both_ways(model, var_inputs(model, prefix))
            assert dense.shape[1] == prefix
            torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)


def test_star_flex_logits_equal_dense_with_progressive_prefix():
    model = star_model()
    with torch.no_grad():
        for prefix in (5, 21):
            dense, flex = logits_both_ways(model, star_inputs(model, prefix))
            torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)


def test_raster_flex_logits_equal_dense():
    model = raster_model()
    with torch.no_grad():
        dense, flex = logits_both_ways(model, raster_inputs(model))
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)


def test_flex_under_bf16_autocast_matches_dense():
    # Cosine attention leaves q, k in float32 and v in bf16 under autocast; flex needs one dtype.
    model = var_model()
    inputs = var_inputs(model, model.schedule.total_tokens)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        dense, flex = logits_both_ways(model, inputs)
    torch.testing.assert_close(flex, dense, atol=0.03, rtol=0.0)  # bf16 rounding is ~0.01 here; a wrong mask, ~0.07


# ------------------------------------------------------------------------------------- the dense buffer
def test_flex_model_never_builds_the_dense_bias():
    model = var_model().use_attention_mask("flex")
    with torch.no_grad():
        model(*var_inputs(model, model.schedule.total_tokens))
    assert model.dense_attn_bias is None
    assert not any(buffer.dim() == 4 for buffer in model.buffers())
    assert set(model.state_dict()) == set(var_model().state_dict())


def test_dense_bias_is_built_on_first_use_and_equals_the_schedule_bias():
    model = var_model()
    assert model.dense_attn_bias is None  # a fresh model holds no L x L mask
    with torch.no_grad():
        model(*var_inputs(model, 5))
    assert torch.equal(model.dense_attn_bias, model.schedule.attention_bias())
    assert "dense_attn_bias" not in model.state_dict()
    model.use_attention_mask("flex")
    assert model.dense_attn_bias is None  # switching to flex frees it
    assert torch.equal(model.attn_bias, model.schedule.attention_bias())  # readers of attn_bias still get it
    star = star_model().use_attention_mask("dense")
    assert torch.equal(star.dense_attn_bias, ScaleSchedule((1, 2, 4)).attention_bias())


# ------------------------------------------------------------------------------------------- bad usage
def test_unknown_mode_and_attention_dropout_are_refused():
    with pytest.raises(ValueError, match="one of"):
        var_model().use_attention_mask("sparse")
    config = dataclasses.replace(tiny()[1], attn_dropout=0.1)
    with pytest.raises(ValueError, match="attn_dropout"):
        ScaleTransformer(config).use_attention_mask("flex")
    q = k = v = torch.randn(1, 2, 21, 8)
    block_mask = block_causal_mask(ScaleSchedule((1, 2, 4)).level_ids())
    with pytest.raises(ValueError, match="dropout"):
        attend(q, k, v, block_mask, dropout_p=0.1, scale=1.0)
    torch.testing.assert_close(
        attend(q, k, v, block_mask, 0.0, 1.0), attend(q, k, v, ScaleSchedule((1, 2, 4)).attention_bias(), 0.0, 1.0)
    )


def test_train_config_validates_attention():
    from nextscale.training.config import ATTENTION_MASKS as CONFIG_MASKS
    from nextscale.training.config import RESUMABLE_CHANGES, TrainConfig

    assert CONFIG_MASKS == ATTENTION_MASKS and TrainConfig().attention == "dense"
    assert TrainConfig(attention="flex").attention == "flex"
    assert "attention" in RESUMABLE_CHANGES  # the same maths: a run may switch kernels when resumed
    with pytest.raises(ValueError, match="attention must be one of"):
        TrainConfig(attention="sparse")


def test_trainer_applies_the_mask_and_refuses_flex_training_on_cpu(tmp_path):
    from nextscale import distributed
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.training.config import TrainConfig, TransformerObjective
    from nextscale.training.transformer_trainer import TransformerTrainer

    tokenizer_config, transformer_config = tiny()
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, in_channels=1))
    data = FashionMNIST(Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist", "train", 16, 1)
    cpu = distributed.init_distributed(device="cpu")

    def start(mode: str) -> ScaleTransformer:
        model = ScaleTransformer(transformer_config)
        config = TrainConfig(total_steps=1, batch_size=4, attention=mode, ema_decay=None, progress=False)
        TransformerTrainer(model, tokenizer, TransformerObjective(), config, tmp_path / mode, data, dist_info=cpu)
        return model

    model = start("dense")
    assert model.attention_mask == "dense" and model.dense_attn_bias is not None
    with pytest.raises(ValueError, match="--attention dense"):
        start("flex")


# ------------------------------------------------------------------------------------------------ GPU
def _assert_gradients_equal(model, inputs) -> None:
    grads = {}
    for mode in ATTENTION_MASKS:
        model.zero_grad(set_to_none=True)
        logits = model.use_attention_mask(mode)(*inputs)
        logits.square().mean().backward()
        grads[mode] = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert grads["dense"].keys() == grads["flex"].keys()
    for name, grad in grads["dense"].items():
        torch.testing.assert_close(grads["flex"][name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.gpu
@needs_cuda
def test_compiled_flex_equals_dense_on_cuda_logits_and_gradients():
    device = torch.device("cuda")
    cases = []
    var = var_model(TWO_TILE_SIDES).to(device)
    for prefix in (var.schedule.offsets[-2], var.schedule.total_tokens):
        cases.append((var, var_inputs(var, prefix, device)))
    star = star_model(TWO_TILE_SIDES).to(device)
    cases.append((star, star_inputs(star, star.schedule.total_tokens, device)))
    raster = raster_model().to(device)
    cases.append((raster, raster_inputs(raster, device)))
    for model, inputs in cases:
        with torch.no_grad():
            dense, flex = logits_both_ways(model, inputs)
        torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
        _assert_gradients_equal(model, inputs)


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_flex_inside_a_compiled_model_equals_dense_on_cuda():
    # ``--compile`` traces flex into the model's graph, fused with the cosine normalisation before it (on CPU,
    # Inductor 2.13 miscomputes exactly this fusion; the eager CPU path is not compiled).
    device = torch.device("cuda")
    model = var_model(TWO_TILE_SIDES).to(device)
    inputs = var_inputs(model, model.schedule.total_tokens, device)
    with torch.no_grad():
        dense = model.use_attention_mask("dense")(*inputs)
        flex = torch.compile(model.use_attention_mask("flex"))(*inputs)
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_compiled_flex_stays_compiled_past_torchs_recompile_limit():
    # Past torch's default of 8 variants, a plainly compiled flex silently ran eagerly (the full score matrix:
    # gigabytes at 1024 px). Ten schedules with automatic dynamic shapes off are ten variants, all compiled.
    import torch._dynamo
    from torch._dynamo.utils import counters

    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    graphs_before = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
        for last_side in range(3, 13):
            levels = ScaleSchedule((1, 2, last_side)).level_ids().to(device)
            q, k, v = (torch.randn(1, 2, levels.numel(), 16, generator=generator).to(device) for _ in range(3))
            flex = attend(q, k, v, block_causal_mask(levels), dropout_p=0.0, scale=0.25)
            dense = attend(q, k, v, dense_bias(levels), dropout_p=0.0, scale=0.25)
            torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] - graphs_before >= 10
