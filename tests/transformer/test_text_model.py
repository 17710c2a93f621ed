"""The STAR transformer on a tiny config: cache equals full sequence, the batch-0 switch, init, resolution
transfer, condition types and bad input."""

import pytest
import torch

from nextscale.transformer.conditioning import ClassCondition, TextCondition, concat_text
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer, transfer_to_schedule

SIDES = (1, 2, 4)
CODE_DIM, TEXT_DIM = 8, 24


def tiny_config(**overrides) -> TextTransformerConfig:
    values = dict(embed_dim=64, num_heads=2, vocab_size=64, code_dim=CODE_DIM, scale_sides=SIDES, text_dim=TEXT_DIM)
    values.update(overrides)
    return TextTransformerConfig.from_depth(2, **values)


def tiny_model(seed: int = 0, **overrides) -> TextScaleTransformer:
    torch.manual_seed(seed)
    model = TextScaleTransformer(tiny_config(**overrides)).eval()
    with torch.no_grad():  # non-zero biases and distinct temperatures, so every path matters
        for name, param in model.named_parameters():
            if name.endswith("bias") or "temperature" in name:
                param.add_(torch.randn_like(param) * 0.3)
    return model


def text(batch: int, length: int = 5, seed: int = 1, lengths=None) -> TextCondition:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, TEXT_DIM, generator=generator)
    lengths = lengths or [length - (b % 3) for b in range(batch)]
    mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).long()
    pooled = torch.randn(batch, TEXT_DIM, generator=generator)
    null = TextCondition(
        torch.randn(1, 2, TEXT_DIM, generator=generator),
        torch.ones(1, 2, dtype=torch.long),
        torch.randn(1, TEXT_DIM, generator=generator),
    )
    return TextCondition(hidden, mask, pooled, null)


def teacher(batch: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, 21 - 1, CODE_DIM, generator=torch.Generator().manual_seed(seed))


def cached_logits(model, condition, teacher_input):
    context = model.condition_context(condition)
    cache = model.new_kv_cache(len(condition))
    parts, offsets = [], model.schedule.offsets
    for k in range(model.schedule.num_scales):
        latent = None if k == 0 else teacher_input[:, offsets[k] - 1 : offsets[k + 1] - 1]
        parts.append(model.forward_cached(model.scale_input(k, context, latent), context, cache))
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("batch0", [False, True])
def test_cached_scale_by_scale_logits_equal_the_full_sequence(batch0):
    model = tiny_model(official_batch0_cross_attention=batch0)
    condition, x = text(3), teacher(3)
    with torch.no_grad():
        full = model(condition, x)
        cached = cached_logits(model, condition, x)
    assert full.shape == (3, 21, 64)
    assert (full - cached).abs().max() < 1e-5


def test_block_causal_mask_hides_later_scales():
    model = tiny_model()
    condition, x = text(2), teacher(2)
    changed = x.clone()
    changed[:, 4:] += 1.0  # positions of the last scale's inputs
    with torch.no_grad():
        a, b = model(condition, x), model(condition, changed)
    assert torch.equal(a[:, :5], b[:, :5])  # scales 0 and 1 do not see scale 2's inputs
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_batch0_switch_changes_nothing_when_every_row_has_the_same_text():
    fixed, quirk = tiny_model(), tiny_model(official_batch0_cross_attention=True)
    quirk.load_state_dict(fixed.state_dict())
    # The cross-attention output depends on the text and on the image tokens that query it, so "every row
    # the same" means the same prompt and the same tokens (as at the 1x1 scale of a one-prompt batch).
    one = text(1)
    same = one.repeat_interleave(3)
    x = teacher(1).expand(3, -1, -1)
    with torch.no_grad():
        assert (fixed(same, x) - quirk(same, x)).abs().max() < 1e-5
        assert (fixed(same, teacher(3)) - quirk(same, teacher(3))).abs().max() > 1e-4  # other image rows
        different = text(3)
        assert (fixed(different, x) - quirk(different, x)).abs().max() > 1e-2
        # with CFG the null rows differ from the prompt rows, so the switch matters even at B = 1
        guided = one.with_unconditional()
        x2 = teacher(2)
        assert (fixed(guided, x2) - quirk(guided, x2)).abs().max() > 1e-2


def test_padding_positions_do_not_matter_and_the_text_does():
    model = tiny_model()
    condition, x = text(2, lengths=[3, 5]), teacher(2)
    noisy = condition.hidden.clone()
    noisy[0, 3:] += 5.0  # padding of row 0
    with torch.no_grad():
        base = model(condition, x)
        assert torch.equal(base, model(TextCondition(noisy, condition.mask, condition.pooled), x))
        moved = condition.hidden.clone()
        moved[0, :3] += 0.5
        assert (base - model(TextCondition(moved, condition.mask, condition.pooled), x)).abs().max() > 1e-3


