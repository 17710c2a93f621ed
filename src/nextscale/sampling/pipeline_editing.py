"""A pipeline's editing methods: ``edit``, ``inpaint`` and ``outpaint`` of a real image.

Each one prepares the image, builds the keep mask and samples through the pipeline's own call with an
``ImageEdit``, which the call encodes into a ``KeepTokensConstraint`` in its turn (see ``editing.py`` for the
recipe); no sampling loop is copied here.
``EditingMixin`` gives ``Pipeline`` these methods; a text pipeline overrides only ``edit_condition`` (the prompt
instead of the class), and a raster pipeline refuses ``edit``.
"""

from __future__ import annotations

import logging
import numbers
import os

import numpy as np
import torch
from PIL import Image

from nextscale.sampling.editing import (
    ImageEdit,
    PreparedImage,
    box_mask,
    extend_canvas,
    extended_image,
    keep_mask_for,
    mask_for_image,
    mask_from_array,
    prepare_image,
)
from nextscale.sampling.outputs import EditOutput, PipelineOutput
from nextscale.sampling.pipeline_class_names import is_integer_scalar_array

logger = logging.getLogger(__name__)

# What an edit takes as the image, the box and the mask (see ``EditingMixin.edit``).
ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
Box = tuple[float, float, float, float]
MaskInput = np.ndarray | torch.Tensor | Image.Image | str | os.PathLike


def warn_if_unit_range(images: object) -> None:
    """Warn about a float image tensor with nothing below 0: edits read tensors in [-1, 1], where 0 is mid-gray, so
    a [0, 1] image (a call's ``output_type="pt"``, torchvision's ``ToTensor``) would be edited as a washed-out copy
    of itself without a word. A real [-1, 1] picture with no pixel darker than mid-gray is rare, hence a warning."""
    if isinstance(images, torch.Tensor) and images.is_floating_point() and images.numel() and images.min() >= 0:
        logger.warning(
            "the image tensor holds no value below 0, but edits read tensors in [-1, 1] (0 is mid-gray); if it is "
            "in [0, 1] (as output_type='pt' gives), pass images * 2 - 1"
        )


# An edit warns when its input is enlarged more than this many times to the model's size: it still runs, on a
# blurred copy (training refuses images under 1/8 of its size as "tiny").
TINY_EDIT_FACTOR = 4


def tiny_picture_note(width: int, height: int, side: int, size: int) -> str:
    """What to say of a ``width`` x ``height`` picture whose cropped ``side`` x ``side`` square an edit enlarges to
    the model's ``size``: a sentence when that is more than ``TINY_EDIT_FACTOR`` times, else ""."""
    if not 0 < side * TINY_EDIT_FACTOR < size:
        return ""
    centre = "" if width == height else f" (its {side}x{side} centre)"
    return (
        f"the image is only {width}x{height} pixels{centre}, enlarged {size / side:.3g}x to the model's "
        f"{size}x{size}: the edit sees a blurred copy; give a picture of at least {size}x{size} pixels"
    )


def warn_if_tiny(prepared: PreparedImage, size: int) -> None:
    """Warn when the picture an edit crops is enlarged more than ``TINY_EDIT_FACTOR`` times to the model's size."""
    left, top, right, bottom = prepared.crop_box
    if note := tiny_picture_note(*prepared.original.size, min(right - left, bottom - top), size):
        logger.warning(note)


