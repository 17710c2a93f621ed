"""A tokenizer moved to another scale schedule (train --raster, tokenize --scale-sides) keeps trained weights."""

import dataclasses

import torch

from nextscale.presets import tiny
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.export import with_scale_sides


def per_scale_phi_tokenizer() -> MultiScaleVQVAE:
    """A tiny (1, 2, 4) tokenizer with one Phi per scale, each Phi filled with its own index (tell-tale weights)."""
    config, _ = tiny()
    torch.manual_seed(0)
    tokenizer = MultiScaleVQVAE(dataclasses.replace(config, num_phi=0, phi_ratio=0.5))
    with torch.no_grad():
        for idx, phi in enumerate(tokenizer.quantizer.phis):
            phi.conv.weight.fill_(float(idx))
    return tokenizer


def phi_fill(tokenizer: MultiScaleVQVAE, scale_idx: int) -> float:
    return float(tokenizer.quantizer.phi(scale_idx).conv.weight.detach().flatten()[0])


def test_one_phi_per_scale_tokenizer_on_one_map_takes_the_finest_phi():
    tokenizer = per_scale_phi_tokenizer()
    raster = with_scale_sides(tokenizer, (4,))  # used to end in KeyError: 'quantizer.phis.1.conv.weight'
    assert phi_fill(raster, 0) == 2.0
    assert torch.equal(raster.quantizer.codebook.weight, tokenizer.quantizer.codebook.weight)


def test_one_phi_per_scale_tokenizer_on_more_scales_has_no_untrained_phi():
    tokenizer = per_scale_phi_tokenizer()
    more = with_scale_sides(tokenizer, (1, 2, 3, 4))  # used to keep a random Phi for the new finest scale
    assert [phi_fill(more, k) for k in range(4)] == [0.0, 1.0, 1.0, 2.0]
    assert len(more.quantizer.phis) == 4
