"""Tokenizer training losses: reconstruction, perceptual, hinge adversarial, VQGAN adaptive weight.

Training only; ``vqvae.py`` never imports this module. The official VAR tokenizer recipe is unpublished
(VAR_REFERENCE.md section 8, item 16); this follows VQGAN: pixel loss + perceptual loss + a PatchGAN
hinge loss switched on after a warm-up, balanced by the ratio of gradient norms at the decoder's last layer.

Perceptual loss, two choices:
- ``"ssim"`` (the default): 1 - multi-scale SSIM. No network, no weights, cheap on a CPU. Chosen as the
  default because the project trains offline (no LPIPS download) and its bundled model is 32 px
  Fashion-MNIST, where an ImageNet network sees almost nothing and costs most of the step on a CPU.
- ``"lpips"``: the real LPIPS formulation (channel-unit-normalised feature differences of a frozen
  backbone, per-layer non-negative 1x1 heads, spatial mean, sum over layers) with the backbone and the
  heads loaded from LOCAL files the user supplies (:meth:`LPIPS.from_files`); nothing downloads.

References: Esser et al., "Taming Transformers for High-Resolution Image Synthesis" (VQGAN), CVPR 2021
(Eq. 7, adaptive weight); Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric" (LPIPS), CVPR 2018; Wang et al., "Multiscale structural similarity", 2003; Lim & Ye, "Geometric
GAN" (hinge loss), 2017.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

PERCEPTUAL_KINDS = ("ssim", "lpips", "none")


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, l1_weight: float = 1.0, l2_weight: float = 0.0
) -> torch.Tensor:
    """``l1_weight * mean|x - y| + l2_weight * mean (x - y)^2`` over all pixels; images (B, C, H, W)."""
    diff = reconstruction.float() - target.float()
    loss = diff.new_zeros(())
    if l1_weight:
        loss = loss + l1_weight * diff.abs().mean()
    if l2_weight:
        loss = loss + l2_weight * diff.square().mean()
    return loss


# ------------------------------------------------------------------------------------------- SSIM
def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    kernel_1d = torch.exp(-coords.square() / (2 * sigma**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    return (kernel_1d[:, None] * kernel_1d[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(
    x: torch.Tensor, y: torch.Tensor, window_size: int = 7, sigma: float = 1.5, data_range: float = 2.0
) -> torch.Tensor:
    """Per-image SSIM (B,) of images (B, C, H, W); [-1, 1] images have data_range 2.

    Valid-region Gaussian windows (no padding), constants K1 = 0.01, K2 = 0.03 as in Wang et al. 2004.
    Computed in float32 with autocast off: the variances are differences of close numbers (E[x^2] - E[x]^2), which
    bfloat16 convolutions lose. Worked example: bright low-contrast images, 1 - SSIM 0.03 in float32, 0.87 in bf16.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, y = x.float(), y.float()
        channels = x.shape[1]
        window = _gaussian_window(window_size, sigma, channels, x.device, x.dtype)
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

        def blur(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(t, window, groups=channels)

        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x.square()
        var_y = blur(y * y) - mu_y.square()
        cov = blur(x * y) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        ssim_map = numerator / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
        return ssim_map.flatten(1).mean(1)


class MultiScaleSSIMLoss(nn.Module):
    """1 - mean SSIM over a pyramid (each level halves the side; stops when the side drops below the window).

    A simplified MS-SSIM: the levels are averaged with equal weights instead of Wang et al.'s product of
    powers, which is undefined for negative SSIM values early in training.

    Args:
        window_size: Gaussian window side (7 suits 16-32 px images).
        max_levels: most pyramid levels.
    """

    def __init__(self, window_size: int = 7, max_levels: int = 3) -> None:
        super().__init__()
        self.window_size = window_size
        self.max_levels = max_levels

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = reconstruction.float(), target.float()
        scores = []
        for _ in range(self.max_levels):
            if min(x.shape[-2:]) < self.window_size:
                break
            scores.append(ssim(x, y, self.window_size))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        if not scores:
            raise ValueError(
                f"images of side {min(reconstruction.shape[-2:])} are smaller than the SSIM window "
                f"{self.window_size}; use a smaller window_size"
            )
        return 1 - torch.stack(scores).mean()


# ------------------------------------------------------------------------------------------ LPIPS
# (out_channels or "M" for max-pool) of VGG-16's convolutional part, with the LPIPS taps after ReLUs.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG16_TAPS = (3, 8, 15, 22, 29)  # indices in ``features`` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


class VGG16Features(nn.Module):
    """VGG-16 convolutional trunk returning the five LPIPS feature maps.

    Parameter names equal torchvision's ``vgg16().features`` (``features.0.weight`` ...), so its weights,
    saved once as safetensors, load directly.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in _VGG16_TAPS:
                out.append(x)
        return out


def _read_safetensors(path: Path, what: str, expected: str) -> dict[str, torch.Tensor]:
    """Every tensor of a local .safetensors file; a missing or unreadable file is one error naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found; pass {expected}")
    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError (a pickle, a truncated file) is no OSError or ValueError
        raise ValueError(f"{what} {path} is not a readable .safetensors file ({err}); pass {expected}") from err


class LPIPS(nn.Module):
    """Learned perceptual distance with a frozen backbone and per-layer linear heads.

    d(x, y) = sum_l mean_hw( w_l . (n(f_l(x)) - n(f_l(y)))^2 ), n = unit norm over channels.

    Args:
        backbone: module mapping (B, 3, H, W) normalised images to a list of feature maps.
        head_weights: one non-negative (C_l,) tensor per feature map; None gives every channel weight 1, the
            "baseline" distance of the LPIPS paper (its reference code's ``lpips=False``: a plain channel sum).
        shift, scale: per-channel input normalisation applied to [-1, 1] images (LPIPS's ImageNet values).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head_weights: list[torch.Tensor] | None = None,
        shift: tuple[float, ...] = (-0.030, -0.088, -0.188),
        scale: tuple[float, ...] = (0.458, 0.448, 0.450),
    ) -> None:
        super().__init__()
        self.backbone = backbone.eval()
        for param in self.backbone.parameters():  # frozen (ScriptModules have no requires_grad_())
            param.requires_grad_(False)
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
        self.head_weights = None if head_weights is None else [w.reshape(-1).float() for w in head_weights]

    @classmethod
    def from_files(cls, backbone_path: str | os.PathLike, heads_path: str | os.PathLike | None = None) -> LPIPS:
        """Build from local files: a VGG-16 ``.safetensors`` (torchvision names) or a TorchScript backbone
        (``.pt``/``.pth``, returning a list of feature maps), plus optional heads ``.safetensors`` holding
        ``lin{l}.weight`` (or the LPIPS package's ``lin{l}.model.1.weight``), shapes (1, C_l, 1, 1)."""
        backbone_path = Path(backbone_path)
        if not backbone_path.is_file():
            raise FileNotFoundError(
                f"LPIPS backbone {backbone_path} not found; pass a local VGG-16 .safetensors "
                "or a TorchScript feature extractor"
            )
        if backbone_path.suffix == ".safetensors":
            backbone = VGG16Features()
            tensors = _read_safetensors(backbone_path, "LPIPS backbone", "a torchvision VGG-16 .safetensors")
            state = {k: v for k, v in tensors.items() if k.startswith("features.")}
            if not state:
                raise ValueError(f"{backbone_path} holds no 'features.*' tensors (torchvision VGG-16 names expected)")
            backbone.load_state_dict(state, strict=True)
        else:
            try:  # as evaluate --inception loads its network: a file that is no TorchScript archive is one line
                backbone = torch.jit.load(str(backbone_path), map_location="cpu")
            except RuntimeError as err:
                reason = str(err).split(". ")[0]  # torch adds a paragraph about corrupted checkpoints
                raise ValueError(
                    f"LPIPS backbone {backbone_path} is not a TorchScript feature extractor ({reason}); pass a "
                    "VGG-16 .safetensors (torchvision names) or a file written by torch.jit.save"
                ) from err
        heads = None
        if heads_path is not None:
            tensors = _read_safetensors(Path(heads_path), "LPIPS heads", "a .safetensors of lin{l}.weight tensors")
            heads = []
            for layer_idx in range(len(tensors)):
                key = next(
                    (k for k in (f"lin{layer_idx}.weight", f"lin{layer_idx}.model.1.weight") if k in tensors), None
                )
                if key is None:
                    break
                heads.append(tensors[key])
            if not heads:
                raise ValueError(f"{heads_path} holds no lin0.weight / lin0.model.1.weight head tensors")
        return cls(backbone, heads)

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean distance over the batch (scalar); gray images are repeated to 3 channels."""
        x, y = reconstruction.float(), target.float()
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        features_x = self.backbone((x - self.shift) / self.scale)
        features_y = self.backbone((y - self.shift) / self.scale)
        if self.head_weights is not None and len(self.head_weights) != len(features_x):
            raise ValueError(f"{len(self.head_weights)} LPIPS heads for {len(features_x)} backbone feature maps")
        total = x.new_zeros(())
        for layer_idx, (fx, fy) in enumerate(zip(features_x, features_y)):
            fx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            diff = (fx - fy).square()  # (B, C_l, h, w)
            if self.head_weights is None:
                weighted = diff.sum(1)  # the paper's baseline: w_l = 1 for every channel
            else:
                weighted = torch.einsum("bchw,c->bhw", diff, self.head_weights[layer_idx].to(diff))
            total = total + weighted.mean()
        return total


def build_perceptual_loss(
    kind: str = "ssim", lpips_backbone: str | os.PathLike | None = None, lpips_heads: str | os.PathLike | None = None
) -> nn.Module | None:
    """The perceptual term: ``"ssim"`` (default), ``"lpips"`` (needs ``lpips_backbone``) or ``"none"`` (None)."""
    if kind not in PERCEPTUAL_KINDS:
        raise ValueError(f"perceptual loss must be one of {PERCEPTUAL_KINDS}, got {kind!r}")
    if kind == "none":
        return None
    if kind == "ssim":
        return MultiScaleSSIMLoss()
    if lpips_backbone is None:
        raise ValueError(
            "perceptual loss 'lpips' needs a local backbone file (--lpips-backbone vgg16.safetensors); "
            "nothing is downloaded"
        )
    return LPIPS.from_files(lpips_backbone, lpips_heads)


# -------------------------------------------------------------------------------------- adversarial
def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(G(z)))): push real logits above +1, fake below -1."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """-mean D(G(z)): the generator raises the discriminator's score of its reconstructions."""
    return -logits_fake.float().mean()


def adaptive_adversarial_weight(
    nll_loss: torch.Tensor,
    generator_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    loss_scale: float = 1.0,
) -> torch.Tensor:
    """VQGAN's balance: ||grad_W L_rec|| / (||grad_W L_G|| + 1e-4) at the decoder's last weight W.

    Scaling the adversarial term by this ratio makes its gradient at the output layer as large as the
    reconstruction gradient, whatever the loss magnitudes; clamped to [0, max_weight] and detached.

    Args:
        nll_loss: the reconstruction (+ perceptual) loss.
        generator_loss: the generator's adversarial loss.
        last_layer: the decoder's final conv weight (the same tensor the optimizer updates).
        max_weight: upper clamp.
        reduce: applied to both gradients before the norms; a data-parallel trainer passes a mean over
            ranks so that the weight is the one of the global batch, identical on every rank.
        loss_scale: the fp16 GradScaler's current scale. Both losses are multiplied by it before their
            gradients, which are divided by it again in float32, so that the fp16 gradients at the decoder's output
            do not underflow. Worked example: 256 px, batch 64, L1's gradient per output value is
            1 / 12.6e6 = 7.9e-8, about one fp16 subnormal step; unscaled, the weight came out 20 % low.
    """
    grad_rec = torch.autograd.grad(nll_loss * loss_scale, last_layer, retain_graph=True)[0].float() / loss_scale
    grad_gan = torch.autograd.grad(generator_loss * loss_scale, last_layer, retain_graph=True)[0].float() / loss_scale
    if reduce is not None:
        grad_rec, grad_gan = reduce(grad_rec), reduce(grad_gan)
    weight = grad_rec.norm() / (grad_gan.norm() + 1e-4)
    if loss_scale != 1.0:
        # an fp16 overflow (inf / inf) marks a step the scaler skips: a finite weight keeps the loss finite
        weight = torch.nan_to_num(weight, nan=0.0)
    return weight.clamp(0.0, max_weight).detach()
