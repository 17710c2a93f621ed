"""Zero-shot editing: inpainting, outpainting and class-conditional editing through the one sampler.

An edit is plain next-scale sampling with a constraint: at every scale, the tokens of the region to
keep are overwritten by the real image's own tokens of that scale (and their code vectors), so the
transformer generates the rest conditioned on them. The region is a mask on the last-scale grid,
resized to each scale as the official demo does (bilinear, ``align_corners=False``, kept where > 0.5;
a scale with at most 3 tokens, i.e. the 1x1 first scale, is always taken from the image).

Images of any size are brought to the model's resolution by a center square crop and a resize
(LANCZOS); ``paste_back`` resizes the result to the crop and pastes it into the original picture, in the
original's mode (``pasted_mode``: a transparent picture keeps its alpha, a grayscale one stays grayscale; 8-bit,
a 16-bit input too).

References: Tian et al. 2024, Sec. 6 and Fig. 8; VAR ``demo_zero_shot_edit.ipynb`` (the recipe only).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nextscale.data.image_reading import SHRUNK_BY_KEY, open_image, upright
from nextscale.data.transforms import (
    ALPHA_MODES,
    GRAY_MODES,
    SIXTEEN_BIT_MODES,
    center_crop,
    convert_mode,
    has_transparency,
    pil_to_tensor,
    resize_shorter_side,
)

MODES = ("inpaint", "outpaint")
# Image tensors are refused beyond [-1.5, 1.5]: well past a resampling overshoot, well short of 0..255 pixels.
IMAGE_RANGE_SLACK = 1.5


# ------------------------------------------------------------------------------------------------ masks
def box_mask(side: int, box: tuple[float, float, float, float], image_size: int | None = None) -> torch.Tensor:
    """A (side, side) bool mask that is True inside ``box`` on the last-scale token grid.

    Args:
        side: the last scale's side.
        box: (y0, x0, y1, x1), as fractions in [0, 1] of the image, or as pixels when ``image_size`` is given.
            Rows ``round(y0 * side):round(y1 * side)`` are covered (the official rounding), columns likewise.
        image_size: the image side in pixels when ``box`` is in pixels.
    Example: side 16, box (0.1, 0.1, 0.8, 0.8) covers rows and columns 2..12 (round(1.6)=2, round(12.8)=13).
    """
    try:
        values = [float(v) for v in box] if not isinstance(box, (str, bytes)) else []
    except (TypeError, ValueError):
        values = []
    if len(values) != 4:
        raise ValueError(f"box must be four numbers (y0, x0, y1, x1), rows first; got {box!r}")
    y0, x0, y1, x1 = values
    limit = 1.0 if image_size is None else float(image_size)
    unit = "fractions in [0, 1]" if image_size is None else f"pixels in [0, {image_size}]"
    if not (0 <= y0 < y1 <= limit and 0 <= x0 < x1 <= limit):
        hint = ""
        if image_size is None and all(0 <= v < math.inf for v in values) and max(values) > 1:
            hint = " (these look like pixels: give fractions, or pixels of the model-size image: box_in_pixels=True)"
        raise ValueError(
            f"box (y0, x0, y1, x1) = {box} must lie inside the image as {unit} with y0 < y1 and x0 < x1{hint}"
        )
    y0, x0, y1, x1 = (v / limit for v in (y0, x0, y1, x1))
    mask = torch.zeros(side, side, dtype=torch.bool)
    mask[round(y0 * side) : round(y1 * side), round(x0 * side) : round(x1 * side)] = True
    if not mask.any():
        raise ValueError(f"box {box} is smaller than one token cell ({side}x{side} grid); make it larger")
    return mask


def _unit_range(values: torch.Tensor) -> torch.Tensor:
    """0..65535 values (any above 255) or 0..255 values (any above 1) -> [0, 1]; values already in [0, 1] (bool,
    0/1, fractions) stay as they are."""
    peak = values.max()
    return values / 65535.0 if peak > 255.0 else values / 255.0 if peak > 1.0 else values


def _mask_values(mask: np.ndarray | torch.Tensor | Image.Image | str | os.PathLike) -> torch.Tensor:
    """Any 2-D mask (bool, 0/1, 0..255 or 16-bit 0..65535 image, or an image file) -> (H, W) float32 in [0, 1].

    A mask with transparency (an RGBA / LA image or file, an (H, W, 4) array) is seen on black: a mask painted
    white on a transparent layer marks the painted pixels only, whatever colour the transparent ones store
    (image editors often keep white there), and a half-transparent white edge pixel counts 0.5. Example: RGBA
    (255, 255, 255, 0) -> 0, (255, 255, 255, 128) -> about 0.5, (255, 255, 255, 255) -> 1, as the opaque white pixel.
    """
    if isinstance(mask, (str, os.PathLike)):
        mask = open_image(mask)  # decoded and turned upright
    elif isinstance(mask, Image.Image):
        mask = upright(mask)  # like its file and like the image (a mask made from the photo with PIL keeps its tag)
    if isinstance(mask, Image.Image):
        if mask.mode in ALPHA_MODES or (mask.mode == "P" and "transparency" in mask.info):
            rgba = mask.convert("RGBA")
            opacity = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
            mask = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0 * opacity
        elif mask.mode in SIXTEEN_BIT_MODES or mask.mode == "F":  # their values as stored: convert("L") clips them
            mask = np.array(mask, dtype=np.float32)  # a writable copy (torch warns on Pillow's read-only view)
        else:
            mask = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    array = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.numel():
        # the first channel is the value (white = region); a fourth is the opacity, 0..255 or 0..1
        value = _unit_range(array[..., 0])
        array = value * _unit_range(array[..., 3]) if array.shape[-1] == 4 else value
    if array.ndim != 2 or not array.numel():
        raise ValueError(f"a mask must be 2-D (H, W) and not empty, got shape {tuple(array.shape)}")
    return _unit_range(array)


def mask_from_array(mask: np.ndarray | torch.Tensor | Image.Image, side: int) -> torch.Tensor:
    """Any 2-D mask (bool, 0/1, 0..255 image of any size) -> (side, side) bool on the last-scale grid.

    Larger masks are area-averaged to the grid and thresholded at 0.5. The mask covers the model's square view
    of the image; ``mask_for_image`` also takes masks of a non-square original.
    """
    resized = F.interpolate(_mask_values(mask)[None, None], size=(side, side), mode="area")[0, 0]
    return resized > 0.5


def mask_for_image(mask: np.ndarray | torch.Tensor | Image.Image, prepared: PreparedImage, side: int) -> torch.Tensor:
    """A mask drawn on the image a user gave -> (side, side) bool on the last-scale grid.

    A mask of the original's size is cropped exactly like the image (its centre square), so it marks the same
    pixels; a square mask is the model's square view already. Any other shape cannot be placed: refused.
    """
    values = _mask_values(mask)
    height, width = values.shape
    original_width, original_height = prepared.original.size
    if (width, height) == (original_width, original_height) and width != height:
        left, top, right, bottom = prepared.crop_box
        values = values[top:bottom, left:right]
    elif width != height:
        raise ValueError(
            f"the mask is {width}x{height} but the image is {original_width}x{original_height}; give a mask of "
            "the image's size (it is cropped like the image) or a square one for the model's centre crop"
        )
    return mask_from_array(values, side)


def load_mask(path: str, side: int) -> torch.Tensor:
    """A mask image file (white = region) -> (side, side) bool; unreadable files raise a clear error."""
    return mask_from_array(open_image(path), side)


def scale_keep_masks(keep_final: torch.Tensor, sides: tuple[int, ...]) -> list[torch.Tensor]:
    """The official per-scale masks: bilinear resize of the last-scale mask, kept where > 0.5.

    Args:
        keep_final: (side_K, side_K) or (B, side_K, side_K) bool/float, True where the image is kept.
        sides: the scale sides.
    Returns:
        K bool tensors (B, side_k ** 2), row-major.
    """
    keep = keep_final.float()
    if keep.ndim == 2:
        keep = keep[None]
    masks = []
    for side in sides:
        if side * side <= 3:  # the coarsest map carries the global layout: always the image's own
            masks.append(torch.ones(keep.shape[0], side * side, dtype=torch.bool, device=keep.device))
            continue
        resized = F.interpolate(keep[:, None], size=(side, side), mode="bilinear", align_corners=False)
        masks.append((resized > 0.5).reshape(keep.shape[0], side * side))
    return masks


# ------------------------------------------------------------------------------------------- constraint
class KeepTokensConstraint:
    """The sampler hook of an edit: at scale k, positions in ``keep_masks[k]`` get the image's tokens."""

    def __init__(self, image_indices: list[torch.Tensor], keep_masks: list[torch.Tensor], quantizer) -> None:
        if len(image_indices) != len(keep_masks):
            raise ValueError("one keep mask per scale is needed")
        self.image_indices = image_indices
        self.keep_masks = keep_masks
        self.quantizer = quantizer

    def known(self, scale_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's tokens and the keep mask of scale ``scale_idx``, each (B or 1, l): what masked sampling
        (``masked_sampling.py``) takes as decided before its steps, so that its head sees them."""
        return self.image_indices[scale_idx], self.keep_masks[scale_idx]

    def __call__(
        self, scale_idx: int, tokens_Bl: torch.Tensor, codes_BlC: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self.keep_masks[scale_idx].to(tokens_Bl.device).expand_as(tokens_Bl)
        image_tokens = self.image_indices[scale_idx].to(tokens_Bl.device).expand_as(tokens_Bl)
        tokens = torch.where(keep, image_tokens, tokens_Bl)
        codes = torch.where(keep[..., None], self.quantizer.lookup(image_tokens).to(codes_BlC.dtype), codes_BlC)
        return tokens, codes


@dataclass
class ImageEdit:
    """An edit's constraint before its images are encoded: the pipeline's call encodes them in its turn
    (``Pipeline.turn``), on the device it samples on. Encoded before the turn, a ``pipe.to`` from another thread
    could move the tokenizer between the encode and the sampling, or under the encode."""

    images: torch.Tensor  # (B, C, S, S) in [-1, 1], at the model's size
    keep_mask: torch.Tensor  # (side_K, side_K) or (B, side_K, side_K) bool, True where the image is kept

    @torch.no_grad()
    def encoded(self, tokenizer, sides: tuple[int, ...], device: torch.device) -> KeepTokensConstraint:
        """The sampler hook: the images' K token maps and the per-scale keep masks, on ``device``."""
        indices = tokenizer.encode(self.images.to(device))  # K tensors (B, side_k ** 2)
        return KeepTokensConstraint(indices, scale_keep_masks(self.keep_mask.to(device), sides), tokenizer.quantizer)


# ---------------------------------------------------------------------------------------------- images
@dataclass
class PreparedImage:
    """The model-resolution view of an image and where it came from (for pasting back)."""

    tensor: torch.Tensor  # (1, C, S, S) in [-1, 1]
    original: Image.Image
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) of the square crop in the original
    # 2, 4 or 8 for a JPEG too large to decode at full size, read shrunk (``open_image``): no pasting back
    shrunk_by: int = 1


