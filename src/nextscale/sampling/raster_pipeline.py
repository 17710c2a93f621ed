"""The raster-scan baseline as a pipeline: the same folder format, call and CLI as a VAR pipeline.

    pipeline.json    {"_class_name": "RasterPipeline", "tokenizer": "tokenizer", "transformer": "transformer"}
    tokenizer/       the tokenizer on a one-map schedule (scale_sides = [side])
    transformer/     a RasterTransformer

``Pipeline.from_pretrained`` returns this class for such a folder; ``pipe(class_labels=[3], seed=0)`` samples
with the same knobs (cfg, top-k, top-p, temperature; the CFG ramp runs over raster positions). Editing is a
next-scale feature and is refused.
"""

from __future__ import annotations

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
        if not isinstance(transformer, RasterTransformer):
            raise TypeError(f"RasterPipeline needs a RasterTransformer, got {type(transformer).__name__}")

    def edit(self, *args, **kwargs):
        raise ValueError(
            "editing teacher-forces the known tokens scale by scale, which a raster-scan model cannot do "
            "(its tokens after an edited one depend on it); edit with a next-scale (VAR) pipeline"
        )
