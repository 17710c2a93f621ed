"""The VAR image transform, written with Pillow and NumPy (no torchvision).

Official recipe (VAR ``utils/data.py``): resize the shorter side to ``round(mid_reso * size)`` with LANCZOS,
then a random crop (training) or a center crop (evaluation) to ``size x size``, an optional horizontal flip,
and finally ``ToTensor`` followed by ``x * 2 - 1`` so pixels lie in [-1, 1].

Any Pillow mode becomes the training channels (``convert_mode``): RGB for 3 channels, L for 1. Transparent
images (RGBA, LA, PA, and palette, RGB or grayscale PNGs with a transparent colour) are composited on white, as
image viewers and web pages show them; 16-bit grayscale (I;16) is scaled to 8 bits (x / 257), not clipped at 255;
32-bit integer grayscale (I) is scaled from its white level (``integer_white_level``: the file's bit depth where it
says one, else the range its values fit: 8 bits, 16 bits or the image's own maximum); CMYK, YCbCr, bilevel and
palette images are converted by Pillow. An embedded ICC colour profile (``info["icc_profile"]``: Display P3 phone
photos, Adobe RGB exports, CMYK print files, gray scans) is applied with littleCMS, so pixels become the sRGB numbers
a colour-managed viewer shows (``to_srgb``); without it a P3 photo's numbers read as sRGB look dull.

Randomness comes from an explicit generator (``numpy.random.Generator`` or ``torch.Generator``) so a crop can
be replayed exactly; without one, torch's global generator is used (which DataLoader seeds per worker).

References: VAR ``utils/data.py`` (``build_dataset``, ``normalize_01_into_pm1``).
"""

from __future__ import annotations

import functools
import io
import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

MID_RESO = 1.125  # VAR's --mid_reso default: 288 px before a 256 px crop (the class folders' --crop-margin)
CAPTION_MID_RESO = 1.0  # captioned images: no margin, as captions name positions ("top left") a margin would shift
ALPHA_BACKGROUND = 255  # transparent pixels are composited on white (0 would be black)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit PNGs open as I;16 or I (32-bit ints)
# Where ``images.upright`` keeps the bit depth an "I" image's file declares: the turned copy has lost the file's tags.
BIT_DEPTH_KEY = "nextscale_bit_depth"
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
GRAY_MODES = frozenset({"1", "L", "LA", "La", "F", *SIXTEEN_BIT_MODES})  # one channel of intensity (no colour)
TRANSPARENT_COLOUR_MODES = ("P", "L", "RGB")  # a PNG tRNS chunk (info["transparency"]) makes one colour transparent

Generator = np.random.Generator | torch.Generator
# The mode littleCMS reads for each ICC colour space (``xcolor_space``); other spaces (Lab, n-colour) are left alone.
PROFILE_MODES = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}


def _randint(high: int, generator: Generator | None) -> int:
    """One integer in [0, high) from whichever generator the caller holds."""
    if high <= 1:
        return 0
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(high))
    return int(torch.randint(high, (1,), generator=generator).item())


