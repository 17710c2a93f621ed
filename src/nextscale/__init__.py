"""nextscale: scale-wise autoregressive image generation (VAR next-scale prediction, STAR text-to-image)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``from nextscale import Pipeline`` without importing torch at ``import nextscale``."""
    if name in ("Pipeline", "TextPipeline"):
        from nextscale.sampling import pipeline, text_pipeline

        return {"Pipeline": pipeline.Pipeline, "TextPipeline": text_pipeline.TextPipeline}[name]
    raise AttributeError(f"module 'nextscale' has no attribute {name!r}")
