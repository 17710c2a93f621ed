"""The multi-scale VQ-VAE tokenizer: images <-> K token maps (VAR stage 1).

images --encoder--> --quant_conv--> f --quantizer--> indices / f_hat --post_quant_conv--> --decoder--> images

Images are float tensors in [-1, 1] of size config.image_size (= last scale side x downsampling).
Construction uses PyTorch's default layer initialisation and never loads anything; the official
release never initialises its VQVAE either (it always loads ``vae_ch160v4096z32.pth``, see
``official.py``). Save and load with ``nextscale.pretrained.save_component`` / ``load_component``.

References:
    Tian et al., "Visual Autoregressive Modeling", NeurIPS 2024; FoundationVision/VAR ``models/vqvae.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nextscale.tokenizer.autoencoder import Decoder, Encoder
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.quantizer import MultiScaleQuantizer


@dataclass
class TokenizerOutput:
    """Training forward result.

    Attributes:
        reconstruction: (B, 3, H, W) decoder output, NOT clamped (losses see the raw values).
        quant_loss: scalar quantizer loss (commitment + codebook terms).
        hits: (K, V) code-hit counts of this batch per scale.
    """

    reconstruction: torch.Tensor
    quant_loss: torch.Tensor
    hits: torch.Tensor


class MultiScaleVQVAE(nn.Module):
    """VQGAN encoder/decoder around a multi-scale residual quantizer.

    Args:
        config: the tokenizer configuration (default: the released VAR tokenizer shapes).
    """

    config_class = TokenizerConfig

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        kernel = config.quant_conv_kernel
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(config.code_dim, config.code_dim, kernel, padding=kernel // 2)
        self.quantizer = MultiScaleQuantizer(config)
        self.post_quant_conv = nn.Conv2d(config.code_dim, config.code_dim, kernel, padding=kernel // 2)
        self.decoder = Decoder(config)
        self.channels_last_decoder = False  # see use_channels_last_decoder

    # ---------------------------------------------------------------------------------------- encode
    def _check_images(self, images: torch.Tensor) -> None:
        config = self.config
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"images must be a torch.Tensor (B, {config.in_channels}, H, W), got {type(images).__name__}"
            )
        if images.dim() != 4 or not images.is_floating_point():
            raise ValueError(
                f"images must be a 4-D float tensor (B, {config.in_channels}, H, W) in [-1, 1], "
                f"got shape {tuple(images.shape)} of dtype {images.dtype}"
            )
        if images.shape[1] != config.in_channels:
            raise ValueError(
                f"images must have {config.in_channels} channels for this tokenizer, got "
                f"{images.shape[1]} (shape {tuple(images.shape)}; channels come second: B, C, H, W)"
            )
        height, width = images.shape[2], images.shape[3]
        size, factor = config.image_size, config.downsample_factor
        if height != size or width != size:
            # The encoder would silently accept other multiples of the factor and give a latent the
            # quantizer's scale schedule does not fit; sides that are not multiples would be cropped.
            not_multiple = (
                ""
                if height % factor == 0 and width % factor == 0
                else (f" (not a multiple of the downsampling factor {factor})")
            )
            raise ValueError(
                f"images must be {size}x{size} for this tokenizer (latent side {config.latent_side} x downsampling "
                f"{factor}); got {height}x{width}{not_multiple} — resize or crop first"
            )

    def encode_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> latent features f (B, code_dim, h, w) = quant_conv(encoder(x))."""
        self._check_images(images)
        return self.quant_conv(self.encoder(images))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1] -> K int64 index tensors (B, side_k^2), row-major, coarse to fine."""
        return self.quantizer.features_to_indices(self.encode_features(images))

    # ---------------------------------------------------------------------------------------- decode
    def use_channels_last_decoder(self, enabled: bool = True) -> None:
        """Run the decoder on channels-last (NHWC) tensors, whose convolutions need no layout reorders in oneDNN:
        on the project's CPU 1.06-1.14x faster decodes, images equal to within 3e-5
        (``benchmarks/tokenizer_speed.py``). The weights keep their values; only their memory layout changes."""
        memory_format = torch.channels_last if enabled else torch.contiguous_format
        self.post_quant_conv.to(memory_format=memory_format)
        self.decoder.to(memory_format=memory_format)
        self.channels_last_decoder = enabled

    def decode_fhat(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Quantized latent (B, code_dim, h, w) -> images (B, 3, H, W) clamped to [-1, 1]."""
        if self.channels_last_decoder:
            f_hat = f_hat.contiguous(memory_format=torch.channels_last)
        return self.decoder(self.post_quant_conv(f_hat)).clamp_(-1, 1)

    def _check_index_values(self, indices: list[torch.Tensor]) -> None:
        self.quantizer.check_indices(indices)
        for k, idx in enumerate(indices):
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
                raise ValueError(
                    f"indices of scale {k} must lie in [0, {self.config.vocab_size}), "
                    f"got values in [{int(idx.min())}, {int(idx.max())}]"
                )

    def decode(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """K index tensors (B, side_k^2) -> images (B, 3, H, W) clamped to [-1, 1]."""
        self._check_index_values(indices)
        return self.decode_fhat(self.quantizer.indices_to_fhat(indices))

    def decode_scales(self, indices: list[torch.Tensor]) -> list[torch.Tensor]:
        """K index tensors -> K image batches (B, 3, H, W) in [-1, 1]: the image after the first k scales, coarse
        to fine (the last equals :meth:`decode`). Costs K decoder passes; for looking at, not for sampling."""
        self._check_index_values(indices)
        return [self.decode_fhat(f_hat) for f_hat in self.quantizer.indices_to_fhats(indices)]

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Encode, quantize and decode: images (B, 3, H, W) -> reconstructions clamped to [-1, 1].

        The quantization step carries no gradient; training uses :meth:`forward`.
        """
        f_hat = self.quantizer.features_to_fhats(self.encode_features(images))[-1]
        return self.decode_fhat(f_hat)

    # ------------------------------------------------------------------------------ transformer glue
    def teacher_forcing_input(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """K index tensors -> transformer input (B, L - 1, code_dim); see MultiScaleQuantizer.teacher_forcing_input."""
        return self.quantizer.teacher_forcing_input(indices)

    def indices_from_tokens(self, tokens_BL: torch.Tensor) -> list[torch.Tensor]:
        """One (B, L) token tensor (scales concatenated coarse to fine) -> K tensors (B, side_k^2)."""
        return self.config.schedule.split(tokens_BL)

    def tokens_from_indices(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """K tensors (B, side_k^2) -> one (B, L) token tensor."""
        return self.config.schedule.concat(list(indices))

    # ------------------------------------------------------------------------------ training forward
    def forward(self, images: torch.Tensor, update_usage: bool = True) -> TokenizerOutput:
        """Training pass: images (B, 3, H, W) -> TokenizerOutput (unclamped reconstruction, loss, hits).

        ``update_usage`` is passed to the quantizer (see MultiScaleQuantizer.forward).
        """
        quantized = self.quantizer(self.encode_features(images), update_usage=update_usage)
        reconstruction = self.decoder(self.post_quant_conv(quantized.f_hat))
        return TokenizerOutput(reconstruction=reconstruction, quant_loss=quantized.loss, hits=quantized.hits)
