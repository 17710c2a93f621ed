"""Fused elementwise kernels: each region is the exact path's math (its eager form bit-identical, compiled within
float32 rounding), the model switch reaches every block and attention, training ignores it, and sampling with it
gives the exact path's tokens; on a GPU, inside CUDA graphs too."""

import pytest
import torch
import torch.nn.functional as F

from nextscale.layers import fused
from nextscale.layers.adaln import modulate
from nextscale.layers.attention import normalize_qk
from nextscale.presets import star_tiny, tiny
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_model import TextScaleTransformer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CONFIG = SamplingConfig(cfg=1.5, top_k=20, top_p=0.9)


def var_models() -> tuple[MultiScaleVQVAE, ScaleTransformer]:
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer = ScaleTransformer(transformer_config).eval()
    transformer.init_weights(init_adaln_gamma=1.0, init_head=1.0)  # non-trivial modulations and logits
    return MultiScaleVQVAE(tokenizer_config).eval(), transformer


def region_inputs(tokens: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    qkv = randn(2, tokens, 3, 4, 8)  # (B, l, 3, H, Dh)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # strided views, as project_qkv gives them
    return dict(
        x=randn(2, tokens, 32) * 3 + 1,
        out=randn(2, tokens, 32),
        gamma=randn(2, 1, 32),
        scale=randn(2, 1, 32),
        shift=randn(2, 1, 32),
        q=q,
        k=k,
        log_temperature=randn(1, 4, 1, 1).abs() * 3,  # some beyond the ln 100 cap
    )


def test_the_eager_regions_are_the_exact_ops_bit_for_bit():
    t = region_inputs(7, torch.Generator().manual_seed(0))
    exact_norm = modulate(F.layer_norm(t["x"], (32,), eps=1e-6), t["scale"], t["shift"])
    assert torch.equal(fused.norm_modulate(t["x"], t["scale"], t["shift"], 1e-6, None), exact_norm)
    assert torch.equal(fused.gated_add(t["x"], t["out"], t["gamma"]), t["x"] + t["out"] * t["gamma"])
    x, h = fused.gated_add_norm_modulate(t["x"], t["out"], t["gamma"], t["scale"], t["shift"], 1e-6, None)
    assert torch.equal(x, t["x"] + t["out"] * t["gamma"])
    assert torch.equal(h, modulate(F.layer_norm(x, (32,), eps=1e-6), t["scale"], t["shift"]))
    for got, want in zip(
        fused.normalize_qk(t["q"], t["k"], t["log_temperature"], None),
        normalize_qk(t["q"], t["k"], t["log_temperature"]),
    ):
        assert torch.equal(got, want)
    assert fused.norm_modulate(t["x"], t["scale"], t["shift"], 1e-6, torch.bfloat16).dtype == torch.bfloat16


@pytest.fixture(scope="module")
def regions() -> fused.FusedRegions:
    return fused.fused_regions()


@pytest.mark.parametrize("tokens", [1, 9])  # l = 1 is its own shape class under dynamic shapes
def test_compiled_regions_match_the_exact_ops_within_float32_rounding(regions, tokens):
    t = region_inputs(tokens, torch.Generator().manual_seed(tokens))
    close = dict(rtol=1e-5, atol=1e-5)
    eager_norm = fused.norm_modulate(t["x"], t["scale"], t["shift"], 1e-6, None)
    torch.testing.assert_close(regions.norm_modulate(t["x"], t["scale"], t["shift"], 1e-6, None), eager_norm, **close)
    torch.testing.assert_close(
        regions.gated_add(t["x"], t["out"], t["gamma"]), fused.gated_add(t["x"], t["out"], t["gamma"]), **close
    )
    args = (t["x"], t["out"], t["gamma"], t["scale"], t["shift"], 1e-6, None)
    for got, want in zip(regions.gated_add_norm_modulate(*args), fused.gated_add_norm_modulate(*args)):
        torch.testing.assert_close(got, want, **close)
    qk_args = (t["q"], t["k"], t["log_temperature"], None)
    for got, want in zip(regions.normalize_qk(*qk_args), fused.normalize_qk(*qk_args)):
        torch.testing.assert_close(got, want, **close)
        assert got.shape == want.shape == (2, 4, tokens, 8)


def test_a_region_compiles_past_torchs_recompile_limit(regions):
    # A session that samples one image and then several, with and without guidance, needs more variants of
    # norm_modulate than torch's default limit of 8, at which a fullgraph function fails the call.
    with torch._dynamo.config.patch(cache_size_limit=1):
        for batch, tokens in ((1, 1), (2, 1), (1, 3), (2, 3)):  # float64: variants no other test compiles
            x = torch.randn(batch, tokens, 8, dtype=torch.float64)
            gamma = torch.randn(batch, 1, 8, dtype=torch.float64)
            torch.testing.assert_close(regions.gated_add(x, x, gamma), x + x * gamma)


def test_the_switch_reaches_every_block_and_attention_and_turns_off_again():
    _, transformer = var_models()
    assert not transformer.fused_kernels
    assert transformer.use_fused_kernels() is transformer
    assert transformer.fused_kernels
    for block in transformer.blocks:
        assert block.fused is fused.fused_regions() and block.attn.fused is fused.fused_regions()
    assert transformer.head_norm.fused is fused.fused_regions()
    transformer.use_fused_kernels(False)
    assert not transformer.fused_kernels
    assert all(block.fused is None and block.attn.fused is None for block in transformer.blocks)
    star = TextScaleTransformer(star_tiny()[1]).use_fused_kernels()
    assert all(block.fused is not None and block.attn.fused is not None for block in star.blocks)


def test_sampling_with_fused_kernels_gives_the_exact_tokens_and_switching_off_is_bit_identical(regions):
    tokenizer, transformer = var_models()
    sampler = ScaleSampler(tokenizer, transformer)

    def sample():
        return sampler.sample([0, 3, 5], config=CONFIG, generator=torch.Generator().manual_seed(0))

    exact = sample()
    transformer.use_fused_kernels()
    fast = sample()
    assert (fast.tokens == exact.tokens).float().mean() >= 0.99
    transformer.use_fused_kernels(False)
    again = sample()
    assert torch.equal(again.tokens, exact.tokens) and torch.equal(again.f_hat, exact.f_hat)


def test_star_sampling_with_fused_kernels_gives_the_exact_tokens(regions):
    torch.manual_seed(0)
    tokenizer_config, transformer_config = star_tiny()
    transformer = TextScaleTransformer(transformer_config).eval()
    transformer.init_weights(init_head=1.0)  # non-trivial logits
    sampler = ScaleSampler(MultiScaleVQVAE(tokenizer_config).eval(), transformer)
    generator = torch.Generator().manual_seed(1)
    width, mask = transformer_config.text_dim, torch.ones(3, 5, dtype=torch.long)
    mask[-1, -1] = 0  # one padded prompt

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    null = TextCondition(randn(1, 2, width), torch.ones(1, 2, dtype=torch.long), randn(1, width))
    prompts = TextCondition(randn(3, 5, width), mask, randn(3, width), negative=null)

    def sample():
        return sampler.sample(
            prompts, config=SamplingConfig(cfg=2.0, top_k=20), generator=torch.Generator().manual_seed(0)
        )

    exact = sample()
    assert all(block.fused is not None for block in transformer.use_fused_kernels().blocks)
    assert (sample().tokens == exact.tokens).float().mean() >= 0.99
    transformer.use_fused_kernels(False)
    assert torch.equal(sample().tokens, exact.tokens)


def test_training_ignores_the_switch(regions):
    _, transformer = var_models()
    config = transformer.config
    assert config.drop_path_rate > 0
    labels = torch.tensor([1, 2])
    teacher = torch.randn(2, config.schedule.total_tokens - 1, config.code_dim)
    transformer.train()
    torch.manual_seed(3)
    exact = transformer(labels, teacher)
    transformer.use_fused_kernels()
    torch.manual_seed(3)
    assert torch.equal(transformer(labels, teacher), exact)  # drop-path and the exact ops, bit for bit


# ---------------------------------------------------------------------------------------------------- GPU


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("bf16", [False, True])
def test_fused_kernels_inside_cuda_graphs_match_the_eager_steps(bf16):
    tokenizer, transformer = var_models()
    tokenizer, transformer = tokenizer.cuda(), transformer.cuda()
    eager = ScaleSampler(tokenizer, transformer)
    fused_transformer = ScaleTransformer(transformer.config).cuda().eval()
    fused_transformer.load_state_dict(transformer.state_dict())
    graphed = ScaleSampler(tokenizer, fused_transformer.use_fused_kernels(), cuda_graphs=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        for labels in ([1, 2, 3], [4, 5, 6]):  # the second call replays
            want = eager.sample(labels, config=CONFIG, generator=torch.Generator("cuda").manual_seed(0))
            got = graphed.sample(labels, config=CONFIG, generator=torch.Generator("cuda").manual_seed(0))
            assert (got.tokens == want.tokens).float().mean() >= (0.9 if bf16 else 0.99)
    assert graphed.steps.num_captures == 1


def test_a_device_where_the_kernels_do_not_compile_gets_one_clear_error(monkeypatch):
    def broken(function, **_):
        def compiled(*args):
            raise RuntimeError("no working C++ compiler found\n(long inductor trace)")

        return compiled

    monkeypatch.setattr(torch, "compile", broken)
    fused.fused_regions.cache_clear()
    fused._compile_failure.cache_clear()
    try:
        _, transformer = var_models()
        with pytest.raises(ValueError, match=r"fused kernels do not compile on cpu \(RuntimeError: no working C\+\+ "):
            transformer.use_fused_kernels()
        assert not transformer.fused_kernels
    finally:
        fused.fused_regions.cache_clear()
        fused._compile_failure.cache_clear()


def test_a_variant_that_fails_to_compile_after_the_check_gets_one_clear_error(regions):
    # The check compiles one float32 region; a later dtype or region may still fail (a GPU whose triton lacks bf16).
    import torch._functorch.config
    import torch._inductor.config

    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)  # rank 4: a variant no other test compiles
    with (
        torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}),
        torch._functorch.config.patch(enable_autograd_cache=False),
        pytest.raises(ValueError, match=r"^fused kernels do not compile gated_add for float64 inputs \(.*C\+\+"),
    ):
        regions.gated_add(x, x, x)
