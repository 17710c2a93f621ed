import pytest
import torch

from nextscale.sampling.guidance import SamplingConfig, ScaleOverride
from nextscale.sampling.logits import (
    classifier_free_guidance,
    filter_logits,
    gumbel_softmax,
    sample_tokens,
    top_k_filter,
    top_p_filter,
)

# The official unit cases: (top_k, top_p) with 0 meaning "off" there and None here.
UNIT_CASES = [(None, None), (900, None), (None, 0.95), (900, 0.95), (50, 0.5)]


@pytest.mark.parametrize("case", range(len(UNIT_CASES)))
def test_filters_and_draws_match_the_official_unit_cases(parity, case):
    top_k, top_p = UNIT_CASES[case]
    logits = parity["unit_logits"].clone()
    generator = torch.Generator().manual_seed(7)
    filtered = filter_logits(logits, top_k=top_k, top_p=top_p)
    assert torch.equal(torch.isfinite(filtered), parity[f"unit{case}_kept"])
    draws = sample_tokens(filtered, generator, num_samples=parity[f"unit{case}_idx"].shape[-1])
    assert torch.equal(draws, parity[f"unit{case}_idx"])
    assert torch.equal(logits, parity["unit_logits"]), "filters must not mutate their input"


def test_top_k_keeps_ties_and_exactly_the_k_largest_otherwise():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.5]])
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [[True, False, True, True, False]]
    distinct = torch.randn(4, 100)
    kept = torch.isfinite(top_k_filter(distinct, 7))
    assert kept.sum(-1).tolist() == [7] * 4
    assert torch.equal(kept, distinct >= distinct.topk(7, dim=-1).values[:, -1:])


def test_top_p_keeps_the_smallest_nucleus_with_enough_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(top_p_filter(probs.log(), 0.8))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(top_p_filter(probs.log(), 0.81))
    assert kept.tolist() == [[True, True, True, False]]
    # the largest entry always survives, even for a tiny top_p
    assert torch.isfinite(top_p_filter(probs.log(), 1e-6)).tolist() == [[True, False, False, False]]


def test_none_means_off_and_bad_values_raise():
    logits = torch.randn(2, 3, 10)
    assert torch.equal(filter_logits(logits), logits)
    for kwargs in [
        dict(top_k=0),
        dict(top_k=-1),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(temperature=0.0),
        dict(cfg=-1.0),
        dict(top_k=2.5),
    ]:
        with pytest.raises(ValueError):
            SamplingConfig(**kwargs)


def test_temperature_sharpens():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    cold = filter_logits(logits, temperature=0.5).softmax(-1)
    assert cold[0, 2] > logits.softmax(-1)[0, 2]


def test_cfg_combination_and_official_ramp():
    cond, uncond = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(classifier_free_guidance(cond, uncond, 0.0), cond)
    assert classifier_free_guidance(cond, uncond, 2.0).tolist() == [4.0, -2.0]
    config = SamplingConfig(cfg=1.5)
    weights = [config.settings(k, 10).cfg_weight for k in range(10)]
    assert weights[0] == 0.0 and weights[-1] == 1.5 and weights[3] == pytest.approx(0.5)
    constant = SamplingConfig(cfg=2.0, cfg_schedule="constant")
    assert constant.settings(0, 10).cfg_weight == 2.0
    assert not SamplingConfig(cfg=0.0).uses_guidance(10)


def test_per_scale_overrides_replace_only_their_scale():
    config = SamplingConfig(cfg=1.0, top_k=10, overrides=(ScaleOverride(scale_idx=2, top_k=3, cfg=4.0),))
    assert config.settings(2, 5).top_k == 3 and config.settings(2, 5).cfg_weight == 2.0
    assert config.settings(1, 5).top_k == 10
    with pytest.raises(ValueError):
        SamplingConfig(overrides=(ScaleOverride(scale_idx=0, top_p=2.0),))


def test_draws_follow_the_generator():
    logits = torch.randn(2, 5, 50)
    a = sample_tokens(logits, torch.Generator().manual_seed(3))
    b = sample_tokens(logits, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (2, 5, 1)
    soft = gumbel_softmax(logits, 0.5, torch.Generator().manual_seed(0))
    assert torch.allclose(soft.sum(-1), torch.ones(2, 5))
    assert torch.equal(soft, gumbel_softmax(logits, 0.5, torch.Generator().manual_seed(0)))


def test_overflowed_logits_are_a_clear_error_not_a_multinomial_failure():
    logits = torch.tensor([[[1e38, -1e38, 0.0]]]) * 10  # an extreme cfg: inf - inf in the softmax
    with pytest.raises(ValueError, match="the logits overflowed to infinity or NaN .*cfg of a few units"):
        sample_tokens(logits, torch.Generator().manual_seed(0))