def prepare_image(
    image: str | os.PathLike | Image.Image | np.ndarray | torch.Tensor, size: int, channels: int
) -> PreparedImage:
    """Convert to ``channels`` (``convert_mode``), center square crop, resize to ``size`` (LANCZOS), map to [-1, 1].

    ``image``: a path, a PIL image or a uint8 / uint16 array (H, W) or (H, W, C), of any size and mode; or a
    float tensor (1, C, S, S) or (C, S, S) in [-1, 1] already at the model's size and channels. A path or PIL image
    with an EXIF orientation tag is turned upright first (``ImageOps.exif_transpose``), as image viewers show it;
    ``PreparedImage.original`` is that upright picture. To edit the stored pixels as they are, pass an array
    (Pillow's ``transpose`` keeps the tag: turn an image by hand with ``ImageOps.exif_transpose``, which drops it).
    A JPEG file over twice Pillow's pixel limit is decoded at 1/2, 1/4 or 1/8 size (the edit sees a model-size copy
    anyway); its result cannot be pasted back at the original size (``paste_back`` says so).
    """
    if isinstance(image, np.ndarray):
        if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
            raise TypeError(
                f"an image array must be uint8 (or uint16) of shape (H, W) or (H, W, C), got {image.dtype} "
                f"{image.shape}; convert it (e.g. (x * 255).round().astype(np.uint8) for values in [0, 1])"
            )
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.dtype == np.uint16 and image.ndim == 3:  # Pillow has no 16-bit colour mode: scale to 8 bits
            image = np.rint(image / 257.0).astype(np.uint8)  # as convert_mode does for 16-bit grayscale
        try:
            image = Image.fromarray(image)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"an image array of shape {image.shape} and dtype {image.dtype} is no picture Pillow knows; give "
                "(H, W), (H, W, 3) or (H, W, 4) uint8"
            ) from err
    if isinstance(image, torch.Tensor):
        if image.ndim == 3:
            image = image[None]
        if (
            image.ndim != 4
            or image.shape[0] != 1
            or image.shape[1] != channels
            or image.shape[-1] != size
            or image.shape[-2] != size
        ):
            raise ValueError(
                f"an image tensor must be one image (1, {channels}, {size}, {size}) in [-1, 1]; got "
                f"{tuple(image.shape)} (pass a PIL image or a path to have it resized; edit one image per call)"
            )
        if not image.is_floating_point():
            raise TypeError(
                f"an image tensor must be float in [-1, 1], got {image.dtype}; use x.float() / 127.5 - 1 for "
                "0..255 pixels, or pass a PIL image"
            )
        low, high = float(image.min()), float(image.max())
        if not (-IMAGE_RANGE_SLACK <= low and high <= IMAGE_RANGE_SLACK):  # also refuses NaN
            raise ValueError(
                f"an image tensor must hold values in [-1, 1], got values in [{low:.3g}, {high:.3g}]; use x * 2 - 1 "
                "for 0..1 images and x / 127.5 - 1 for 0..255 ones"
            )
        pil = Image.fromarray(
            image[0].clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).squeeze(-1).cpu().numpy()
        )
        return PreparedImage(image.float(), pil, (0, 0, size, size))
    if isinstance(image, (str, os.PathLike)):
        original = open_image(image, shrink_huge_jpeg=True)  # decoded and turned upright
    elif isinstance(image, Image.Image):
        # A PIL image is taken like its file: turned as its EXIF orientation says, as viewers show it, so that a
        # photo opened with Image.open gives the same edit, box, mask and pasted result as its path does.
        original = upright(image)
    else:
        raise TypeError(
            "image must be a path, a PIL image, a uint8 array or a (1, C, S, S) tensor in [-1, 1]; got "
            f"{type(image).__name__}"
        )
    width, height = original.size
    side = min(width, height)
    if side == 0:
        raise ValueError(f"the image is empty ({width}x{height} pixels); give a picture")
    left, top = round((width - side) / 2), round((height - side) / 2)
    # Convert first (as the training transform does): palette and bilevel images would otherwise be resized by
    # nearest neighbour, and alpha, 16-bit and float pictures are brought to 8-bit colours the way training sees them.
    picture = convert_mode(original, channels)
    square = center_crop(picture, side) if width != height else picture
    resized = resize_shorter_side(square, size)
    shrunk_by = original.info.get(SHRUNK_BY_KEY, 1)
    return PreparedImage(
        pil_to_tensor(resized, channels)[None], original, (left, top, left + side, top + side), shrunk_by
    )