def checked_keep_mask(keep_mask: torch.Tensor | np.ndarray, side: int, rows: int | None = None) -> torch.Tensor:
    """A keep mask as a bool tensor: (side, side) on the last-scale grid, or, when ``rows`` is given, also
    (rows, side, side) with one per image. Bool or 0/1 values (a tensor, an array or nested lists); anything else
    is refused, since the per-scale resize would keep a different region (0/255 keeps more at coarse scales)."""
    try:
        mask = keep_mask if isinstance(keep_mask, torch.Tensor) else torch.as_tensor(np.asarray(keep_mask))
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"keep_mask must be a bool tensor or array, got {type(keep_mask).__name__}") from err
    shapes = f"({side}, {side})" + ("" if rows is None else f" or ({rows}, {side}, {side}) with one per image")
    if (
        mask.ndim not in ((2,) if rows is None else (2, 3))
        or tuple(mask.shape[-2:]) != (side, side)
        or (mask.ndim == 3 and mask.shape[0] != rows)
    ):
        raise ValueError(
            f"keep_mask must be {shapes} on the last-scale grid, got {tuple(mask.shape)} (see "
            "sampling.editing.box_mask, and mask_from_array for masks of another size)"
        )
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError(
            "keep_mask must be bool or hold only 0 and 1 (True = kept from the image); threshold it first, e.g. "
            "mask > 127 for 0..255 values"
        )
    return mask.bool()


