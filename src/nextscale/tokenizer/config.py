"""Configuration of the multi-scale residual VQ-VAE tokenizer (VAR stage 1)."""

from __future__ import annotations

from dataclasses import dataclass

from nextscale.scales import SIDES_256, ScaleSchedule


@dataclass(frozen=True)
class TokenizerConfig:
    """Everything needed to rebuild a tokenizer; saved as config.json beside its weights.

    The defaults are the released VAR tokenizer ``vae_ch160v4096z32.pth`` (VQGAN CNN with the
    latent-diffusion vq-f16 layout, 16x downsampling, 4096 codes of 32 channels, four Phi convs).

    Attributes:
        vocab_size: codebook size V, one codebook shared by all scales.
        code_dim: latent channels C of every code vector (the VAE's z channels).
        base_channels: width of the first CNN level; GroupNorm(32) needs a multiple of 32.
        channel_multipliers: per-level width factors; the downsampling factor is 2 ** (levels - 1).
        num_res_blocks: ResNet blocks per encoder level (the decoder uses one more).
        in_channels: image channels.
        dropout: dropout inside ResNet blocks.
        attention_in_last_level: single-head attention after each block of the coarsest level.
        attention_in_middle: attention in the middle block.
        beta: commitment weight of the quantizer loss.
        lookup: "l2" (nearest code by squared distance) or "cosine" (largest cosine similarity).
        quant_conv_kernel: kernel size of quant_conv / post_quant_conv.
        phi_ratio: Phi(h) = (1 - r) h + r conv(h); 0 turns Phi into the identity.
        num_phi: number of Phi convs shared across scales (0: one per scale).
        scale_sides: token-map sides, coarse to fine; the last equals the latent side.
    """

    vocab_size: int = 4096
    code_dim: int = 32
    base_channels: int = 160
    channel_multipliers: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    dropout: float = 0.0
    attention_in_last_level: bool = True
    attention_in_middle: bool = True
    beta: float = 0.25
    lookup: str = "l2"
    quant_conv_kernel: int = 3
    phi_ratio: float = 0.5
    num_phi: int = 4
    scale_sides: tuple[int, ...] = SIDES_256

    def __post_init__(self) -> None:
        if self.base_channels % 32 or any((self.base_channels * m) % 32 for m in self.channel_multipliers):
            raise ValueError(
                f"every CNN width must be a multiple of 32 (GroupNorm with 32 groups); "
                f"base_channels={self.base_channels}, multipliers={self.channel_multipliers}"
            )
        if self.lookup not in ("l2", "cosine"):
            raise ValueError(f"lookup must be 'l2' or 'cosine', got {self.lookup!r}")
        if self.vocab_size < 2 or self.code_dim < 1:
            raise ValueError("vocab_size must be >= 2 and code_dim >= 1")
        if self.num_phi < 0:
            raise ValueError("num_phi must be >= 0 (0 means one Phi per scale)")
        # Validates the sides and stores them as a tuple of ints (a list would make the frozen config unhashable).
        object.__setattr__(self, "scale_sides", ScaleSchedule(self.scale_sides).sides)

    @property
    def schedule(self) -> ScaleSchedule:
        return ScaleSchedule(self.scale_sides)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def latent_side(self) -> int:
        return self.scale_sides[-1]

    @property
    def image_size(self) -> int:
        return self.latent_side * self.downsample_factor