def pasted_mode(image: Image.Image) -> str:
    """The mode a pasted result keeps from its input, whatever the model's channels: "L" for a grayscale picture
    (8-bit, as the model saw it: 16-bit, float and bilevel ones too), "RGB" for any other, with an alpha channel
    ("LA", "RGBA") when the picture has transparency (an alpha channel, or a transparent palette entry or colour)."""
    colours = "L" if image.mode in GRAY_MODES else "RGB"
    return colours + "A" if has_transparency(image) else colours


def input_in_mode(image: Image.Image, mode: str) -> Image.Image:
    """The input as a pasted result shows it, in ``mode`` (``pasted_mode``): its colours as the model saw them
    (``convert_mode``: 16-bit scaled to 8 bits, colour profile applied) and, with "LA" or "RGBA", its own alpha
    and the colours under it as stored (not composited on white: the kept region stays the input's pixels)."""
    if mode in ("L", "RGB"):
        return convert_mode(image, len(mode))
    with_alpha = image.convert(mode)  # a transparent palette entry or colour becomes alpha 0
    colours = convert_mode(with_alpha.convert(mode[:-1]), len(mode) - 1)  # no alpha left: nothing composited
    colours.putalpha(with_alpha.getchannel("A"))
    return colours


def paste_back(result: Image.Image, prepared: PreparedImage, keep_mask: torch.Tensor | None = None) -> Image.Image:
    """Resize the model-resolution result to the crop and paste it into (a copy of) the original image, in the
    original's mode (``pasted_mode``; a grayscale result is turned to RGB for a colour input, a colour result to
    L for a grayscale one).

    With ``keep_mask`` ((side, side) bool, True where the edit kept the image) only the regenerated cells are
    pasted: the kept ones stay the original's own pixels, not the model's low-resolution redraw of them enlarged.
    The seam is feathered over the outer half of each kept cell that borders a regenerated one, so the blend never
    reaches into the regenerated region (which, when extending a picture, is blank in the original).

    A transparent input keeps its alpha everywhere, in the regenerated region too: the model draws colours only
    (it saw transparent pixels on white), so a regenerated pixel is as opaque as the input's pixel there, and an
    edit of a cut-out keeps its outline. To fill a transparent hole, composite the input on a background first;
    ``result.convert("RGB")`` shows the drawn colours without the alpha. A frame generated around an extended
    picture (``extended_image``) is opaque.
    """
    if prepared.shrunk_by > 1:  # the original size needs the full-size pixels, which Pillow refuses to decode
        raise ValueError(
            f"the input, a JPEG over twice Pillow's pixel limit ({Image.MAX_IMAGE_PIXELS}), was read at "
            f"1/{prepared.shrunk_by} size, so its result cannot be pasted back at the original size; edit a smaller "
            "copy of it (a few thousand pixels a side) to paste back, or keep the model-size result"
        )
    left, top, right, bottom = prepared.crop_box
    mode = pasted_mode(prepared.original)
    out = input_in_mode(prepared.original, mode).copy()
    colours = mode.removesuffix("A")
    generated = result.convert(colours).resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    if colours != mode:  # the input's alpha over the crop, regenerated region included
        generated.putalpha(out.crop((left, top, right, bottom)).getchannel("A"))
    if keep_mask is not None:
        keep = keep_mask.detach().to("cpu", torch.float32)[None, None]
        ramp = F.interpolate(keep, size=(bottom - top, right - left), mode="bilinear", align_corners=False)[0, 0]
        weight = ramp.sub(0.5).mul(2).clamp(0, 1)  # 0 from the boundary outwards, 1 from a kept cell's centre in
        weight_image = Image.fromarray(weight.mul(255).round().to(torch.uint8).numpy(), "L")
        generated = Image.composite(out.crop((left, top, right, bottom)), generated, weight_image)
    out.paste(generated, (left, top))
    return out


