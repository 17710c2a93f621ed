"""Discriminator shapes and tokenizer losses (SSIM, LPIPS formulation, hinge, adaptive weight)."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nextscale.tokenizer.discriminator import DiscriminatorConfig, PatchDiscriminator, logits_side
from nextscale.tokenizer.losses import (
    LPIPS,
    MultiScaleSSIMLoss,
    adaptive_adversarial_weight,
    build_perceptual_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    reconstruction_loss,
)


@pytest.mark.parametrize(
    ("side", "layers", "norm", "grid"), [(32, 2, "group", 6), (16, 2, "none", 2), (64, 3, "group", 6)]
)
def test_discriminator_shapes(side, layers, norm, grid):
    disc = PatchDiscriminator(DiscriminatorConfig(in_channels=1, base_channels=32, num_layers=layers, norm=norm))
    assert disc(torch.randn(3, 1, side, side)).shape == (3, 1, grid, grid)
    assert disc(torch.randn(1, 1, side, side)).shape == (1, 1, grid, grid)  # one sample works (no BatchNorm)


@pytest.mark.parametrize(("side", "layers", "fits"), [(16, 3, 2), (20, 3, 2), (8, 2, 1), (4, 1, None), (24, 3, 3)])
def test_discriminator_too_deep_for_the_images_is_refused_up_front(side, layers, fits):
    config = DiscriminatorConfig(in_channels=1, base_channels=32, num_layers=layers)
    if fits == layers:
        assert logits_side(config, side) == PatchDiscriminator(config)(torch.zeros(1, 1, side, side)).shape[-1]
        return
    with pytest.raises((RuntimeError, ValueError)):  # what the forward would do at the discriminator's start step
        PatchDiscriminator(config).train()(torch.zeros(1, 1, side, side))
    advice = f"--disc-layers {fits}" if fits else "without a discriminator"
    with pytest.raises(ValueError, match=f"{side} px images are too small .*{advice}"):
        logits_side(config, side)


def test_discriminator_config_errors():
    with pytest.raises(ValueError, match="norm"):
        DiscriminatorConfig(norm="batch")


def test_pixel_and_ssim_losses():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert reconstruction_loss(x, x) == 0
    assert reconstruction_loss(x + 0.5, x, l1_weight=1.0, l2_weight=1.0) == pytest.approx(0.75)
    ssim_loss = MultiScaleSSIMLoss()
    assert ssim_loss(x, x).abs() < 1e-5
    assert ssim_loss(torch.rand_like(x), x) > 0.5
    with pytest.raises(ValueError, match="window"):
        ssim_loss(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))


def test_ssim_is_float32_under_bf16_autocast():
    # bright, low-contrast images: the variances E[x^2] - E[x]^2 are lost in bf16 convolutions (1 - SSIM 0.87)
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 0.1 + 0.85
    y = x + 0.02 * torch.randn_like(x)
    loss = MultiScaleSSIMLoss()
    expected = loss(y, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(y, x)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected.item(), rel=1e-5)


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        first = torch.relu(self.a(x))
        return [first, torch.relu(self.b(first))]


def test_lpips_formulation_and_local_files(tmp_path):
    torch.manual_seed(0)
    backbone = TinyBackbone()
    x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    heads = [torch.rand(1, 4, 1, 1), torch.rand(1, 6, 1, 1)]
    lpips = LPIPS(backbone, heads)
    assert lpips(x, x) == 0 and lpips(x, y) > 0
    # By hand: unit-normalise channels, squared difference, head-weighted channel sum, spatial mean, layer sum.
    fx, fy = backbone((x - lpips.shift) / lpips.scale), backbone((y - lpips.shift) / lpips.scale)
    expected = sum(
        ((a / (a.norm(dim=1, keepdim=True) + 1e-10) - b / (b.norm(dim=1, keepdim=True) + 1e-10)).square() * w)
        .sum(1)
        .mean()
        for a, b, w in zip(fx, fy, heads)
    )
    assert lpips(x, y) == pytest.approx(expected.item(), rel=1e-5)
    # without heads: the paper's baseline, every channel weighted 1 (a channel sum, not a mean)
    ones = [torch.ones(1, 4, 1, 1), torch.ones(1, 6, 1, 1)]
    assert LPIPS(backbone)(x, y) == pytest.approx(LPIPS(backbone, ones)(x, y).item(), rel=1e-6)
    torch.jit.script(backbone).save(str(tmp_path / "backbone.pt"))
    save_file({"lin0.weight": heads[0], "lin1.model.1.weight": heads[1]}, str(tmp_path / "heads.safetensors"))
    loaded = build_perceptual_loss("lpips", tmp_path / "backbone.pt", tmp_path / "heads.safetensors")
    assert loaded(x, y) == pytest.approx(lpips(x, y).item(), rel=1e-5)
    with pytest.raises(ValueError, match="local backbone"):
        build_perceptual_loss("lpips")
    with pytest.raises(FileNotFoundError):
        build_perceptual_loss("lpips", tmp_path / "missing.safetensors")


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # relu(1 - real) = [0, 0.5] -> 0.25; relu(1 + fake) = [0, 1] -> 0.5; total 0.5 * 0.75
    assert hinge_discriminator_loss(real, fake) == pytest.approx(0.375)
    assert hinge_generator_loss(fake) == pytest.approx(1.0)


def test_adaptive_weight_under_fp16_uses_the_loss_scale():
    # Gradients at the output of about one fp16 subnormal step (as L1's 1 / numel at 256 px, batch 64): unscaled,
    # they round to a multiple of 6e-8 and the weight is far off; scaled by the GradScaler's scale it is exact.
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 3, 1)
    disc = nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, 1, 1)).requires_grad_(False)
    features, target = torch.randn(4, 8, 32, 32), torch.rand(4, 3, 32, 32) * 2 - 1

    def weight(fp16: bool, loss_scale: float = 1.0) -> float:
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            recon = conv(features)
            nll = 1e-3 * reconstruction_loss(recon, target)  # gradient 1e-3 / 12288 = 8e-8 per output value
            gan = 1e-3 * hinge_generator_loss(disc(recon))
            return adaptive_adversarial_weight(nll, gan, conv.weight, loss_scale=loss_scale).item()

    expected = weight(fp16=False)
    assert weight(fp16=False, loss_scale=2.0**11) == pytest.approx(expected, rel=1e-6)
    assert weight(fp16=True) != pytest.approx(expected, rel=0.05)  # the underflow this guards against
    assert weight(fp16=True, loss_scale=2.0**11) == pytest.approx(expected, rel=0.01)


def test_adaptive_weight_is_gradient_norm_ratio():
    weight = torch.tensor([1.0, 2.0], requires_grad=True)
    nll = (3 * weight).sum()  # gradient (3, 3), norm 3 sqrt 2
    gan = (weight * 0.5).sum()  # gradient (0.5, 0.5), norm 0.5 sqrt 2
    assert adaptive_adversarial_weight(nll, gan, weight) == pytest.approx(3 * 2**0.5 / (0.5 * 2**0.5 + 1e-4))
    assert adaptive_adversarial_weight(nll, gan, weight, max_weight=2.0) == 2.0
