"""Numerical parity with the official FoundationVision/VAR VQVAE (fixtures in ../shared/reference/var_parity).

The fixture tokenizer is the official class at width ch=32 with 256 px images and the 256 px schedule.
Everything is computed once per module (the 256 px encoder/decoder takes about a second on a CPU).
"""

from pathlib import Path

import pytest
import torch

from nextscale.scales import SIDES_256
from nextscale.tokenizer import load_official_vqvae
from reference_fixtures import require

PARITY = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "var_parity"


@pytest.fixture(scope="module")
def parity():
    model = load_official_vqvae(require(PARITY / "vqvae.pth"), SIDES_256)
    fixture = torch.load(require(PARITY / "var_parity_d2.pt"), map_location="cpu", weights_only=True)
    quantizer = model.quantizer
    with torch.no_grad():
        features = model.encode_features(fixture["images"])
        fhats = quantizer.features_to_fhats(features)
        truth = [fixture[f"idx_s{k}"] for k in range(len(SIDES_256))]
        # The sampler's path: codes of the sampled tokens -> next_input, scale by scale.
        batch, code_dim, side = features.shape[0], model.config.code_dim, SIDES_256[-1]
        f_hat = torch.zeros(batch, code_dim, side, side)
        sample_fhats = []
        for k, scale_side in enumerate(SIDES_256):
            h_BChw = (
                quantizer.lookup(fixture[f"sample_idx_s{k}"])
                .transpose(1, 2)
                .reshape(batch, code_dim, scale_side, scale_side)
            )
            f_hat, _ = quantizer.next_input(k, f_hat, h_BChw)
            sample_fhats.append(f_hat.clone())
        results = {
            "features": features,
            "indices": quantizer.features_to_indices(features),
            "fhats": torch.stack(fhats),
            "teacher_forcing": model.teacher_forcing_input(truth),
            "fhat_from_idx": quantizer.indices_to_fhat(truth),
            "recon": model.decode_fhat(fhats[-1]),
            "sample_fhats": torch.stack(sample_fhats),
            "sample_img": model.decode_fhat(f_hat),
        }
    return fixture, results


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_encoder_features(parity):
    fixture, results = parity
    assert _max_diff(results["features"], fixture["vae_f"]) <= 1e-5


@pytest.mark.parametrize("scale_idx", range(len(SIDES_256)))
def test_indices_exact(parity, scale_idx):
    fixture, results = parity
    ours = results["indices"][scale_idx]
    assert ours.dtype == torch.int64
    assert torch.equal(ours, fixture[f"idx_s{scale_idx}"])


def test_cumulative_fhats(parity):
    fixture, results = parity
    assert _max_diff(results["fhats"], fixture["fhat_scales"]) <= 1e-5


def test_teacher_forcing_input(parity):
    fixture, results = parity
    assert results["teacher_forcing"].dtype == torch.float32
    assert _max_diff(results["teacher_forcing"], fixture["x_BLCv_wo_first_l"]) <= 1e-5


def test_fhat_from_indices(parity):
    fixture, results = parity
    assert _max_diff(results["fhat_from_idx"], fixture["fhat_final_from_idx"]) <= 1e-5


def test_reconstruction(parity):
    fixture, results = parity
    assert _max_diff(results["recon"], fixture["recon"]) <= 2e-4


def test_sampler_path_fhats_and_image(parity):
    fixture, results = parity
    assert _max_diff(results["sample_fhats"], fixture["sample_fhat_scales"]) <= 1e-5
    assert _max_diff(results["sample_img"], fixture["sample_img"] * 2 - 1) <= 1e-4
