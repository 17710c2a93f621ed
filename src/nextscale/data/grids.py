"""Images out: tensors to PIL images, and labelled grids of them (samples, training previews, demos).

References: torchvision ``make_grid`` (grid layout).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from nextscale.pretrained import atomic_write


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Turn images in [-1, 1] into PIL images (values are clamped, then rounded to 8 bits).

    Args:
        images: (B, C, H, W) or (C, H, W), C = 1 (grayscale "L") or 3 ("RGB").

    Returns:
        a list of B PIL images.
    """
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 1|3, H, W) in [-1, 1], got {tuple(images.shape)}")
    pixels = images.detach().float().cpu().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    arrays = pixels.permute(0, 2, 3, 1).numpy()  # (B, C, H, W) -> (B, H, W, C)
    if arrays.shape[-1] == 1:
        return [Image.fromarray(array[:, :, 0], mode="L") for array in arrays]
    return [Image.fromarray(array, mode="RGB") for array in arrays]


LABEL_FONT = ("DejaVuSans.ttf", 10)  # found by name in the system's font folders where installed


@functools.cache
def _label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans where the system has it (accented Latin, Greek, Cyrillic: captions and class names are any
    language), else Pillow's bundled font, which draws only ASCII."""
    try:
        return ImageFont.truetype(*LABEL_FONT)
    except OSError:
        return ImageFont.load_default()


def make_grid(
    images: torch.Tensor, nrow: int = 8, padding: int = 2, labels: Sequence[str | int] | None = None
) -> Image.Image:
    """Tile images into one RGB picture, optionally with a text label under each image.

    Layout: ``ncol = min(nrow, B)`` columns and ``ceil(B / ncol)`` rows of cells separated and framed by
    ``padding`` black pixels. A cell is ``H x W`` without labels. With labels, a strip of the default font's
    line height plus 4 px is added below each image, and cells widen to the widest label plus 4 px if that
    exceeds W (images are centred). So without labels the grid is
    ``(ncol * W + (ncol + 1) * padding) x (nrows * H + (nrows + 1) * padding)`` (width x height).

    Args:
        images: (B, C, H, W) in [-1, 1], C = 1 or 3.
        nrow: images per row.
        padding: pixels between and around cells.
        labels: one label per image (drawn with PIL's default font), or None.

    Returns:
        the grid as a PIL RGB image.
    """
    if nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}")
    tiles = [tile.convert("RGB") for tile in to_pil(images)]
    count = len(tiles)
    if not count:
        raise ValueError("make_grid got no images (a batch of 0); pass at least one")
    if labels is not None and len(labels) != count:
        raise ValueError(f"got {len(labels)} labels for {count} images; pass one label per image")
    height, width = tiles[0].height, tiles[0].width
    ncol = min(nrow, count)
    nrows = math.ceil(count / ncol)
    cell_width, label_height = width, 0
    font = _label_font()
    if labels is not None:
        texts = [str(label) for label in labels]
        top, bottom = font.getbbox("Ag")[1], font.getbbox("Ag")[3]
        label_height = (bottom - top) + 4
        widest = max(font.getbbox(text)[2] - font.getbbox(text)[0] for text in texts)
        cell_width = max(width, widest + 4)
    cell_height = height + label_height
    grid = Image.new("RGB", (ncol * cell_width + (ncol + 1) * padding, nrows * cell_height + (nrows + 1) * padding))
    draw = ImageDraw.Draw(grid)
    for index, tile in enumerate(tiles):
        row, col = divmod(index, ncol)
        left = padding + col * (cell_width + padding)
        top = padding + row * (cell_height + padding)
        grid.paste(tile, (left + (cell_width - width) // 2, top))
        if labels is not None:
            text = texts[index]
            text_width = font.getbbox(text)[2] - font.getbbox(text)[0]
            draw.text((left + (cell_width - text_width) // 2, top + height + 2), text, fill="white", font=font)
    return grid


LABEL_CHARACTERS = 24  # prompt labels under grid tiles are cut to this length so that cells stay narrow


def prompt_label(text: str) -> str:
    """A prompt as the label under its grid cell: one line, cut to ``LABEL_CHARACTERS`` ("a red apple on a ...")."""
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 3] + "..."


def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int = 8,
    labels: Sequence[str | int] | None = None,
    padding: int = 2,
) -> Path:
    """Write ``make_grid(images, nrow, padding, labels)`` as a PNG (atomically) and return its path.

    Args:
        images: (B, C, H, W) in [-1, 1], C = 1 or 3.
        path: output file; parent folders are created.
        nrow: images per row.
        labels: optional text under each image.
        padding: pixels between and around cells.
    """
    path = Path(path)
    grid = make_grid(images, nrow=nrow, padding=padding, labels=labels)
    atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
    return path
