"""Embedded ICC colour profiles are applied (``transforms.to_srgb``): pixels become the sRGB numbers a
colour-managed viewer shows. The profiles are built here byte by byte (ICC v2 matrix/TRC and lut8 profiles), and
the expected colours come from the ICC formulas in NumPy, not from littleCMS."""

import logging
import struct
import sys

import numpy as np
import PIL
import pytest
import torch
from PIL import Image, ImageCms

from nextscale.data import transforms
from nextscale.data.image_reading import load_image, open_image, read_training_image
from nextscale.data.transforms import convert_mode, pil_to_tensor

D50 = (0.9642, 1.0, 0.8249)
# Adobe RGB (1998) primaries adapted to D50, the PCS white; sRGB's likewise (ICC sRGB profile colorants).
ADOBE_D50 = np.array([[0.6097, 0.2053, 0.1492], [0.3111, 0.6257, 0.0632], [0.0195, 0.0609, 0.7446]])
SRGB_D50 = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
ADOBE_GAMMA = 563 / 256  # 2.19921875, as the Adobe RGB profile's curv tag stores it


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


def _description(text: str) -> bytes:
    name = text.encode() + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(12 + 67)


def _profile(space: bytes, tags: list[tuple[bytes, bytes]], pcs: bytes = b"XYZ ", kind: bytes = b"mntr") -> bytes:
    """An ICC v2.1 profile: 128-byte header, tag table, tag data (4-byte aligned)."""
    offset = 128 + 4 + 12 * len(tags)
    body, table = b"", b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = struct.pack(">I4sI4s4s4s", offset + len(body), b"none", 0x02100000, kind, space, pcs) + bytes(12)
    header += b"acsp"
    header += bytes(68 - len(header)) + _s15(D50[0]) + _s15(D50[1]) + _s15(D50[2])
    return header + bytes(128 - len(header)) + struct.pack(">I", len(tags)) + table + body


def adobe_rgb_profile() -> bytes:
    tags = [(b"desc", _description("Adobe-like RGB")), (b"wtpt", _xyz(*D50))]
    tags += [(name, _xyz(*ADOBE_D50[:, column])) for column, name in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))]
    tags += [(name, _curve(ADOBE_GAMMA)) for name in (b"rTRC", b"gTRC", b"bTRC")]
    return _profile(b"RGB ", tags)


def gray_profile(gamma: float = 2.2) -> bytes:
    return _profile(b"GRAY", [(b"desc", _description("Gray gamma")), (b"wtpt", _xyz(*D50)), (b"kTRC", _curve(gamma))])


CYAN_LAB = (55, -40, -45)


def cmyk_profile() -> bytes:
    """A print profile whose A2B0 table (lut8, Lab PCS, 2 points per ink) makes paper white, pure cyan
    ``CYAN_LAB`` and every other corner black."""

    def lab8(lightness: int, a: int, b: int) -> bytes:
        return bytes((round(lightness * 255 / 100), a + 128, b + 128))

    corners = [lab8(100, 0, 0) if i == 0 else lab8(*CYAN_LAB) if i == 0b1000 else lab8(0, 0, 0) for i in range(16)]
    ramp = bytes(range(256))  # identity input and output curves
    identity = b"".join(_s15(float(row == column)) for row in range(3) for column in range(3))
    table = b"mft1" + bytes(4) + bytes((4, 3, 2, 0)) + identity + ramp * 4 + b"".join(corners) + ramp * 3
    tags = [(b"desc", _description("Test CMYK")), (b"wtpt", _xyz(*D50)), (b"A2B0", table)]
    return _profile(b"CMYK", tags, pcs=b"Lab ", kind=b"prtr")


def srgb_from_xyz(xyz: np.ndarray) -> np.ndarray:
    """8-bit sRGB of a D50 PCS colour (out-of-gamut channels clipped), by the sRGB formulas."""
    linear = np.clip(np.linalg.solve(SRGB_D50, xyz), 0.0, 1.0)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.rint(encoded * 255)


def srgb_from_lab(lightness: float, a: float, b: float) -> np.ndarray:
    fy = (lightness + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    return srgb_from_xyz(np.array(D50) * np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)))


@pytest.fixture(autouse=True)
def fresh_caches():
    """Profiles, transforms and once-only warnings are cached per process; each test starts clean."""
    caches = (transforms._usable_profile, transforms._srgb_transform, transforms._warn_once)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def _with_profile(image: Image.Image, icc: bytes) -> Image.Image:
    image.info["icc_profile"] = icc
    return image


