"""The coarse-to-fine view of sampled tokens: what the first k scales of each image decode to, as images or
one labelled grid (``sample --show-scales`` and the web demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from nextscale.sampling.pipeline import Pipeline


def scale_views(pipe: Pipeline, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) tokens -> (B * scales, C, H, W) images in [-1, 1], image-major: what the first k scales of each
    image decode to, for k = 1 .. the number of scales."""
    import torch

    tokenizer = pipe.tokenizer
    device = next(tokenizer.parameters()).device
    rows = []
    with torch.inference_mode():
        for chunk in torch.split(tokens, 16):  # one decoder pass per scale and image: a few images at a time
            views = tokenizer.decode_scales(tokenizer.indices_from_tokens(chunk.to(device)))
            rows.append(torch.stack([images.float().cpu() for images in views], dim=1).flatten(0, 1))
    return torch.cat(rows)


def scale_grid(pipe: Pipeline, tokens: torch.Tensor, names: list[str] | None = None, zoom: int = 1) -> Image.Image:
    """One row per image, one column per scale (see :func:`scale_views`), each tile labelled with its scale, or
    the first of a row with the image's name when ``names`` are given; tiles enlarged ``zoom`` times."""
    from nextscale.cli.demo import enlarge
    from nextscale.data.grids import make_grid

    sides = pipe.tokenizer.config.scale_sides
    rows = names if names is not None else [None] * len(tokens)
    labels = [name if k == 0 and name else f"{side}x{side}" for name in rows for k, side in enumerate(sides)]
    views = scale_views(pipe, tokens)
    return make_grid(enlarge(views, zoom) if zoom > 1 else views, nrow=len(sides), labels=labels)