def resize_shorter_side(image: Image.Image, side: int) -> Image.Image:
    """Resize so that the shorter side equals ``side``, keeping the aspect ratio (LANCZOS).

    The longer side is truncated, not rounded, as torchvision's ``Resize(int)`` (which the official transform
    uses) computes it. Example: a 400x300 image with side=288 becomes 384x288; 500x333 becomes 432x288
    (288 * 500 / 333 = 432.4), and 401x300 becomes 384x288 (384.96, where rounding would give 385).
    """
    if side < 1:
        raise ValueError(f"side must be at least 1, got {side}")
    width, height = image.size
    if min(width, height) == side:
        return image
    if width <= height:
        new_size = (side, max(side, int(height * side / width)))
    else:
        new_size = (max(side, int(width * side / height)), side)
    return image.resize(new_size, resample=Image.Resampling.LANCZOS)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Crop the central ``size x size`` square (the image must be at least that large)."""
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from a {width}x{height} image; resize it first")
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def random_crop(image: Image.Image, size: int, generator: Generator | None = None) -> Image.Image:
    """Crop a ``size x size`` square at a random position drawn from ``generator`` (top first, then left)."""
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from a {width}x{height} image; resize it first")
    top = _randint(height - size + 1, generator)
    left = _randint(width - size + 1, generator)
    return image.crop((left, top, left + size, top + size))


def has_transparency(image: Image.Image) -> bool:
    """Whether ``image`` has transparent pixels to composite on the background: an alpha channel, or a transparent
    colour (a palette entry, or one RGB or gray value, as PNG's tRNS chunk gives)."""
    return image.mode in ALPHA_MODES or (image.mode in TRANSPARENT_COLOUR_MODES and "transparency" in image.info)


def file_bit_depth(image: Image.Image) -> int | None:
    """The bits per sample a 32-bit integer ("I") image's file declares, or None (an image made in memory, or a
    file that does not say). Pillow opens 16-bit PNGs (before Pillow 10) and PGMs of any maxval above 255 (scaled
    to 16 bits) as "I"; a TIFF says its depth in its BitsPerSample tag (8, 16 or 32)."""
    if BIT_DEPTH_KEY in image.info:
        return image.info[BIT_DEPTH_KEY]
    if image.format in ("PNG", "PPM"):
        return 16
    tags = getattr(image, "tag_v2", None)  # TIFF
    bits = tags.get(258) if tags is not None else None  # 258: BitsPerSample
    bits = bits[0] if isinstance(bits, tuple) and bits else bits
    return bits if isinstance(bits, int) else None


def integer_white_level(image: Image.Image) -> int:
    """The value that is white in a 32-bit integer ("I") image: 255 or 65535 when its file declares 8 or 16 bits
    (a dark 16-bit photo stays dark), else the smallest of 255 and 65535 that holds its largest value (an image
    made in memory with ``convert("I")`` from 8 bits holds 0..255), else that largest value itself (a 32-bit
    scientific image of arbitrary range is stretched to fit).

    Worked example: pixels 0..200 of an in-memory image give 255 (200 stays 200); the same pixels in a 16-bit
    file give 65535 (200 becomes 1); pixels up to 40000 give 65535, and up to 1,000,000 give 1,000,000.
    """
    bits = file_bit_depth(image)
    if bits in (8, 16):
        return 2**bits - 1
    largest = image.getextrema()[1]
    return next((level for level in (255, 65535) if largest <= level), largest)


@functools.cache
def _warn_once(message: str) -> None:
    """Log ``message`` once per process: a folder of photos from one camera shares one profile and one problem."""
    logger.warning(message)


@functools.cache
def _srgb_profile() -> Any:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=16)
def _usable_profile(icc: bytes) -> Any:
    """The parsed ICC profile ``icc`` (an ``ImageCms.ImageCmsProfile``) when applying it changes colours, else None:
    an sRGB profile (already what the model reads; skipping it also keeps those photos' pixels bit-exact), an
    unreadable one, a colour space other than RGB, gray or CMYK, or a Pillow without littleCMS (each logged once)."""
    try:
        from PIL import ImageCms  # fails where Pillow was built without littleCMS (its wheels include it)
    except ImportError:
        _warn_once(
            "this Pillow has no littleCMS (PIL.features.check('littlecms2') is False), so images' colour profiles "
            "are ignored and wide-gamut photos read dull; install a Pillow wheel, which includes it"
        )
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile).strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as err:  # a truncated or garbled profile
        _warn_once(f"ignoring an image's unreadable colour profile ({err}); its pixels are read as sRGB")
        return None
    if description.startswith("sRGB"):
        return None
    if profile.profile.xcolor_space.strip() not in PROFILE_MODES:
        _warn_once(f"ignoring colour profile {description!r} of colour space {profile.profile.xcolor_space.strip()}")
        return None
    return profile


@functools.lru_cache(maxsize=16)
def _srgb_transform(profile: Any, mode: str) -> Any:
    """A littleCMS transform from ``profile`` to sRGB (RGB out) for images of ``mode``, built once per profile.

    Perceptual intent, as viewers and browsers show photos: matrix profiles (Display P3, Adobe RGB) have no
    perceptual table, so littleCMS maps them colorimetrically (colours inside sRGB kept exactly, the rest clipped),
    while a CMYK print profile's perceptual table maps its whole gamut smoothly instead of clipping it."""
    from PIL import ImageCms

    return ImageCms.buildTransform(profile, _srgb_profile(), mode, "RGB", ImageCms.Intent.PERCEPTUAL)


def to_srgb(image: Image.Image, profile: Any, gray: bool) -> Image.Image:
    """``image`` (8-bit, no alpha) with ``profile`` (from ``_usable_profile``) applied: an RGB image of sRGB pixels.

    ``gray``: the file was grayscale, so a gray profile applies (an RGB image then holds equal channels). An image
    whose mode does not fit its profile (an RGB profile on a CMYK image) is returned unchanged (logged once), as is
    one littleCMS fails on: a long run never stops over a profile.
    """
    from PIL import ImageCms

    mode = PROFILE_MODES[profile.profile.xcolor_space.strip()]
    description = ImageCms.getProfileDescription(profile).strip()
    if (mode == "CMYK") != (image.mode == "CMYK") or (mode == "L" and not gray):
        _warn_once(f"ignoring colour profile {description!r}: it does not fit {image.mode} images")
        return image
    try:
        return _srgb_transform(profile, mode).apply(image.convert(mode))
    except (ImageCms.PyCMSError, OSError, ValueError) as err:
        _warn_once(f"ignoring colour profile {description!r}, which littleCMS cannot apply ({err})")
        return image


