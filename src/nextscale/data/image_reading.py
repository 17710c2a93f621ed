"""One image file in: header checks, decoding (a huge JPEG shrunk while decoded), EXIF turn, mode conversion
(a 16-bit gray PNG's transparent value made an alpha channel, ``gray_transparency_as_alpha``).

Each file is judged when it is opened or read. A bad file raises ``BadImageError`` with one of
``BAD_IMAGE_REASONS``: unreadable (not an image, a corrupt header), truncated (fails to decode), tiny (shorter side
under ``smallest_side``), huge (over Pillow's ``Image.MAX_IMAGE_PIXELS``, unless a JPEG decoded shrunk fits, see
``jpeg_reduction``) or unsupported mode. The datasets then skip it or stop, as ``bad_images``
(one of ``BAD_IMAGE_POLICIES``) says; see ``data.images``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, JpegImagePlugin

from nextscale.data.transforms import (
    BIT_DEPTH_KEY,
    GRAY_MODES,
    SIXTEEN_BIT_MODES,
    ImageTransform,
    convert_mode,
    file_bit_depth,
)

# PIL signals unreadable or truncated files with OSError (incl. UnidentifiedImageError), ValueError or SyntaxError.
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
BAD_IMAGE_POLICIES = ("skip", "fail")
BAD_IMAGE_REASONS = ("unreadable", "truncated", "tiny", "huge", "unsupported mode")
# A shorter side below max(TINY_PIXELS, TINY_FRACTION x the training side) is skipped: upscaling more than 8x
# trains on blur, and a map a few pixels wide holds no image. (48x40 photos still train at 256 px, upscaled.)
TINY_FRACTION = 0.125
TINY_PIXELS = 4
JPEG_REDUCTIONS = (2, 4, 8)  # the scales a JPEG decoder can shrink an image by while decoding (Image.draft)
# ``Image.info`` key of an image ``open_image`` decoded shrunk: by what factor (2, 4 or 8), for what needs full size.
SHRUNK_BY_KEY = "nextscale_shrunk_by"


class BadImageError(ValueError):
    """An image file training cannot use; ``reason`` is one of ``BAD_IMAGE_REASONS``."""

    def __init__(self, path: Path, reason: str, detail: str) -> None:
        fix = "replace or delete it" if reason != "huge" else "save a smaller copy (a few thousand pixels a side)"
        super().__init__(f"cannot use image {path} ({reason}: {detail}); {fix}, or pass --bad-images skip")
        self.path, self.reason, self.detail = path, reason, detail


def smallest_side(size: int) -> float:
    """The shortest image side usable for ``size`` px training; shorter images are skipped as "tiny"."""
    return max(TINY_PIXELS, TINY_FRACTION * size)


def jpeg_reduction(image: Image.Image) -> int:
    """1 for an image within Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``); for a JPEG over it,
    the least factor (2, 4 or 8) its decoder can shrink it by while decoding (``Image.draft``) that brings it
    within the limit; 0 when nothing does (not a JPEG). A shrunk decode never holds more pixels than the limit, so
    a 108- or 200-megapixel phone photo trains (at 1/2 or 1/4 size, still far above any training side) while a
    forged header claiming billions of pixels gets no bigger buffer than Pillow allows any image."""
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS  # None: the user turned Pillow's check off (as its documentation says to)
    if limit is None or width * height <= limit:
        return 1
    if image.format != "JPEG":
        return 0
    return next((factor for factor in JPEG_REDUCTIONS if -(-width // factor) * -(-height // factor) <= limit), 0)


def _check_size(path: Path, image: Image.Image, size: int, shrink_jpeg: bool) -> None:
    width, height = image.size
    reduction = jpeg_reduction(image)
    if reduction == 0 or (reduction > 1 and not shrink_jpeg):  # a reader that decodes at full size cannot use it
        limit = Image.MAX_IMAGE_PIXELS
        raise BadImageError(path, "huge", f"{width}x{height} pixels, over the {limit} limit")
    smallest = smallest_side(size)
    if min(width, height) < smallest:
        raise BadImageError(path, "tiny", f"{width}x{height}, shorter side under {smallest:g} px ({size} px training)")


def open_header(source: Path | BinaryIO, shown: Path | None = None) -> Image.Image:
    """An image file opened, its header read but nothing decoded; a JPEG over twice Pillow's pixel limit (which
    ``Image.open`` refuses) opens too, to be decoded shrunk (``jpeg_reduction``).

    Raises:
        BadImageError: "unreadable", or "huge" for another kind of file over twice the limit (named ``shown``).
    """
    shown = shown or source
    try:
        with warnings.catch_warnings():  # DecompressionBombWarning: huge images are judged by _check_size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as err:  # Pillow refuses images over twice its limit when opening them
        try:  # a JPEG can still be decoded shrunk (``jpeg_reduction``): read its header without Pillow's check
            if hasattr(source, "seek"):  # a stream Image.open has read from
                source.seek(0)
            return JpegImagePlugin.JpegImageFile(source)
        except _READ_ERRORS:
            raise BadImageError(shown, "huge", str(err)) from err
    except _READ_ERRORS as err:
        raise BadImageError(shown, "unreadable", str(err) or type(err).__name__) from err


def upright(image: Image.Image) -> Image.Image:
    """A decoded copy of ``image`` turned as its EXIF orientation tag says (phone photos store their pixels
    sideways and record the turn): what every viewer shows, so that boxes and masks mean what the user sees.

    A 32-bit integer ("I") image keeps the bit depth its file declares in ``info`` (the copy has lost the file's
    tags), so that ``transforms.convert_mode`` scales a 16-bit file's pixels as 16-bit however dark they are, and a
    16-bit gray image with a transparent value comes back as "LA" (``gray_transparency_as_alpha``)."""
    turned = ImageOps.exif_transpose(image) or image.copy()
    if image.mode == "I" and (bits := file_bit_depth(image)) is not None:
        turned.info[BIT_DEPTH_KEY] = bits
    return gray_transparency_as_alpha(turned)


def gray_transparency_as_alpha(image: Image.Image) -> Image.Image:
    """A 16- or 32-bit gray image whose file names one value transparent (a 16-bit gray PNG's tRNS chunk, which
    Pillow opens as "I;16" with ``info["transparency"]``) as "LA": gray scaled to 8 bits by ``convert_mode`` (not
    clipped), alpha 0 at the transparent value and 255 elsewhere, so it is composited on white as RGBA images are.
    Any other image is returned as it is.

    Worked example: 16-bit pixels (32896, 1000) with value 1000 transparent become LA (128, 255) and (4, 0), which
    ``convert_mode`` makes gray 128 and white 255 (without this, 1000 would read as dark gray 4).
    """
    transparent = image.info.get("transparency")
    if image.mode not in SIXTEEN_BIT_MODES or not isinstance(transparent, int):
        return image
    opaque = image.copy()
    del opaque.info["transparency"]
    gray = convert_mode(opaque, 1)  # the 16-bit scaling and a gray colour profile, applied as to any gray image
    alpha = Image.fromarray(np.where(np.asarray(image) == transparent, 0, 255).astype(np.uint8))
    return Image.merge("LA", (gray, alpha))


QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that turn the stored pixels by 90 degrees (transposed or not)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened, undecoded image as ``upright`` turns it: a phone photo stored sideways reports
    its upright size. Only the header's EXIF is read: a PNG whose eXIf chunk follows the pixels (Pillow would
    decode the image to find it) is taken as stored."""
    if image.format == "PNG" and "exif" not in image.info:
        return image.size
    try:
        orientation = image.getexif().get(0x0112)  # 0x0112: Orientation
    except _READ_ERRORS:  # a garbled EXIF block: viewers show the stored pixels, and so does ``upright``
        return image.size
    width, height = image.size
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