def test_wide_gamut_photo_is_converted_to_srgb(tmp_path):
    """An Adobe RGB red reads as the (more saturated) sRGB numbers of the same colour, not as its own numbers; a
    sideways-stored JPEG keeps its profile when turned upright, and the model's tensor is converted exactly once."""
    colour = (200, 30, 30)
    expected = srgb_from_xyz(ADOBE_D50 @ (np.array(colour) / 255) ** ADOBE_GAMMA)  # about (233, 24, 24)
    assert np.abs(expected - colour).max() > 20  # the naive reading is far off
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turned 90 degrees when read
    path = tmp_path / "adobe.png"
    Image.new("RGB", (24, 16), colour).save(path, icc_profile=adobe_rgb_profile(), exif=exif)

    picture = read_training_image(path, 16, channels=3)
    assert picture.size == (16, 24)
    assert np.abs(np.asarray(picture)[8, 8] - expected).max() <= 2
    tensor = load_image(path, 16)  # convert_mode runs on the opened image, then again inside pil_to_tensor
    pixel = (tensor[:, 8, 8] + 1) * 127.5
    assert np.abs(pixel.numpy() - expected).max() <= 2
    assert np.abs(np.asarray(open_image(path).convert("RGB"))[8, 8] - colour).max() == 0  # the file's own numbers


def test_srgb_profile_changes_nothing():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = _with_profile(Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)), srgb)
    assert convert_mode(image, 3) is image  # the fast path: no copy, bit-exact


def test_transparent_pixels_stay_white_and_opaque_ones_are_converted():
    array = np.zeros((2, 2, 4), dtype=np.uint8)
    array[0, 0] = (200, 30, 30, 255)
    image = _with_profile(Image.fromarray(array, mode="RGBA"), adobe_rgb_profile())
    out = np.asarray(convert_mode(image, 3))
    assert out[1, 1].tolist() == [255, 255, 255]
    assert np.abs(out[0, 0] - srgb_from_xyz(ADOBE_D50 @ (np.array([200, 30, 30]) / 255) ** ADOBE_GAMMA)).max() <= 2


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_gray_profile_is_applied_for_one_and_three_channels(mode):
    """A gamma-2.2 gray scan's dark tones are darker in sRGB (whose curve is not a pure 2.2 power)."""
    value = 30
    expected = srgb_from_xyz(np.array(D50) * (value / 255) ** 2.2)[1]  # a neutral: its Y through sRGB's curve
    image = _with_profile(Image.new(mode, (4, 4), value if mode == "L" else (value, 255)), gray_profile())
    gray = convert_mode(image, 1).getpixel((0, 0))
    colour = convert_mode(image, 3).getpixel((0, 0))
    assert expected != value and abs(gray - expected) <= 1
    assert max(abs(channel - expected) for channel in colour) <= 1


def test_cmyk_profile_is_used_instead_of_the_naive_formula():
    image = _with_profile(Image.new("CMYK", (2, 1)), cmyk_profile())
    image.putpixel((1, 0), (255, 0, 0, 0))  # pure cyan; (0, 0) is paper
    out = np.asarray(convert_mode(image, 3))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert np.abs(out[0, 1] - srgb_from_lab(*CYAN_LAB)).max() <= 3  # about (0, 152, 209)
    assert np.asarray(image.convert("RGB"))[0, 1].tolist() == [0, 255, 255]  # what Pillow alone makes of it


def test_broken_profile_is_ignored_with_one_warning(caplog):
    images = [_with_profile(Image.new("RGB", (4, 4), (200, 30, 30)), b"not a profile" * 20) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="nextscale.data.transforms"):
        tensors = [pil_to_tensor(image) for image in images]
    assert all(torch.equal(tensor, pil_to_tensor(Image.new("RGB", (4, 4), (200, 30, 30)))) for tensor in tensors)
    assert [record.getMessage() for record in caplog.records if "unreadable colour profile" in record.getMessage()]
    assert len(caplog.records) == 1


def test_profile_of_another_colour_space_is_ignored(caplog):
    image = _with_profile(Image.new("CMYK", (2, 2), (0, 255, 0, 0)), adobe_rgb_profile())
    with caplog.at_level(logging.WARNING, logger="nextscale.data.transforms"):
        out = convert_mode(image, 3)
    assert out.getpixel((0, 0)) == image.convert("RGB").getpixel((0, 0))
    assert "does not fit CMYK images" in caplog.text


def test_pillow_without_littlecms_reads_pixels_as_they_are(monkeypatch, caplog):
    monkeypatch.delattr(PIL, "ImageCms")
    monkeypatch.setitem(sys.modules, "PIL.ImageCms", None)  # ``from PIL import ImageCms`` raises ImportError
    image = _with_profile(Image.new("RGB", (4, 4), (200, 30, 30)), adobe_rgb_profile())
    with caplog.at_level(logging.WARNING, logger="nextscale.data.transforms"):
        out = convert_mode(image, 3)
    assert out.getpixel((0, 0)) == (200, 30, 30)
    assert "no littleCMS" in caplog.text
