"""PatchGAN discriminator for tokenizer training (training only; the tokenizer never imports it).

A stack of 4x4 convolutions that maps an image to a grid of real/fake logits, one per overlapping
patch, so the adversarial loss judges local texture rather than global layout. Layout: one stride-2
conv without norm, ``num_layers - 1`` more stride-2 convs that double the width (capped at 8x),
one stride-1 conv, and a stride-1 conv to one channel.

Normalisation: GroupNorm (default) or none. BatchNorm, used by the original pix2pix/VQGAN
discriminator, is avoided on purpose: its statistics differ per rank under DDP (unless synchronised),
it fails with one-sample batches and it couples real and fake samples of a batch.

Receptive field: 70 px for three layers (the classic "70x70 PatchGAN"); 34 px for two (suits 32 px images).

References: Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (PatchGAN),
CVPR 2017; Esser et al., "Taming Transformers" (VQGAN ``NLayerDiscriminator``), CVPR 2021.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

NORMS = ("group", "none")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Shape of a PatchGAN discriminator.

    Attributes:
        in_channels: image channels.
        base_channels: width of the first conv.
        num_layers: number of stride-2 convs (3 for 256 px images, 2 for 32 px).
        norm: "group" (GroupNorm with up to 32 groups) or "none".
    """

    in_channels: int = 3
    base_channels: int = 64
    num_layers: int = 3
    norm: str = "group"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.num_layers < 1 or self.base_channels < 1 or self.in_channels < 1:
            raise ValueError("num_layers, base_channels and in_channels must be >= 1")


def _groups(channels: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    return nn.GroupNorm(_groups(channels), channels)


def _logits_side(config: DiscriminatorConfig, image_side: int) -> int | None:
    """The logit grid's side for ``image_side`` px images, or None when the images are too small (see logits_side)."""
    side = image_side
    for layer_idx in range(config.num_layers + 2):  # the first conv, the num_layers normed ones, the output conv
        if side + 2 < 4:  # a 4x4 kernel must fit in the padded input
            return None
        stride = 2 if layer_idx < config.num_layers else 1
        side = (side - 2) // stride + 1
        out = config.base_channels * min(2**layer_idx, 8)
        if 0 < layer_idx <= config.num_layers and config.norm == "group" and out // _groups(out) * side**2 < 2:
            return None  # GroupNorm needs more than one value per group in training
    return side


def logits_side(config: DiscriminatorConfig, image_side: int) -> int:
    """Side of the logit grid a PatchGAN of ``config`` gives for square ``image_side`` px images.

    Each 4x4 conv (padding 1) maps a side s to (s - 2) // stride + 1 and needs s >= 2. Worked example, 16 px and
    three layers: 16 -> 8 -> 4 -> 2 (stride 2), -> 1 (stride 1), and the output conv would need a side of 2.
    Checked before training, so that a run does not die at its discriminator's start step.

    Raises:
        ValueError: the images are too small for ``config.num_layers`` stride-2 layers (the message names the most
            that fit).
    """
    side = _logits_side(config, image_side)
    if side is not None:
        return side
    fitting = [
        n
        for n in range(config.num_layers - 1, 0, -1)
        if _logits_side(dataclasses.replace(config, num_layers=n), image_side)
    ]
    advice = f"use at most {fitting[0]} (--disc-layers {fitting[0]})" if fitting else "train without a discriminator"
    raise ValueError(
        f"{image_side} px images are too small for a PatchGAN discriminator with {config.num_layers} stride-2 "
        f"layers; {advice}"
    )


class PatchDiscriminator(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> patch logits (B, 1, h, w).

    For H = W = 32 and two layers the grid is 6 x 6; for 256 px and three layers it is 30 x 30.
    """

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        width = config.base_channels
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for layer_idx in range(1, config.num_layers + 1):
            stride = 2 if layer_idx < config.num_layers else 1
            out = config.base_channels * min(2**layer_idx, 8)
            # Convs followed by a norm need no bias (the norm's shift replaces it).
            has_norm = config.norm != "none"
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=not has_norm),
                _norm(config.norm, out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """DCGAN init: conv weights N(0, 0.02), norm gains N(1, 0.02); biases 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.GroupNorm):
                nn.init.normal_(module.weight, 1.0, 0.02)
                module.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)
