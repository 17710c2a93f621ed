"""Invariants of the multi-scale residual quantizer on the tiny preset."""

import dataclasses

import pytest
import torch

from nextscale import presets
from nextscale.tokenizer import MultiScaleQuantizer
from nextscale.tokenizer.quantizer import phi_index_table


@pytest.fixture
def config():
    return presets.tiny()[0]


@pytest.fixture
def quantizer(config):
    torch.manual_seed(0)
    return MultiScaleQuantizer(config).eval()


def _features(config, batch=3, seed=1):
    side = config.scale_sides[-1]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.code_dim, side, side, generator=generator)


def test_phi_table_official_k10():
    # Scales 2 and 7 are exact ties in exact arithmetic; float64 rounding (as in the official code) decides.
    assert phi_index_table(10, 4) == (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)
    assert phi_index_table(10, 0) == tuple(range(10))
    assert phi_index_table(10, 1) == (0,) * 10
    assert phi_index_table(1, 4) == (3,)  # a single map is the finest scale (the raster baseline)
    assert phi_index_table(3, 2) == (0, 0, 1)


def test_phi_modules_by_sharing_mode(config):
    assert len(MultiScaleQuantizer(dataclasses.replace(config, num_phi=0)).phis) == len(config.scale_sides)
    assert len(MultiScaleQuantizer(dataclasses.replace(config, num_phi=1)).phis) == 1
    identity = MultiScaleQuantizer(dataclasses.replace(config, phi_ratio=0.0))
    assert sum(p.numel() for p in identity.phis.parameters()) == 0
    h = torch.randn(2, config.code_dim, 4, 4)
    assert torch.equal(identity.phi(0)(h), h)


def test_quantize_dequantize_reproduces_fhat(quantizer, config):
    f = _features(config)
    indices = quantizer.features_to_indices(f)
    assert [tuple(i.shape) for i in indices] == [(3, s * s) for s in config.scale_sides]
    assert all(i.dtype == torch.int64 for i in indices)
    fhats = quantizer.features_to_fhats(f)
    assert len(fhats) == len(config.scale_sides)
    torch.testing.assert_close(quantizer.indices_to_fhat(indices), fhats[-1], atol=1e-5, rtol=0)
    # every partial sum too: what the first k scales decode to, as the encoder accumulated it
    partial = quantizer.indices_to_fhats(indices)
    assert len(partial) == len(fhats) and torch.equal(partial[-1], quantizer.indices_to_fhat(indices))
    for decoded, encoded in zip(partial, fhats):
        torch.testing.assert_close(decoded, encoded, atol=1e-5, rtol=0)
    assert not torch.equal(partial[0], partial[1])  # each scale adds detail (not one tensor listed K times)


def test_l2_lookup_is_nearest_code(quantizer, config):
    z = torch.randn(50, config.code_dim)
    brute = torch.cdist(z, quantizer.codebook.weight.detach()).argmin(dim=1)
    assert torch.equal(quantizer.nearest_codes(z), brute)


def test_cosine_lookup(config):
    torch.manual_seed(0)
    quantizer = MultiScaleQuantizer(dataclasses.replace(config, lookup="cosine"))
    z = torch.randn(20, config.code_dim)
    codes = torch.nn.functional.normalize(quantizer.codebook.weight.detach(), dim=1)
    expected = (torch.nn.functional.normalize(z, dim=1) @ codes.T).argmax(dim=1)
    assert torch.equal(quantizer.nearest_codes(z), expected)


def test_teacher_forcing_equals_sampler_inputs(quantizer, config):
    f = _features(config)
    indices = quantizer.features_to_indices(f)
    teacher = quantizer.teacher_forcing_input(indices)
    schedule = config.schedule
    assert teacher.shape == (3, schedule.total_tokens - 1, config.code_dim)
    assert teacher.dtype == torch.float32
    batch, side = 3, config.scale_sides[-1]
    f_hat = torch.zeros(batch, config.code_dim, side, side)
    fed = []
    for k, scale_side in enumerate(config.scale_sides):
        h = quantizer.lookup(indices[k]).transpose(1, 2).reshape(batch, config.code_dim, scale_side, scale_side)
        f_hat_out, next_map = quantizer.next_input(k, f_hat, h)
        assert f_hat_out is f_hat  # updated in place, like the official code
        if k < len(config.scale_sides) - 1:
            fed.append(next_map.flatten(2).transpose(1, 2))
        else:
            assert next_map is f_hat
    torch.testing.assert_close(torch.cat(fed, dim=1), teacher, atol=1e-6, rtol=0)
    torch.testing.assert_close(f_hat, quantizer.indices_to_fhat(indices), atol=1e-6, rtol=0)