class EditingMixin:
    """``edit``, ``inpaint``, ``outpaint``, ``edit_with_keep_mask`` and ``edit_condition`` of ``Pipeline`` (which
    provides ``tokenizer``, ``transformer``, ``device``, ``image_size``, ``class_ids`` and the call)."""

    def edit(
        self,
        image: ImageInput,
        mode: str = "inpaint",
        box: Box | None = None,
        mask: MaskInput | None = None,
        box_in_pixels: bool = False,
        class_label: int | str | None = None,
        num_images: int = 1,
        prompt: str | None = None,
        **sampling,
    ) -> EditOutput:
        """Zero-shot inpainting / outpainting / class- or text-conditional editing of a real image.

        Args:
            image: a path, a PIL image or a uint8 array (H, W) / (H, W, C) of any size and mode (center-cropped
                to a square and resized to the model's size), or a float tensor (1, C, S, S) in [-1, 1] already at
                the model's size S and channels C. A path or PIL image with an EXIF orientation tag (phone photos)
                is turned upright first, as viewers show it, so a PIL image edits like its file; box, mask and
                ``.pasted()`` refer to the upright picture. Pass an array to use the stored pixels as they are.
            mode: "inpaint" regenerates the region and keeps the rest; "outpaint" keeps the region and
                regenerates the rest.
            box: the region as (y0, x0, y1, x1), rows first, in fractions of the centre square the model sees (the
                whole image when it is square), or in pixels of the model-size image with ``box_in_pixels``.
            mask: the region as a 2-D array / tensor / PIL image / image file (True / white = region), square or
                of the original image's size (then cropped like the image). Transparent pixels of an RGBA / LA mask
                (or an (H, W, 4) array) are not region, whatever colour they store.
            class_label: target class (id or name) of the generated part (class pipelines); None = unconditional.
            num_images: results to draw (all with the same class or prompt).
            prompt: what the generated part should show (text pipelines); None = the empty prompt.
            **sampling: cfg, top_k, top_p, temperature, smooth, seed, generator, output_type, and for text
                pipelines negative_prompt (see ``__call__``).
        Returns:
            EditOutput; ``.pasted()`` gives the results at the input's original size, grayscale ("L") for a
                grayscale input and "RGB" for any other, 8-bit (a 16-bit input too); a transparent input keeps its
                alpha.
        """
        if (box is None) == (mask is None):
            raise ValueError("give exactly one of box=(y0, x0, y1, x1) or mask=<array or image>")
        warn_if_unit_range(image)
        prepared = prepare_image(image, self.image_size, self.tokenizer.config.in_channels)
        warn_if_tiny(prepared, self.image_size)
        side = self.transformer.config.scale_sides[-1]
        region = (
            box_mask(side, box, self.image_size if box_in_pixels else None)
            if box is not None
            else mask_for_image(mask, prepared, side)
        )
        return self.edit_with_keep_mask(
            prepared, keep_mask_for(mode, region), class_label, num_images, prompt=prompt, **sampling
        )

    def inpaint(self, image: ImageInput, box: Box | None = None, mask: MaskInput | None = None, **kwargs) -> EditOutput:
        """Regenerate the region (box or mask), keep everything else: ``edit(image, mode="inpaint", ...)``.

        ``kwargs``: class_label or prompt, num_images, box_in_pixels and the sampling knobs, as for :meth:`edit`.
        """
        return self.edit(image, mode="inpaint", box=box, mask=mask, **kwargs)

    def outpaint(
        self,
        image: ImageInput,
        box: Box | None = None,
        mask: MaskInput | None = None,
        inner_fraction: float | None = None,
        **kwargs,
    ) -> EditOutput:
        """Keep the region and regenerate the rest; or, with ``inner_fraction`` (in (0, 1)), shrink the whole
        image into the centre of the canvas and generate a frame around it (extending the picture; ``.pasted()``
        gives it at the input's resolution, the input's centre square ``1 / inner_fraction`` times larger). The
        placed image covers whole token cells: ``inner_fraction`` is rounded to the nearest cell of the last scale's
        grid (0.6 on a 16x16 grid places it on 10 x 10 cells), so no cell mixes the image with blank canvas.

        ``kwargs``: class_label or prompt, num_images, box_in_pixels and the sampling knobs, as for :meth:`edit`.
        """
        if inner_fraction is None:
            return self.edit(image, mode="outpaint", box=box, mask=mask, **kwargs)
        if box is not None or mask is not None:
            raise ValueError("inner_fraction places the whole image; do not also give box or mask")
        warn_if_unit_range(image)
        prepared = prepare_image(image, self.image_size, self.tokenizer.config.in_channels)
        warn_if_tiny(prepared, self.image_size)
        side = self.transformer.config.scale_sides[-1]
        canvas, placed_pixels = extend_canvas(prepared.tensor, inner_fraction, grid_side=side)
        placed = mask_from_array(placed_pixels, side)
        if placed.all():
            raise ValueError(
                f"inner_fraction {inner_fraction} places the image over the whole {side}x{side} token grid, leaving "
                "no frame to generate; choose a smaller fraction"
            )
        if not placed.any():
            raise ValueError(
                f"inner_fraction {inner_fraction} makes the image smaller than one cell of the {side}x{side} token "
                "grid, so nothing of it is kept; choose a larger fraction"
            )
        keep = keep_mask_for("outpaint", placed)
        framed = extended_image(prepared, canvas, placed_pixels)
        return self.edit_with_keep_mask(
            framed, keep, kwargs.pop("class_label", None), kwargs.pop("num_images", 1), **kwargs
        )

    @torch.no_grad()
    def edit_with_keep_mask(
        self,
        prepared: PreparedImage,
        keep_mask: torch.Tensor,
        class_label: int | None = None,
        num_images: int = 1,
        prompt: str | None = None,
        **sampling,
    ) -> EditOutput:
        """Sample with the image's tokens forced wherever ``keep_mask`` (side, side) is True (per-scale masks
        follow the official bilinear-resize recipe); the mask is bool or 0/1 on the last-scale grid."""
        misnamed = {"class_labels": "class_label", "num_images_per_prompt": "num_images"}
        for name in sorted(set(sampling) & {*misnamed, "constraint"}):
            fix = f"use {misnamed[name]}=..." if name in misnamed else "the edit makes its own constraint"
            raise TypeError(f"edits do not take {name}: {fix}")
        if not isinstance(num_images, numbers.Integral) or isinstance(num_images, bool):
            raise TypeError(f"num_images must be an int, got {num_images!r}")
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        keep_mask = checked_keep_mask(keep_mask, self.transformer.config.scale_sides[-1])
        out = self(
            **self.edit_condition(class_label, prompt),
            num_images_per_prompt=num_images,
            constraint=ImageEdit(prepared.tensor, keep_mask),  # encoded in the call's turn
            **sampling,
        )
        return EditOutput(
            images=out.images,
            tokens=out.tokens,
            class_labels=out.class_labels,
            prompts=out.prompts,
            keep_mask=keep_mask,
            prepared=prepared,
        )

    @torch.no_grad()
    def edit_images(
        self,
        images: torch.Tensor,
        keep_mask: torch.Tensor,
        class_labels: list[int | str | None] | None = None,
        prompts: list[str] | None = None,
        **sampling,
    ) -> PipelineOutput:
        """Edit a batch of different images in one sampling call (evaluation, data generation).

        Row b keeps the tokens of ``images[b]`` wherever ``keep_mask`` is True and regenerates the rest towards
        ``class_labels[b]`` (class pipelines) or ``prompts[b]`` (text pipelines), exactly as ``edit_with_keep_mask``
        does for one image.

        Args:
            images: (B, C, S, S) in [-1, 1], already at the model's size and channels.
            keep_mask: (side, side) bool on the last-scale grid, shared by every row, or (B, side, side).
            class_labels: one target per row (id, name, or None for the null class); None: all unconditional.
            prompts: text pipelines: one prompt per row; None: the empty prompt for every row.
            **sampling: the knobs of the call (cfg, top_k, top_p, temperature, smooth, seed, generator, output_type;
                negative_prompt for text pipelines).
        Returns:
            the call's ``PipelineOutput`` (B images, tokens (B, L)).
        """
        if (class_labels if self.is_text_conditional else prompts) is not None:
            given, wanted = ("class_labels", "prompts") if self.is_text_conditional else ("prompts", "class_labels")
            raise ValueError(f"this pipeline edits towards {wanted}, not {given}")
        channels, size = self.tokenizer.config.in_channels, self.image_size
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise TypeError("images must be a float tensor (B, C, S, S) in [-1, 1], e.g. uint8 pixels / 127.5 - 1")
        if images.ndim != 4 or tuple(images.shape[1:]) != (channels, size, size) or not len(images):
            raise ValueError(
                f"images must be (B, {channels}, {size}, {size}) in [-1, 1] with B >= 1, got {tuple(images.shape)}"
            )
        if not (images.min() >= -1.001 and images.max() <= 1.001):  # also refuses NaN
            raise ValueError(
                f"images must lie in [-1, 1], got values in [{float(images.min()):.3g}, {float(images.max()):.3g}]"
            )
        warn_if_unit_range(images)
        keep_mask = checked_keep_mask(keep_mask, self.transformer.config.scale_sides[-1], len(images))
        if {"constraint", "class_labels", "prompt", "num_images_per_prompt"} & set(sampling):
            raise TypeError("edit_images makes its own constraint and takes one class label or prompt per image")
        given = prompts if self.is_text_conditional else class_labels
        if isinstance(given, (str, bytes)):  # list("Bag") would be three labels
            what = "prompts" if self.is_text_conditional else "class_labels"
            raise TypeError(
                f"{what} must be a list with one entry per image; the same for all: [{given!r}] * {len(images)}"
            )
        targets = [None] * len(images) if given is None else list(given)
        if len(targets) != len(images):
            what = "prompt" if self.is_text_conditional else "class label"
            raise ValueError(f"give one {what} per image: {len(images)} images, {len(targets)} {what}s")
        if self.is_text_conditional:
            condition = {"prompt": ["" if prompt is None else prompt for prompt in targets]}
        else:
            condition = {"class_labels": [None if self._is_null(t) else self.class_ids([t])[0] for t in targets]}
        return self(**condition, constraint=ImageEdit(images, keep_mask), **sampling)  # encoded in the call's turn

    def _is_null(self, class_label) -> bool:
        """None or the null class id: the unconditional edit (the official edit demo passes the null id)."""
        if is_integer_scalar_array(class_label):
            class_label = class_label.item()
        null_id = self.transformer.config.null_class_id
        return class_label is None or (
            isinstance(class_label, numbers.Integral) and not isinstance(class_label, bool) and class_label == null_id
        )

    def edit_condition(self, class_label: int | None, prompt: str | None) -> dict:
        """What an edit conditions the regenerated part on: the class, or the null class."""
        if prompt is not None:
            raise ValueError("this pipeline is class-conditional; edit with class_label (prompts need a text pipeline)")
        if self._is_null(class_label):
            return {"class_labels": [None]}  # the call's way of asking for the null class
        return {"class_labels": self.class_ids([class_label])}
