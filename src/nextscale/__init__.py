"""nextscale: scale-wise autoregressive image generation (VAR next-scale prediction, STAR text-to-image).

``from nextscale import Pipeline``; ``Pipeline.from_pretrained("bundled:fashion-mnist")`` returns the kind its
folder records (``Pipeline``, ``TextPipeline`` or ``RasterPipeline``). The names below are imported on first use,
so ``import nextscale`` does not import torch.
"""

__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY = {
    "Pipeline": "nextscale.sampling.pipeline",
    "TextPipeline": "nextscale.sampling.text_pipeline",
    "RasterPipeline": "nextscale.sampling.raster_pipeline",
    "PipelineOutput": "nextscale.sampling.outputs",
    "EditOutput": "nextscale.sampling.outputs",
    "SamplingConfig": "nextscale.sampling.guidance",
    "ScaleOverride": "nextscale.sampling.guidance",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    """``from nextscale import Pipeline`` without importing torch at ``import nextscale``."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nextscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
