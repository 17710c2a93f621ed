"""What a pipeline call returns: images in the requested form with their tokens, and an edit's extras.

References: diffusers ``ImagePipelineOutput`` and its ``output_type`` ("pil", "pt", "np").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from nextscale.data.grids import make_grid, to_pil
from nextscale.sampling.editing import PreparedImage, mask_overlay, paste_back

OUTPUT_TYPES = ("pil", "pt", "np")


@dataclass
class PipelineOutput:
    """images: list of B PIL images ("pil"), a (B, C, H, W) float32 tensor in [0, 1] ("pt") or a (B, H, W, C) uint8
    array ("np"), with C = 1 for grayscale models and 3 for RGB ones;
    tokens: (B, L) int64, scales concatenated coarse to fine, row-major inside a scale;
    class_labels: (B,) the labels used (class pipelines); prompts: one per image (text pipelines, when given
    as strings)."""

    images: list[Image.Image] | torch.Tensor | np.ndarray
    tokens: torch.Tensor
    class_labels: torch.Tensor | None
    prompts: list[str] | None = None

    def grid(self, nrow: int = 8, labels: Sequence[str | int] | None = None) -> Image.Image:
        """The images tiled into one RGB picture, ``nrow`` per row (whatever the output_type), as
        ``nextscale sample --out`` draws it; ``labels``: optional text under each image. ``.save("grid.png")``
        writes it."""
        return make_grid(as_batch(self.images), nrow=nrow, labels=labels)


@dataclass
class EditOutput(PipelineOutput):
    """An edit's result: ``images`` at the model's resolution, ``keep_mask`` (side, side) on the last-scale
    grid (True = taken from the input), and ``prepared`` (the input as the model saw it, for ``pasted``)."""

    keep_mask: torch.Tensor | None = None
    prepared: PreparedImage | None = None

    def pasted(self) -> list[Image.Image]:
        """Each result's regenerated region resized back into the input picture at its original size and in its mode
        (whatever the output_type): "RGBA" or "LA" for a transparent input, which keeps its alpha everywhere, "L" for
        a grayscale one, else "RGB"; the kept region stays the input's own pixels (``paste_back``)."""
        return [paste_back(image, self.prepared, self.keep_mask) for image in as_pil(self.images)]

    def side_by_side(self) -> tuple[torch.Tensor, list[str]]:
        """The input, the input with the regenerated region tinted red, and each result: one (2 + N, 3, S, S)
        batch in [-1, 1] with a label per picture, for a grid (needs ``output_type="pt"``)."""
        if not isinstance(self.images, torch.Tensor):
            raise ValueError('side_by_side needs the results as tensors: edit with output_type="pt"')
        results = self.images * 2 - 1
        source = self.prepared.tensor.to(results.device)
        panels = (source, mask_overlay(source, ~self.keep_mask), results)
        rgb = torch.cat([panel.expand(-1, 3, -1, -1) for panel in panels])  # gray -> RGB, to join the red tint
        return rgb, ["input", "region", *[f"result {index + 1}" for index in range(len(results))]]


def as_pil(images: list[Image.Image] | torch.Tensor | np.ndarray) -> list[Image.Image]:
    """A call's images in any output form ("pil", "pt" in [0, 1], "np" uint8) as PIL images."""
    if isinstance(images, list):
        return images
    if isinstance(images, np.ndarray):
        return [Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array) for array in images]
    return to_output_type(images, "pil")


def as_batch(images: list[Image.Image] | torch.Tensor | np.ndarray) -> torch.Tensor:
    """A call's images in any output form as one (B, C, H, W) float32 CPU tensor in [-1, 1] (C = 1 or 3)."""
    if isinstance(images, torch.Tensor):  # "pt": [0, 1]
        return images.detach().float().cpu() * 2 - 1
    if isinstance(images, list):  # "pil": mode L or RGB
        images = np.stack(
            [np.asarray(image)[..., None] if image.mode == "L" else np.asarray(image) for image in images]
        )
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1  # "np": uint8


def to_output_type(images_01: torch.Tensor, output_type: str) -> list[Image.Image] | torch.Tensor | np.ndarray:
    """(B, C, H, W) float in [0, 1] -> the requested output form."""
    if output_type == "pt":
        return images_01
    if output_type == "np":
        return images_01.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return to_pil(images_01 * 2 - 1)