GRAY_TOLERANCE = 2  # lossy WebP stores gray pixels with colour channels up to a level apart


def holds_gray(image: Image.Image) -> bool:
    """Whether an opened, not yet decoded image is grayscale: a gray mode (``transforms.GRAY_MODES``), or RGB(A)
    from a file with no gray mode of its own whose visible pixels' channels agree (the pixels are decoded): a WebP
    (Pillow saves "L" and "LA" images as RGB and RGBA WebPs) or a 16-bit gray + alpha PNG (Pillow opens it as RGBA).
    Other RGB files are colour, as their headers say; they are not decoded.

    For telling a grayscale folder from a colour one: an "LA" WebP reads back as RGBA, yet its one channel is what
    a grayscale model (``channels`` 1) reads from it.
    """
    if image.mode in GRAY_MODES:
        return True
    gray_stored_as_colour = image.format == "WEBP" or (
        image.format == "PNG" and any(tile[3] == "LA;16B" for tile in image.tile)  # tile: (codec, box, offset, rawmode)
    )
    if image.mode not in ("RGB", "RGBA") or not gray_stored_as_colour:
        return False
    pixels = np.asarray(image.convert("RGBA"), dtype=np.int16)  # (H, W, 4)
    visible = pixels[pixels[..., 3] > 0, :3]  # the colour under a fully transparent pixel is never shown
    return int(np.ptp(visible, axis=1).max(initial=0)) <= GRAY_TOLERANCE