def test_init_follows_the_official_recipe():
    model = TextScaleTransformer(tiny_config())
    assert model.head.bias.abs().max() == 0 and model.word_embed.bias.abs().max() == 0
    for block in model.blocks:
        assert torch.allclose(block.attn.log_temperature, torch.full_like(block.attn.log_temperature, 1.3862944))
        assert block.cross_attn.q_bias.abs().max() == 0
    std = (1 / (3 * 64)) ** 0.5
    assert model.text_proj.weight.std().item() == pytest.approx(std, rel=0.15)
    assert model.head.weight.std().item() == pytest.approx(0.02 * std, rel=0.2)


@pytest.mark.parametrize("cast", ["bf16", "half"])
def test_dtype_casts_keep_the_rope_table_in_float32(cast):
    # the official code keeps RoPE in float32; a bf16 table turns rotations by up to ~1e-2
    model = tiny_model()
    exact = model.rope_rows(0, 21).clone()
    model = model.to(torch.bfloat16) if cast == "bf16" else model.half()
    assert model.head.weight.dtype != torch.float32  # the weights are cast...
    assert model.rope_table.dtype == torch.float32  # ...the positions are not
    assert torch.equal(model.rope_rows(0, 21), exact)
    assert torch.equal(model.float().rope_rows(0, 21), exact)


def test_resolution_transfer_keeps_weights_and_grows_levels():
    model = tiny_model()
    grown = transfer_to_schedule(model, (1, 2, 4, 8))
    assert grown.config.scale_sides == (1, 2, 4, 8) and grown.level_embed.weight.shape[0] == 4
    assert torch.equal(grown.level_embed.weight[:3], model.level_embed.weight)
    for name, tensor in model.state_dict().items():
        if name != "level_embed.weight":
            assert torch.equal(grown.state_dict()[name], tensor)
    # the coarse scales' logits move only through RoPE's finer grid, which changes nothing for them: the
    # grown model's first three scales see the same tokens at the same normalised positions
    condition, x = text(2), teacher(2)
    longer = torch.cat((x, torch.randn(2, 64, CODE_DIM)), dim=1)
    with torch.no_grad():
        assert (grown(condition, longer)[:, :21] - model(condition, x)).abs().max() < 1e-5


def test_condition_types_double_and_drop():
    condition = text(3)
    guided = condition.with_unconditional()
    assert len(guided) == 6 and torch.equal(guided.pooled[3], condition.negative.pooled[0])
    assert guided.mask[3:, 2:].sum() == 0 and guided.mask[3:, :2].all()  # the null row, padded
    assert torch.equal(guided.hidden[:3], condition.hidden)
    dropped = condition.drop(0.999999, torch.Generator().manual_seed(0))
    assert torch.equal(dropped.pooled, condition.negative.pooled.expand(3, -1))
    kept = condition.drop(0.0)
    assert kept is condition
    repeated = condition.repeat_interleave(2)
    assert torch.equal(repeated.pooled[1], condition.pooled[0]) and len(repeated) == 6
    stacked = concat_text(text(1, length=3), text(1, length=6))
    assert stacked.hidden.shape == (2, 6, TEXT_DIM) and stacked.mask[0, 3:].sum() == 0
    labels = ClassCondition(torch.tensor([1, 2]), null_id=10).with_unconditional()
    assert labels.labels.tolist() == [1, 2, 10, 10]


def test_bad_input_is_refused_clearly():
    model = tiny_model()
    with pytest.raises(ValueError, match="expects 24"):
        model(TextCondition(torch.randn(1, 3, 16), torch.ones(1, 3, dtype=torch.long), torch.randn(1, 16)), teacher(1))
    with pytest.raises(TypeError, match="text-conditional"):
        model.condition_context(ClassCondition(torch.tensor([1]), 10))
    with pytest.raises(ValueError, match="no prompts"):
        TextCondition(torch.randn(0, 3, 24), torch.ones(0, 3, dtype=torch.long), torch.randn(0, 24))
    with pytest.raises(ValueError, match="no real token"):
        model(TextCondition(torch.randn(1, 3, 24), torch.zeros(1, 3, dtype=torch.long), torch.randn(1, 24)), teacher(1))
    with pytest.raises(ValueError, match="negative"):
        TextCondition(
            torch.randn(1, 3, 24), torch.ones(1, 3, dtype=torch.long), torch.randn(1, 24)
        ).with_unconditional()
    with pytest.raises(ValueError, match="out of range"):
        ClassCondition(torch.tensor([11]), 10)
