"""The raster-scan baseline as a pipeline: the same folder format, call and CLI as a VAR pipeline.

    pipeline.json    {"_class_name": "RasterPipeline", "tokenizer": "tokenizer", "transformer": "transformer"}
    tokenizer/       the tokenizer on a one-map schedule (scale_sides = [side])
    transformer/     a RasterTransformer

``Pipeline.from_pretrained`` returns this class for such a folder; ``pipe(class_labels=[3], seed=0)`` samples
with the same knobs (cfg, top-k, top-p, temperature; the CFG ramp runs over raster positions). Editing is a
next-scale feature and is refused.
"""

from __future__ import annotations

from typing import NoReturn

import torch

from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.raster_sampler import RasterSampler, check_raster_fit
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.raster_model import RasterTransformer


class RasterPipeline(Pipeline):
    """Class-conditional raster-scan generation: ``pipe(class_labels=[0, 7], seed=0).images``."""

    @staticmethod
    def make_sampler(tokenizer: MultiScaleVQVAE, transformer: torch.nn.Module) -> RasterSampler:
        check_raster_fit(tokenizer, transformer)
        return RasterSampler(tokenizer, transformer)

    @staticmethod
    def check_transformer(transformer: torch.nn.Module) -> None:
        """Refuse anything but a RasterTransformer (one clear line)."""
        if not isinstance(transformer, RasterTransformer):
            raise TypeError(f"RasterPipeline needs a RasterTransformer, got {type(transformer).__name__}")

    @property
    def num_sampling_steps(self) -> int:
        """The steps of a call, which ``ScaleOverride.scale_idx`` counts: one per token position."""
        return self.transformer.config.sequence_length

    def edit(self, *args, **kwargs) -> NoReturn:
        """Refused: see :meth:`edit_with_keep_mask`."""
        self.edit_with_keep_mask()

    def edit_images(self, *args, **kwargs) -> NoReturn:
        """Refused: see :meth:`edit_with_keep_mask`."""
        self.edit_with_keep_mask()

    def edit_with_keep_mask(self, *args, **kwargs) -> NoReturn:
        """Refused (also for ``inpaint`` and ``outpaint``, which come here): a raster model cannot edit."""
        raise ValueError(
            "editing teacher-forces the known tokens scale by scale, which a raster-scan model cannot do "
            "(its tokens after an edited one depend on it); edit with a next-scale (VAR) pipeline"
        )
