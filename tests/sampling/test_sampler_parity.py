"""The sampler against the official sampling run (depth-2 VAR, ch=32 tokenizer, seed 42, cfg 1.5, top-k 900,
top-p 0.95): same tokens, same kept counts, same generator state, same images."""

import pytest
import torch

from nextscale.sampling import sampler as sampler_module
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.logits import filter_logits
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.official import load_official_vqvae
from nextscale.transformer.official import load_official_var


@pytest.fixture(scope="module")
def official_pipeline(parity_dir):
    transformer = load_official_var(parity_dir / "var_d2.pth")
    tokenizer = load_official_vqvae(parity_dir / "vqvae.pth", scale_sides=transformer.config.scale_sides)
    return Pipeline(tokenizer, transformer)


def sample_like_the_official_run(pipeline: Pipeline, parity: dict):
    """The official sampling run's call: its labels, seed 42, cfg 1.5, top-k 900, top-p 0.95."""
    generator = torch.Generator().manual_seed(42)
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.95)
    return pipeline.sampler.sample(parity["labels"], config=config, generator=generator), generator


def official_mismatches(result, generator: torch.Generator, parity: dict) -> list[str]:
    """What differs from the official run: "tokens" and/or "generator state" (empty when it matches)."""
    problems = []
    if not torch.equal(result.tokens, parity["sample_idx_all"]):
        problems.append("tokens")
    if not torch.equal(generator.get_state(), parity["sample_rng_state_after"]):
        problems.append("generator state")
    return problems


@pytest.fixture(scope="module")
def official_run(official_pipeline, parity):
    return sample_like_the_official_run(official_pipeline, parity)


def test_sampled_tokens_and_generator_state_equal_the_official(official_run, parity):
    assert official_mismatches(*official_run, parity) == []


def _drop_unconditional_half(monkeypatch):
    monkeypatch.setattr(sampler_module, "classifier_free_guidance", lambda cond, uncond, weight: cond)


def _reverse_guidance_ramp(monkeypatch):
    settings = SamplingConfig.settings
    monkeypatch.setattr(SamplingConfig, "settings", lambda self, k, n: settings(self, n - 1 - k, n))


def _ignore_top_p(monkeypatch):
    monkeypatch.setattr(
        sampler_module,
        "filter_logits",
        lambda logits, top_k, top_p, temperature=1.0: filter_logits(logits, top_k, None, temperature),
    )


@pytest.mark.parametrize("breakage", [_drop_unconditional_half, _reverse_guidance_ramp, _ignore_top_p])
def test_parity_check_catches_a_broken_sampler(official_pipeline, parity, monkeypatch, breakage):
    """The comparison above is not vacuous: a sampler that drops CFG's unconditional half, applies the
    guidance ramp in the wrong scale order or loses the top-p filter gives other tokens."""
    breakage(monkeypatch)
    assert "tokens" in official_mismatches(*sample_like_the_official_run(official_pipeline, parity), parity)


def test_final_latent_and_image_match(official_run, official_pipeline, parity):
    result, _ = official_run
    assert torch.allclose(result.f_hat, parity["sample_fhat_scales"][-1], atol=1e-5)
    images = official_pipeline.sampler.decode(result.f_hat)
    assert (images - parity["sample_img"]).abs().max() < 1e-4


def test_guided_logits_and_kept_counts_match(official_pipeline, parity):
    """Teacher-force the official tokens through the cached path and compare the guided, filtered logits."""
    from nextscale.sampling.logits import classifier_free_guidance, filter_logits

    pipe = official_pipeline
    transformer, quantizer = pipe.transformer, pipe.tokenizer.quantizer
    schedule = transformer.config.schedule
    labels = parity["labels"]
    batch = labels.shape[0]
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.95)
    with torch.no_grad():
        cond = transformer.embed_condition(torch.cat((labels, torch.full_like(labels, 1000))))
        cache = transformer.new_kv_cache(2 * batch)
        x = transformer.scale_input(0, cond, None)
        indices = schedule.split(parity["sample_idx_all"])
        f_hat = torch.zeros(batch, 32, 16, 16)
        lse, kept = [], []
        for k, side in enumerate(schedule.sides):
            logits = transformer.forward_cached(x, cond, cache)
            guided = classifier_free_guidance(logits[:batch], logits[batch:], config.settings(k, 10).cfg_weight)
            lse.append(guided.logsumexp(-1))
            if k == 0 or k == 2:
                start = schedule.offsets[k]
                ref = parity["sample_logits_cfg_s0_s2"][:, start : start + side * side]
                assert torch.allclose(guided, ref, atol=1e-4)
            kept.append(torch.isfinite(filter_logits(guided, 900, 0.95)).sum(-1))
            h = quantizer.lookup(indices[k]).transpose(1, 2).reshape(batch, 32, side, side)
            f_hat, nxt = quantizer.next_input(k, f_hat, h)
            if k + 1 < schedule.num_scales:
                x = transformer.scale_input(k + 1, cond[:batch], nxt.view(batch, 32, -1).transpose(1, 2)).repeat(
                    2, 1, 1
                )
    assert torch.allclose(torch.cat(lse, 1), parity["sample_logits_cfg_lse"], atol=1e-4)
    assert torch.equal(torch.cat(kept, 1), parity["sample_kept_count"])


def test_pipeline_call_gives_the_official_tokens_and_images(official_pipeline, parity):
    out = official_pipeline(
        class_labels=parity["labels"].tolist(), seed=42, cfg=1.5, top_k=900, top_p=0.95, output_type="pt"
    )
    assert torch.equal(out.tokens, parity["sample_idx_all"])
    assert (out.images - parity["sample_img"]).abs().max() < 1e-4


def test_sampler_refuses_components_that_do_not_fit(official_pipeline):
    from nextscale.presets import tiny
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    tokenizer = MultiScaleVQVAE(tiny()[0])
    with pytest.raises(ValueError, match="do not fit"):
        ScaleSampler(tokenizer, official_pipeline.transformer)
