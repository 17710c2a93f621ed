"""The VQGAN convolutional encoder and decoder of the VAR tokenizer.

Layout (latent-diffusion vq-f16 as used by VAR): per level a few ResNet blocks, single-head spatial
attention after every block of the coarsest level, a stride-2 downsampling (encoder) or nearest x2
upsampling (decoder) between levels, and a middle block-attention-block. Every op and its order match
the official ``models/basic_vae.py`` so that converted weights give the same numbers; only the
module names differ (``official.py`` maps them).

References:
    Esser et al., "Taming Transformers for High-Resolution Image Synthesis" (VQGAN), CVPR 2021.
    Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022 (vq-f16).
    Tian et al., "Visual Autoregressive Modeling", NeurIPS 2024; FoundationVision/VAR ``models/basic_vae.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nextscale.tokenizer.config import TokenizerConfig


def group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups and eps 1e-6 as in VQGAN; the config checks that every width is a multiple of 32.
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-norm residual block: two 3x3 convs, a 1x1 shortcut only when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        # In-place SiLU on the fresh GroupNorm output saves a copy; GroupNorm's backward needs only its input.
        h = self.conv1(F.silu(self.norm1(x_BCHW), inplace=True))
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=True)))
        shortcut = x_BCHW if self.shortcut is None else self.shortcut(x_BCHW)
        return shortcut + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with one fused 1x1 qkv conv.

    The qkv output channels are the three blocks q = [0:C], k = [C:2C], v = [2C:3C]. The score scale is
    1/sqrt(C), applied after the q.k product, and the products are explicit ``bmm`` calls in the official
    order (so converted weights give bit-comparable results; at 16x16 the H*W x H*W matrix is small).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)
        self.scale = int(channels) ** -0.5

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(self.norm(x_BCHW))  # (B, 3C, H, W)
        B, _, H, W = qkv.shape
        C = self.channels
        q, k, v = qkv.reshape(B, 3, C, H, W).unbind(1)
        q_BNC = q.reshape(B, C, H * W).permute(0, 2, 1).contiguous()  # N = H*W positions
        k_BCN = k.reshape(B, C, H * W).contiguous()
        weights_BNN = torch.softmax(torch.bmm(q_BNC, k_BCN).mul_(self.scale), dim=2)  # [b, query, key]
        v_BCN = v.reshape(B, C, H * W).contiguous()
        h_BCN = torch.bmm(v_BCN, weights_BNN.permute(0, 2, 1).contiguous())  # h[:, :, i] = sum_j w[i, j] v[:, :, j]
        return x_BCHW + self.proj(h_BCN.view(B, C, H, W))


class Downsample(nn.Module):
    """Halve the resolution: zero-pad right and bottom by one pixel, then a 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x_BCHW, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x_BCHW, scale_factor=2, mode="nearest"))


class MiddleBlock(nn.Module):
    """ResNet block -> attention (optional) -> ResNet block, at the coarsest resolution."""

    def __init__(self, channels: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.block1 = ResnetBlock(channels, channels, dropout)
        self.attention = AttentionBlock(channels) if attention else nn.Identity()
        self.block2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.block2(self.attention(self.block1(x_BCHW)))


class Level(nn.Module):
    """One resolution level: ResNet blocks, each optionally followed by attention, then an optional resampler.

    Args:
        widths: (in, out) channels of each ResNet block.
        dropout: dropout inside the blocks.
        attention: attention after every block (the coarsest level of the VAR layout).
        resample: "down" (encoder), "up" (decoder) or None (the level that keeps its size).
    """

    def __init__(self, widths: list[tuple[int, int]], dropout: float, attention: bool, resample: str | None):
        super().__init__()
        out = widths[-1][1]
        self.blocks = nn.ModuleList(ResnetBlock(i, o, dropout) for i, o in widths)
        self.attentions = nn.ModuleList(AttentionBlock(o) for _, o in widths) if attention else nn.ModuleList()
        self.downsample = Downsample(out) if resample == "down" else None
        self.upsample = Upsample(out) if resample == "up" else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.blocks):
            h = block(h)
            if len(self.attentions):
                h = self.attentions[j](h)
        if self.downsample is not None:
            h = self.downsample(h)
        if self.upsample is not None:
            h = self.upsample(h)
        return h


class Encoder(nn.Module):
    """Image (B, in_channels, H, W) -> latent (B, code_dim, H / f, W / f) with f = config.downsample_factor."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        base, mults = config.base_channels, config.channel_multipliers
        num_levels = len(mults)
        self.conv_in = nn.Conv2d(config.in_channels, base, kernel_size=3, padding=1)
        levels = []
        width = base
        for i, mult in enumerate(mults):
            out = base * mult
            widths = [(width if j == 0 else out, out) for j in range(config.num_res_blocks)]
            last = i == num_levels - 1
            attention = last and config.attention_in_last_level
            levels.append(Level(widths, config.dropout, attention, None if last else "down"))
            width = out
        self.levels = nn.ModuleList(levels)
        self.middle = MiddleBlock(width, config.dropout, config.attention_in_middle)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, config.code_dim, kernel_size=3, padding=1)

    def forward(self, images_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(images_BCHW)
        for level in self.levels:
            h = level(h)
        h = self.middle(h)  # (B, C_top, H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))  # (B, code_dim, H/f, W/f)


class Decoder(nn.Module):
    """Latent (B, code_dim, h, w) -> image (B, in_channels, h * f, w * f), unbounded (callers clamp).

    ``levels[i]`` is resolution level i (``levels[0]`` is full resolution), as in the encoder; the
    forward pass runs them from the coarsest to the finest. Each level has num_res_blocks + 1 blocks.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        base, mults = config.base_channels, config.channel_multipliers
        num_levels = len(mults)
        width = base * mults[-1]
        self.conv_in = nn.Conv2d(config.code_dim, width, kernel_size=3, padding=1)
        self.middle = MiddleBlock(width, config.dropout, config.attention_in_middle)
        levels: list[Level] = []
        for i in reversed(range(num_levels)):
            out = base * mults[i]
            widths = [(width if j == 0 else out, out) for j in range(config.num_res_blocks + 1)]
            attention = i == num_levels - 1 and config.attention_in_last_level
            levels.insert(0, Level(widths, config.dropout, attention, "up" if i != 0 else None))
            width = out
        self.levels = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, config.in_channels, kernel_size=3, padding=1)

    def forward(self, latent_BChw: torch.Tensor) -> torch.Tensor:
        h = self.middle(self.conv_in(latent_BChw))
        for level in reversed(self.levels):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))  # (B, in_channels, H, W)