def read_training_image(path: str | os.PathLike, size: int, channels: int) -> Image.Image:
    """Open, check and fully decode one training image, converted to RGB (3 channels) or L (1).

    Raises:
        BadImageError: the file is unreadable, truncated, tiny, huge or of an unconvertible mode.
    """
    path = Path(path)
    image = open_header(path)
    with image:
        _check_size(path, image, size, shrink_jpeg=True)
        if (factor := jpeg_reduction(image)) > 1:  # decoded shrunk: the full-size pixels are never held
            image.draft(image.mode, (image.width // factor, image.height // factor))
        try:
            image.load()  # decode now: a truncated file fails here, not in the middle of a batch
        except _READ_ERRORS as err:
            raise BadImageError(path, "truncated", str(err) or type(err).__name__) from err
        try:
            return convert_mode(upright(image), channels)
        except ValueError as err:
            raise BadImageError(path, "unsupported mode", f"{image.mode}: {err}") from err


def check_image_header(
    path: str | os.PathLike, size: int, stream: BinaryIO | None = None, shrink_jpeg: bool = False
) -> tuple[int, int]:
    """(width, height) from a file's header, without decoding it.

    Args:
        path: the file, or the name shown in messages when ``stream`` holds the bytes (an image inside a shard).
        size: the training side the image is judged against (tiny below 1/8 of it).
        stream: the image's bytes, when they do not lie in a file of their own.
        shrink_jpeg: the reader decodes a JPEG over Pillow's pixel limit shrunk (as ``read_training_image`` does,
            see ``jpeg_reduction``), so such a JPEG is not "huge".

    Raises:
        BadImageError: unreadable, tiny or huge.
    """
    path = Path(path)
    with open_header(path if stream is None else stream, shown=path) as image:
        _check_size(path, image, size, shrink_jpeg)
        return image.size


def open_image(path: str | os.PathLike, shrink_huge_jpeg: bool = False) -> Image.Image:
    """Open and fully decode one image file, raising a ValueError that names the file if it is unreadable.

    Up to twice Pillow's pixel limit an image is decoded at full size. A larger one (over what ``Image.open`` opens)
    is refused as too large, except, with ``shrink_huge_jpeg``, a JPEG: it is decoded at 1/2, 1/4 or 1/8 size, the
    least that fits the limit (``jpeg_reduction``, as training reads it), and ``info[SHRUNK_BY_KEY]`` records the
    factor. An edit sees a model-size copy anyway; what needs the full-size pixels (pasting the result back) checks
    the key.
    """
    path = Path(path)
    if path.is_dir():  # an edit takes one picture (a batch of them: Pipeline.edit_images with tensors)
        raise IsADirectoryError(
            f"{path} is a folder, not an image file; give one image file (e.g. {path / 'photo.png'})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    shrunk_by = 1
    try:
        with warnings.catch_warnings():  # one photo the user chose: up to twice Pillow's limit is decoded quietly
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as err:  # over twice the limit (a 200-megapixel phone photo): not corrupt
        image = _huge_jpeg_header(path) if shrink_huge_jpeg else None
        shrunk_by = 0 if image is None else jpeg_reduction(image)
        if shrunk_by == 0:
            if image is not None:  # a JPEG too large even at 1/8 size
                image.close()
            raise ValueError(
                f"image {path} is too large to open ({err}); save a smaller copy (a few thousand pixels a side is "
                "plenty)"
            ) from err
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from err
    try:
        with image:
            if shrunk_by > 1:  # decoded shrunk: the full-size pixels are never held
                image.draft(image.mode, (image.width // shrunk_by, image.height // shrunk_by))
            image.load()  # decode now: a truncated file fails here, not later in a worker
            decoded = upright(image)
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from err
    if shrunk_by > 1:
        decoded.info[SHRUNK_BY_KEY] = shrunk_by
    return decoded


def _huge_jpeg_header(path: Path) -> Image.Image | None:
    """A file over twice Pillow's limit opened as a JPEG without Pillow's check (nothing decoded), or None if it is
    not a JPEG."""
    try:
        return JpegImagePlugin.JpegImageFile(path)
    except _READ_ERRORS:
        return None


def _unreadable(path: Path, err: BaseException) -> ValueError:
    return ValueError(f"cannot read image {path}: {err}. The file is corrupt or not an image; replace or delete it")


def load_image(path: str | os.PathLike, size: int, channels: int = 3, mid_reso: float = 1.0) -> torch.Tensor:
    """Load one image as the models see it: shorter side resized, center-cropped, in [-1, 1].

    Args:
        path: an image file readable by Pillow.
        size: output side in pixels.
        channels: 3 (RGB) or 1 (grayscale).
        mid_reso: shorter side is resized to ``round(mid_reso * size)`` before the center crop; the default
            1.0 keeps the whole shorter side (editing wants the full picture, not VAR's evaluation margin).

    Returns:
        float32 tensor (channels, size, size) in [-1, 1].
    """
    transform = ImageTransform(size, train=False, mid_reso=mid_reso, channels=channels)
    return transform(open_image(path))
