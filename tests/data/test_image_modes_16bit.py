"""16-bit grayscale PNGs with a transparent value, LA images (8- and 16-bit) and LA images saved as WebP (which read
back as RGBA): scaled from 16 bits to 8 (not clipped), transparency composited on white as for RGBA, and one gray
channel for a grayscale model."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.image_reading import holds_gray, load_image, open_image, read_training_image
from nextscale.data.transforms import convert_mode

SIDE = 16
TRANSPARENT = 1000  # a 16-bit gray value marked transparent; as gray it would read as a dark 4


def write_png16(path, pixels: np.ndarray, colour_type: int, transparent: tuple[int, ...] | None = None) -> None:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit gray + alpha): ``pixels`` (H, W) or (H, W, C)
    uint16; colour type 0 gray, 4 gray + alpha; ``transparent`` becomes a tRNS chunk."""
    height, width = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    if transparent is not None:
        data += chunk(b"tRNS", struct.pack(f">{len(transparent)}H", *transparent))
    path.write_bytes(data + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def gray16_with_transparent_value(path) -> None:
    """Left half the transparent value, right half 16-bit mid-gray 32896 (8-bit 128; Pillow's convert clips it)."""
    values = np.full((SIDE, SIDE), 32896, dtype=np.uint16)
    values[:, : SIDE // 2] = TRANSPARENT
    Image.fromarray(values).save(path, transparency=TRANSPARENT)


def gray_alpha(gray: int = 100) -> np.ndarray:
    """(SIDE, SIDE, 2) uint8 gray + alpha: left half half-transparent (alpha 128), right half opaque."""
    pixels = np.full((SIDE, SIDE, 2), gray, dtype=np.uint8)
    pixels[..., 1] = 255
    pixels[:, : SIDE // 2, 1] = 128
    return pixels


def rgba_twin(gray_and_alpha: np.ndarray) -> Image.Image:
    """The RGBA image showing the same pixels as an LA one: what LA files must be composited like."""
    gray, alpha = gray_and_alpha[..., 0], gray_and_alpha[..., 1]
    return Image.fromarray(np.stack([gray, gray, gray, alpha], axis=-1))


def test_16bit_gray_png_with_a_transparent_value_opens_as_pillow_does(tmp_path):
    gray16_with_transparent_value(tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as image:  # the case the reader has to handle
        assert image.mode == "I;16" and image.info["transparency"] == TRANSPARENT


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_gray_transparent_value_goes_on_white_and_the_rest_is_scaled_not_clipped(tmp_path, channels):
    gray16_with_transparent_value(tmp_path / "g.png")
    pixels = np.asarray(read_training_image(tmp_path / "g.png", SIDE, channels)).reshape(SIDE, SIDE, channels)
    assert (pixels[:, : SIDE // 2] == 255).all()  # transparent: white, as RGBA pixels of alpha 0 are
    assert (pixels[:, SIDE // 2 :] == 128).all()  # 32896 / 257, not 255


def test_16bit_gray_transparency_holds_for_every_reader(tmp_path):
    gray16_with_transparent_value(tmp_path / "g.png")
    (tmp_path / "g.txt").write_text("half white, half gray\n")
    expected = np.where(np.arange(SIDE) < SIDE // 2, 1.0, 128 / 127.5 - 1)  # [-1, 1] per column
    edited = load_image(tmp_path / "g.png", SIDE, channels=1)  # editing and the CLI: open_image + the transform
    captioned, _ = CaptionFolderDataset(tmp_path, SIDE, channels=1).read(0)
    for tensor in (edited, captioned):
        assert tensor.shape == (1, SIDE, SIDE)
        assert np.allclose(tensor[0].numpy(), np.broadcast_to(expected, (SIDE, SIDE)), atol=1e-6)
    assert open_image(tmp_path / "g.png").mode == "LA"


def test_16bit_gray_without_transparency_is_left_to_convert_mode(tmp_path):
    values = np.full((SIDE, SIDE), TRANSPARENT, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g.png")
    assert open_image(tmp_path / "g.png").mode == "I;16"
    assert (np.asarray(read_training_image(tmp_path / "g.png", SIDE, 1)) == 4).all()  # round(1000 / 257)


@pytest.mark.parametrize("channels", [1, 3])
def test_la_png_is_composited_exactly_as_its_rgba_twin(tmp_path, channels):
    pixels = gray_alpha()
    Image.fromarray(pixels, mode="LA").save(tmp_path / "la.png")
    rgba_twin(pixels).save(tmp_path / "rgba.png")
    la = np.asarray(read_training_image(tmp_path / "la.png", SIDE, channels))
    rgba = np.asarray(read_training_image(tmp_path / "rgba.png", SIDE, channels))
    assert np.array_equal(la, rgba)
    assert la.reshape(SIDE, SIDE, channels)[0, 0, 0] == 177  # 100 at alpha 128 over white: 100 * 128/255 + 127


def test_16bit_la_png_is_scaled_and_composited_like_its_8bit_twin(tmp_path):
    pixels = gray_alpha().astype(np.uint16) * 257  # the same picture in 16 bits
    write_png16(tmp_path / "la16.png", pixels, colour_type=4)
    Image.fromarray(gray_alpha(), mode="LA").save(tmp_path / "la8.png")
    for channels in (1, 3):
        wide = np.asarray(read_training_image(tmp_path / "la16.png", SIDE, channels))
        narrow = np.asarray(read_training_image(tmp_path / "la8.png", SIDE, channels))
        assert np.array_equal(wide, narrow)


@pytest.mark.parametrize("lossless", [True, False])
def test_la_webp_reads_back_as_rgba_yet_gives_a_grayscale_model_its_one_channel(tmp_path, lossless):
    pixels = gray_alpha()
    Image.fromarray(pixels, mode="LA").save(tmp_path / "la.webp", lossless=lossless, quality=90)
    Image.fromarray(pixels, mode="LA").save(tmp_path / "la.png")
    with Image.open(tmp_path / "la.webp") as image:
        assert image.mode == "RGBA"  # WebP has no gray mode
        assert holds_gray(image)  # but what it holds is one channel: a grayscale folder stays grayscale
    webp = np.asarray(read_training_image(tmp_path / "la.webp", SIDE, 1)).astype(int)
    png = np.asarray(read_training_image(tmp_path / "la.png", SIDE, 1)).astype(int)
    assert webp.shape == (SIDE, SIDE)
    assert np.abs(webp - png).max() <= (0 if lossless else 2)


def test_holds_gray_tells_gray_files_from_colour_ones(tmp_path):
    colour = np.zeros((SIDE, SIDE, 4), dtype=np.uint8)
    colour[..., 0], colour[..., 3] = 200, 255
    Image.fromarray(colour).save(tmp_path / "red.webp", lossless=True)
    Image.fromarray(np.full((SIDE, SIDE, 3), 90, dtype=np.uint8)).save(tmp_path / "gray_rgb.png")
    write_png16(tmp_path / "la16.png", gray_alpha().astype(np.uint16) * 257, colour_type=4)
    gray16_with_transparent_value(tmp_path / "g16.png")
    expected = {"red.webp": False, "gray_rgb.png": False, "la16.png": True, "g16.png": True}
    for name, gray in expected.items():
        with Image.open(tmp_path / name) as image:
            assert holds_gray(image) is gray, name
    # Colour under fully transparent pixels is never shown, so it does not make a gray WebP colour.
    hidden = np.asarray(rgba_twin(gray_alpha())).copy()
    hidden[:2, :2] = (255, 0, 0, 0)
    Image.fromarray(hidden).save(tmp_path / "hidden.webp", lossless=True, exact=True)
    with Image.open(tmp_path / "hidden.webp") as image:
        assert holds_gray(image)


def test_convert_mode_of_the_la_image_matches_the_reader(tmp_path):
    gray16_with_transparent_value(tmp_path / "g.png")
    opened = open_image(tmp_path / "g.png")
    assert np.array_equal(
        np.asarray(convert_mode(opened, 1)), np.asarray(read_training_image(tmp_path / "g.png", SIDE, 1))
    )


def test_a_folder_of_la_webps_is_judged_grayscale_by_training_and_the_data_summary(tmp_path):
    from nextscale.data.images import ImageFolderDataset
    from nextscale.data.summary import file_sizes, resolution_line
    from nextscale.training.data_specs import data_channels

    for name in ("a", "b"):
        (tmp_path / "gray" / name).mkdir(parents=True)
        Image.fromarray(gray_alpha(), "LA").save(tmp_path / "gray" / name / "0.webp", lossless=True)
    colour = np.zeros((SIDE, SIDE, 3), np.uint8)
    colour[..., 0] = 200
    (tmp_path / "colour" / "a").mkdir(parents=True)
    Image.fromarray(colour).save(tmp_path / "colour" / "a" / "0.webp", lossless=True)
    assert Image.open(tmp_path / "gray" / "a" / "0.webp").mode == "RGBA"  # the header alone says colour
    assert data_channels(str(tmp_path / "gray")) == 1
    assert data_channels(str(tmp_path / "colour")) == 3
    sizes = file_sizes(ImageFolderDataset(tmp_path / "gray", SIDE))
    assert sizes.gray == sizes.checked == 2
    assert "your images are grayscale; the model is RGB" in resolution_line(SIDE, 3, (1, 2), "preset tiny", sizes)
