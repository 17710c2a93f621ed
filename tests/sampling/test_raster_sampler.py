"""The raster-scan sampling loop: greedy sampling equals step-by-step greedy decoding with the uncached
forward, guidance doubles the batch, and a tokenizer of another schedule is refused with a sentence."""

import pytest
import torch

from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.raster_sampler import RasterSampler
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer

SIDE, VOCAB = 4, 16


def components(sides=(SIDE,)):
    torch.manual_seed(0)
    tokenizer = MultiScaleVQVAE(
        TokenizerConfig(
            vocab_size=VOCAB,
            code_dim=4,
            base_channels=32,
            channel_multipliers=(1, 1, 1),
            num_res_blocks=1,
            in_channels=1,
            num_phi=1,
            scale_sides=sides,
        )
    ).eval()
    transformer = RasterTransformer(
        RasterConfig.from_depth(2, embed_dim=32, num_heads=2, num_classes=3, vocab_size=VOCAB, side=SIDE)
    ).eval()
    transformer.init_weights(init_adaln_gamma=0.5, init_head=1.0)  # peaked, non-trivial logits
    return tokenizer, transformer


def greedy_by_full_forward(transformer, labels, cfg):
    """Reference: re-run the whole teacher-forced forward for every new token (no cache)."""
    length = SIDE * SIDE
    tokens = torch.zeros(len(labels), length, dtype=torch.long)
    null = torch.full_like(labels, transformer.config.null_class_id)
    for position in range(length):
        logits = transformer(labels, tokens)[:, position]
        if cfg:
            weight = cfg * position / (length - 1)  # the linear ramp over positions
            uncond = transformer(null, tokens)[:, position]
            logits = (1 + weight) * logits - weight * uncond
        tokens[:, position] = logits.argmax(-1)
    return tokens


@pytest.mark.parametrize("cfg", [0.0, 2.0])
def test_greedy_sampling_equals_uncached_decoding(cfg):
    tokenizer, transformer = components()
    labels = torch.tensor([0, 2])
    out = RasterSampler(tokenizer, transformer).sample(labels, config=SamplingConfig(cfg=cfg, top_k=1))
    assert out.tokens.shape == (2, SIDE * SIDE) and out.f_hat.shape == (2, 4, SIDE, SIDE)
    assert torch.equal(out.tokens, greedy_by_full_forward(transformer, labels, cfg))
    assert len(out.tokens.unique()) > 1  # the check is not vacuous


def test_samples_decode_to_images_and_follow_the_seed():
    tokenizer, transformer = components()
    sampler = RasterSampler(tokenizer, transformer)
    config = SamplingConfig(cfg=1.5, top_k=8, top_p=0.9)
    a = sampler.sample([1, 1], config=config, generator=torch.Generator().manual_seed(3))
    b = sampler.sample([1, 1], config=config, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens)
    images = sampler.decode(a.f_hat)
    assert images.shape == (2, 1, 4 * SIDE, 4 * SIDE) and 0 <= images.min() and images.max() <= 1


def test_the_null_class_draws_unconditional_samples_as_in_the_scale_sampler():
    tokenizer, transformer = components()
    null = transformer.config.null_class_id
    out = RasterSampler(tokenizer, transformer).sample([null], config=SamplingConfig(cfg=0.0, top_k=1))
    assert torch.equal(out.tokens, greedy_by_full_forward(transformer, torch.tensor([null]), 0.0))
    with pytest.raises(ValueError, match="class"):
        RasterSampler(tokenizer, transformer).sample([null + 1], config=SamplingConfig(cfg=0.0))


def test_a_multi_scale_tokenizer_is_refused_with_the_fix():
    tokenizer, transformer = components(sides=(1, 2, SIDE))
    with pytest.raises(ValueError, match=r"scale_sides=\(4,\)"):
        RasterSampler(tokenizer, transformer)


def test_a_next_scale_transformer_is_refused_by_type():
    # it failed with "AttributeError: 'TransformerConfig' object has no attribute 'side'"
    from nextscale.transformer.config import TransformerConfig
    from nextscale.transformer.model import ScaleTransformer

    tokenizer, _ = components()
    var = ScaleTransformer(TransformerConfig.from_depth(1, embed_dim=32, num_heads=2, num_classes=3, vocab_size=VOCAB))
    with pytest.raises(TypeError, match="the raster sampler needs a RasterTransformer, got ScaleTransformer"):
        RasterSampler(tokenizer, var)


def test_masked_sampling_and_smoothing_are_refused_with_the_fix():
    tokenizer, transformer = components()
    sampler = RasterSampler(tokenizer, transformer)
    with pytest.raises(ValueError, match=r"STAR's way of drawing a scale; .*: sample without masked_sampling"):
        sampler.sample([1], config=SamplingConfig(masked_sampling=True))
    with pytest.raises(ValueError, match=r"mixes code vectors per scale; .*: sample without smooth \(--smooth\)"):
        sampler.sample([1], config=SamplingConfig(smooth=True))


def test_fractional_labels_are_refused_not_truncated():
    # torch.as_tensor(..., dtype=long) turned 0.7 into class 0 and sampled it
    tokenizer, transformer = components()
    sampler = RasterSampler(tokenizer, transformer)
    for labels in (torch.tensor([0.7]), [1.5]):
        with pytest.raises(TypeError, match="class labels must be integer ids"):
            sampler.sample(labels, config=SamplingConfig(cfg=0.0))
    assert sampler.sample(
        torch.tensor([2], dtype=torch.int32), config=SamplingConfig(cfg=0.0)
    ).class_labels.tolist() == [2]


def test_a_text_condition_is_refused_in_words():
    from nextscale.transformer.conditioning import TextCondition

    tokenizer, transformer = components()
    text = TextCondition(torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 8))
    with pytest.raises(TypeError, match="the raster baseline is class-conditional; pass class labels"):
        RasterSampler(tokenizer, transformer).sample(text, config=SamplingConfig(cfg=0.0))


def test_sample_takes_the_scale_samplers_arguments_and_refuses_positional_knobs():
    """The two loops are called alike (the trainer and the pipelines swap them); knobs after the condition go by
    keyword, so an old positional call ``sample(labels, config)`` fails instead of meaning something else."""
    import inspect

    from nextscale.sampling.sampler import ScaleSampler

    scale_names = list(inspect.signature(ScaleSampler.sample).parameters)
    raster = inspect.signature(RasterSampler.sample).parameters
    assert list(raster) == scale_names
    assert raster["condition"].default is None
    assert all(raster[name].kind is inspect.Parameter.KEYWORD_ONLY for name in scale_names[2:])
    tokenizer, transformer = components()
    sampler = RasterSampler(tokenizer, transformer)
    drawn = sampler.sample(batch_size=3, config=SamplingConfig(cfg=0.0), generator=torch.Generator().manual_seed(1))
    assert drawn.tokens.shape == (3, SIDE * SIDE) and drawn.class_labels.shape == (3,)
    with pytest.raises(TypeError, match="positional"):
        sampler.sample([1], SamplingConfig(cfg=0.0))