def test_forward_straight_through_and_loss(quantizer, config):
    f = _features(config).requires_grad_(True)
    out = quantizer.train()(f)
    assert out.f_hat.shape == f.shape
    torch.testing.assert_close(out.f_hat.detach(), quantizer.features_to_fhats(f.detach())[-1], atol=1e-5, rtol=0)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.hits.shape == (len(config.scale_sides), config.vocab_size)
    assert out.hits.sum(dim=1).tolist() == [3.0 * s * s for s in config.scale_sides]
    (out.f_hat.sum() + out.loss).backward()
    assert f.grad is not None and torch.all(f.grad.abs() > 0)
    assert quantizer.codebook.weight.grad is not None and quantizer.codebook.weight.grad.abs().sum() > 0
    assert quantizer.phis[0].conv.weight.grad is not None


def test_usage_ema_rule(quantizer, config):
    num_scales = len(config.scale_sides)
    f = _features(config)
    quantizer.eval()(f)
    assert quantizer.code_usage_ema.abs().sum() == 0 and int(quantizer.usage_updates) == 0  # eval: untouched
    quantizer.train()(f, update_usage=False)
    assert int(quantizer.usage_updates) == 0
    hits = torch.rand(num_scales, config.vocab_size)
    quantizer.update_usage(hits)
    # Only scale 0 of the very first update copies; the following scales already blend 0.9 / 0.1.
    torch.testing.assert_close(quantizer.code_usage_ema[0], hits[0])
    torch.testing.assert_close(quantizer.code_usage_ema[1], hits[1] * 0.1)
    assert int(quantizer.usage_updates) == num_scales
    quantizer.usage_updates.fill_(100)
    before = quantizer.code_usage_ema.clone()
    quantizer.update_usage(hits)
    torch.testing.assert_close(quantizer.code_usage_ema, before * 0.99 + hits * 0.01)
    percent = quantizer.usage_percent(0.5)
    assert len(percent) == num_scales and all(0.0 <= p <= 100.0 for p in percent)
    with pytest.raises(ValueError, match="hits must have shape"):
        quantizer.update_usage(torch.zeros(2, 2))


def test_restart_dead_codes(quantizer, config):
    quantizer.code_usage_ema.zero_()
    quantizer.code_usage_ema[:, :10] = 5.0
    f = _features(config)
    kept = quantizer.codebook.weight[:10].detach().clone()
    restarted = quantizer.restart_dead_codes(f, min_hits=1.0, generator=torch.Generator().manual_seed(0))
    assert restarted == config.vocab_size - 10
    assert torch.equal(quantizer.codebook.weight[:10], kept)
    rows = f.permute(0, 2, 3, 1).reshape(-1, config.code_dim)
    new = quantizer.codebook.weight[10:].detach()
    assert torch.all((new[:, None, :] == rows[None]).all(-1).any(-1))  # every new code is a feature row
    assert quantizer.restart_dead_codes(f, min_hits=1.0) == 0  # they got a grace period


def test_shape_errors(quantizer, config):
    with pytest.raises(ValueError, match="latent features must have shape"):
        quantizer.features_to_indices(torch.zeros(1, config.code_dim, 3, 3))
    indices = quantizer.features_to_indices(_features(config))
    with pytest.raises(ValueError, match="expected a list of"):
        quantizer.indices_to_fhat(indices[:-1])
    with pytest.raises(ValueError, match="indices of scale 1"):
        quantizer.teacher_forcing_input([indices[0], indices[2], indices[2]])