def convert_mode(image: Image.Image, channels: int) -> Image.Image:
    """Any Pillow image as RGB (``channels`` = 3) or L (1), as the module docstring describes.

    Worked example: a 16-bit grayscale pixel 32896 becomes round(32896 / 257) = 128 (Pillow's own
    ``convert("L")`` would clip it to 255); an RGBA pixel (200, 0, 0, 128) becomes about (227, 127, 127); a pixel
    128 of a 32-bit integer image of 8-bit values stays 128 (see ``integer_white_level``).

    Raises:
        ValueError: for a mode Pillow cannot convert to RGB.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    target = "RGB" if channels == 3 else "L"
    icc = image.info.get("icc_profile")
    profile = _usable_profile(icc) if icc else None  # applied last, to the 8-bit, alpha-free pixels
    gray = image.mode in GRAY_MODES
    if has_transparency(image):  # before the same-mode shortcut: an RGB or L PNG can have a transparent colour
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (ALPHA_BACKGROUND,) * 3 + (255,))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    elif image.mode == target and profile is None:
        return image
    elif image.mode in SIXTEEN_BIT_MODES:
        white = integer_white_level(image) if image.mode == "I" else 65535
        values = np.asarray(image, dtype=np.float64) / (max(white, 1) / 255.0)  # 0..white -> 0..255
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and np.nanmax(values) <= 1.0:  # a float picture in [0, 1] (scientific TIFFs), not 0..255
            values = values * 255.0
        image = Image.fromarray(np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8), mode="L")
    elif image.mode not in ("RGB", "L", "1", "P", "CMYK", "YCbCr", "RGBX", "HSV"):
        image = image.convert("RGB")  # e.g. LAB: Pillow converts it to RGB only, not to L
    if profile is not None:
        image = to_srgb(image, profile, gray)  # no profile in its info: a second convert_mode leaves it alone
    return image.convert(target)


def pil_to_tensor(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """Convert a PIL image to a float tensor (C, H, W) in [-1, 1].

    Args:
        image: any PIL image; it is converted to RGB (channels=3) or grayscale (channels=1) by ``convert_mode``.
        channels: 1 or 3.

    Returns:
        float32 tensor of shape (channels, H, W) with values ``pixel / 255 * 2 - 1``.
    """
    image = convert_mode(image, channels)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W) -> (H, W, 1)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return tensor.float().div(127.5).sub(1.0)


class ImageTransform:
    """The VAR transform: shorter side to ``round(mid_reso * size)``, crop to ``size``, flip, to [-1, 1].

    Args:
        size: output side in pixels.
        train: random crop (True) or center crop (False).
        mid_reso: ratio between the resized shorter side and ``size`` (VAR default 1.125; 1.0 = no margin).
        hflip: flip horizontally with probability 0.5 (training only; VAR's ``--hflip`` defaults to False).
        channels: 3 for RGB output, 1 for grayscale.

    Example:
        >>> transform = ImageTransform(256, train=True)
        >>> x = transform(Image.open("cat.jpg"), generator=np.random.default_rng(0))  # (3, 256, 256)
    """

    def __init__(
        self, size: int, train: bool = True, mid_reso: float = MID_RESO, hflip: bool = False, channels: int = 3
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        if mid_reso < 1.0:
            raise ValueError(f"mid_reso must be >= 1.0 (the resized image must cover the crop), got {mid_reso}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.size = size
        self.train = train
        self.mid_reso = mid_reso
        self.hflip = hflip
        self.channels = channels
        self.resize_side = round(mid_reso * size)

    def __call__(self, image: Image.Image, generator: Generator | None = None) -> torch.Tensor:
        """Transform one image.

        Args:
            image: a PIL image of any mode and size.
            generator: source of the crop position and flip (training only); None uses torch's global RNG.

        Returns:
            float32 tensor (channels, size, size) in [-1, 1].
        """
        # Convert before resizing so palette/alpha/16-bit images are resampled as real 8-bit colours.
        image = convert_mode(image, self.channels)
        image = resize_shorter_side(image, self.resize_side)
        if self.train:
            image = random_crop(image, self.size, generator)
            if self.hflip and _randint(2, generator) == 1:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            image = center_crop(image, self.size)
        return pil_to_tensor(image, self.channels)

    def __repr__(self) -> str:
        return (
            f"ImageTransform(size={self.size}, train={self.train}, mid_reso={self.mid_reso}, "
            f"hflip={self.hflip}, channels={self.channels})"
        )