def extend_canvas(
    image: torch.Tensor, inner_fraction: float, fill: float = 0.0, grid_side: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shrink an image into the centre of a same-size canvas, for outpainting beyond its borders.

    With ``grid_side`` (the last scale's token grid) the placed square covers whole token cells: its side is
    ``inner_fraction`` of the grid rounded to the nearest cell. Otherwise a cell the image covers only partly is kept
    when the image covers most of it, and keeps the fill in the rest of it.

    Worked example: a 256 px canvas on a 16x16 grid (16 px cells) with ``inner_fraction`` 0.6 places the image
    on 10 x 10 cells (160 px, 0.625 of the side) at cell 3 (48 px), rather than on 154 px at 51 px.

    Args:
        image: (1, C, S, S) in [-1, 1].
        inner_fraction: side of the placed image relative to the canvas, in (0, 1).
        fill: canvas value outside the image (it is regenerated anyway).
        grid_side: the token grid the canvas is encoded to (S divisible by it), or None.
    Returns:
        (canvas (1, C, S, S), placed (S, S) bool: True where the original image lies).
    """
    if not isinstance(inner_fraction, numbers.Real) or isinstance(inner_fraction, bool):  # "0.6" from a form field
        raise TypeError(f"inner_fraction must be a number in (0, 1) such as 0.6, got {inner_fraction!r}")
    if not 0.0 < inner_fraction < 1.0:
        raise ValueError(f"inner_fraction must be in (0, 1), got {inner_fraction}")
    size = image.shape[-1]
    canvas = torch.full_like(image, fill)
    placed = torch.zeros(size, size, dtype=torch.bool)
    if grid_side is not None and size % grid_side == 0:
        cell, cells = size // grid_side, math.floor(grid_side * inner_fraction + 0.5)
        inner, offset = cells * cell, (grid_side - cells) // 2 * cell
    else:
        inner = max(1, round(size * inner_fraction))
        offset = (size - inner) // 2
    if inner == 0:  # under half a cell: nothing placed (the caller says the fraction is too small)
        return canvas, placed
    canvas[..., offset : offset + inner, offset : offset + inner] = F.interpolate(
        image, size=(inner, inner), mode="bicubic", align_corners=False
    ).clamp(-1, 1)
    placed[offset : offset + inner, offset : offset + inner] = True
    return canvas, placed


def extended_image(prepared: PreparedImage, canvas: torch.Tensor, placed: torch.Tensor) -> PreparedImage:
    """The prepared view of an :func:`extend_canvas` edit, for pasting back: the input's centre square at its own
    pixel size in the middle of the larger square the frame extends it to (the rest blank, to be generated), so that
    ``paste_back`` gives the extended picture at the input's resolution rather than the shrunk canvas squeezed into
    the input's crop between its uncropped sides.

    Args:
        prepared: the input as the model sees it (before extending).
        canvas: (1, C, S, S) the extended canvas; placed: (S, S) bool, True where the input lies on it.
    """
    left, top, right, bottom = prepared.crop_box
    rows = placed.any(dim=1).nonzero()[:, 0]
    offset, inner, size = int(rows[0]), len(rows), canvas.shape[-1]
    scale = (right - left) / inner  # input pixels per canvas pixel
    side = max(right - left, round(size * scale))
    mode = pasted_mode(prepared.original)
    square = input_in_mode(prepared.original, mode).crop(prepared.crop_box)
    extended = Image.new(mode, (side, side), "black")  # the blank frame, opaque (the pasted result covers it)
    extended.paste(square, (round(offset * scale),) * 2)
    return PreparedImage(canvas, extended, (0, 0, side, side), prepared.shrunk_by)


def keep_mask_for(mode: str, region: torch.Tensor) -> torch.Tensor:
    """``region`` is the user's box/mask on the last-scale grid. Inpainting regenerates it (keeps the rest);
    outpainting keeps it (regenerates the rest)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    keep = ~region if mode == "inpaint" else region.clone()
    if keep.all():
        raise ValueError("the mask leaves nothing to generate; use a non-empty region")
    if not keep.any():
        raise ValueError("the mask keeps nothing of the image; that is plain sampling (use `sample`)")
    return keep


def mask_overlay(
    image: torch.Tensor, region: torch.Tensor, tint: tuple[float, float, float] = (1.0, -1.0, -1.0), alpha: float = 0.5
) -> torch.Tensor:
    """Tint the region of an image (for side-by-side pictures).

    Args:
        image: (1, C, S, S) in [-1, 1]; grayscale is turned into RGB.
        region: (side, side) bool on the last-scale grid, True where content is generated.
    Returns:
        (1, 3, S, S) in [-1, 1].
    """
    rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
    size = rgb.shape[-1]
    mask = F.interpolate(region.float()[None, None].to(rgb.device), size=(size, size), mode="nearest")
    color = torch.tensor(tint, device=rgb.device).view(1, 3, 1, 1)
    return rgb * (1 - alpha * mask) + color * alpha * mask
