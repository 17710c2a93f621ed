"""Sampler invariants on the tiny preset: determinism, caching, CFG doubling, smooth mode, constraints."""

import pytest
import torch

from nextscale.presets import tiny
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer = ScaleTransformer(transformer_config)
    transformer.init_weights(init_adaln_gamma=1.0, init_head=1.0)  # non-trivial logits for the tests
    return Pipeline(MultiScaleVQVAE(tokenizer_config), transformer)


def test_same_seed_same_images_and_tokens(pipe):
    a = pipe(class_labels=[1, 2], seed=3, top_k=20, top_p=0.9, output_type="pt")
    b = pipe(class_labels=[1, 2], seed=3, top_k=20, top_p=0.9, output_type="pt")
    c = pipe(class_labels=[1, 2], seed=4, top_k=20, top_p=0.9, output_type="pt")
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.images, b.images)
    assert not torch.equal(a.tokens, c.tokens)
    assert a.tokens.shape == (2, 21) and a.images.shape == (2, 3, 16, 16)
    assert a.images.min() >= 0 and a.images.max() <= 1


def test_output_types_and_label_draws(pipe):
    out = pipe(num_images_per_prompt=3, seed=0, output_type="np")
    assert out.images.shape == (3, 16, 16, 3) and out.images.dtype.name == "uint8"
    generator = torch.Generator().manual_seed(0)
    expected = pipe.sampler.draw_labels(3, generator)
    assert torch.equal(out.class_labels, expected)
    pil = pipe(class_labels=4, num_images_per_prompt=2, seed=0).images
    assert len(pil) == 2 and pil[0].size == (16, 16)


def test_sampled_tokens_are_consistent_with_the_latent(pipe):
    """The returned tokens decode (via the tokenizer) to the same f-hat the sampler built."""
    result = pipe.sampler.sample([0, 5], config=SamplingConfig(cfg=2.0), generator=torch.Generator().manual_seed(1))
    indices = pipe.tokenizer.indices_from_tokens(result.tokens)
    assert torch.allclose(pipe.tokenizer.quantizer.indices_to_fhat(indices), result.f_hat, atol=1e-5)


class _AlwaysDoubled(SamplingConfig):
    """A config that makes the sampler double the batch even when every guidance weight is 0."""

    def uses_guidance(self, num_scales: int) -> bool:
        return True


def test_cfg_zero_skips_the_unconditional_half_with_identical_results(pipe, monkeypatch):
    """With cfg 0 the guided logits equal the conditional ones, so not doubling the batch changes nothing:
    the fast path (B rows) gives the same tokens and latent as the doubled path (2B rows, weight 0)."""
    rows_seen = []
    forward_cached = pipe.transformer.forward_cached

    def counting(x, *args, **kwargs):
        rows_seen.append(x.shape[0])
        return forward_cached(x, *args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "forward_cached", counting)
    config = SamplingConfig(cfg=0.0)
    assert not config.uses_guidance(3)
    fast = pipe.sampler.sample([3, 7], config=config, generator=torch.Generator().manual_seed(5))
    assert rows_seen == [2, 2, 2]
    rows_seen.clear()
    doubled = pipe.sampler.sample([3, 7], config=_AlwaysDoubled(cfg=0.0), generator=torch.Generator().manual_seed(5))
    assert rows_seen == [4, 4, 4]  # the unconditional half really was computed
    assert torch.equal(fast.tokens, doubled.tokens)
    assert torch.allclose(fast.f_hat, doubled.f_hat, atol=1e-6)


def test_smooth_mode_draws_tokens_then_gumbel_noise(pipe):
    out = pipe(class_labels=[1], seed=0, smooth=True, output_type="pt")
    hard = pipe(class_labels=[1], seed=0, output_type="pt")
    # the first scale's multinomial draw comes before any Gumbel draw, so it is shared
    assert torch.equal(out.tokens[:, :1], hard.tokens[:, :1])
    assert torch.isfinite(out.images).all()


def test_constraint_hook_sees_every_scale_and_can_force_tokens(pipe):
    seen = []

    def force_zero(scale_idx, tokens, codes):
        seen.append(scale_idx)
        zeros = torch.zeros_like(tokens)
        return zeros, pipe.tokenizer.quantizer.lookup(zeros)

    out = pipe(class_labels=[2], seed=0, constraint=force_zero, output_type="pt")
    assert seen == [0, 1, 2] and out.tokens.eq(0).all()


def test_save_and_load_pipeline_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    loaded = Pipeline.from_pretrained(tmp_path / "p")
    a = pipe(class_labels=[1], seed=0, output_type="pt")
    b = loaded(class_labels=[1], seed=0, output_type="pt")
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.images, b.images)
    for name, tensor in pipe.transformer.state_dict().items():
        assert torch.equal(tensor, loaded.transformer.state_dict()[name])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(class_labels=[10 + 1]),
        dict(class_labels=[-1]),
        dict(class_labels=[1], cfg=-0.5),
        dict(class_labels=[1], top_k=0),
        dict(class_labels=[1], top_p=0.0),
        dict(class_labels=[1], temperature=-1.0),
        dict(class_labels=[1], output_type="jpg"),
        dict(prompt="a cat"),
        dict(class_labels=[1], seed=1, generator=torch.Generator()),
    ],
)
def test_bad_arguments_raise_value_error(pipe, kwargs):
    with pytest.raises(ValueError):
        pipe(**kwargs)


def test_none_asks_for_the_null_class_and_the_null_id_itself_is_refused(pipe):
    out = pipe(class_labels=[None], seed=0, output_type="pt")
    assert out.class_labels.tolist() == [10]
    with pytest.raises(ValueError, match="class 10 is out of range"):
        pipe(class_labels=[10], seed=0)  # an off-by-one id is not silently unconditional


def test_fractional_labels_are_refused_not_truncated(pipe):
    # torch.as_tensor(..., dtype=long) turned 0.7 into class 0 without a word.
    for labels in ([0.7], torch.tensor([2.0]), [True]):
        with pytest.raises(TypeError, match="class labels must be integer ids"):
            pipe.sampler.sample(labels)
    assert pipe.sampler.check_labels(torch.tensor([[3], [4]], dtype=torch.int32)).tolist() == [3, 4]


def test_a_raster_transformer_is_refused_by_the_scale_sampler_by_type(pipe):
    from nextscale.sampling.sampler import ScaleSampler
    from nextscale.transformer.raster_config import RasterConfig
    from nextscale.transformer.raster_model import RasterTransformer

    config = RasterConfig.from_depth(1, embed_dim=32, num_heads=2, vocab_size=64, side=4, num_classes=10)
    with pytest.raises(TypeError, match="ScaleSampler samples next-scale transformers, not a RasterTransformer"):
        ScaleSampler(pipe.tokenizer, RasterTransformer(config))
