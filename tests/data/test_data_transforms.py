import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.data.images import ImageFolderDataset
from nextscale.data.summary import file_sizes
from nextscale.data.transforms import ImageTransform, center_crop, convert_mode, pil_to_tensor, resize_shorter_side


def _image(width=50, height=40) -> Image.Image:
    array = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(array, mode="RGB")


def test_resize_shorter_side_keeps_aspect():
    assert resize_shorter_side(_image(400, 300), 288).size == (384, 288)
    assert resize_shorter_side(_image(300, 400), 288).size == (288, 384)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape_and_range(train, channels):
    out = ImageTransform(16, train=train, hflip=True, channels=channels)(_image(), np.random.default_rng(0))
    assert out.shape == (channels, 16, 16) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_pixel_mapping_is_exact():
    image = Image.fromarray(np.array([[0, 255]], dtype=np.uint8), mode="L")
    assert pil_to_tensor(image, channels=1).tolist() == [[[-1.0, 1.0]]]


@pytest.mark.parametrize("make_generator", [np.random.default_rng, lambda s: torch.Generator().manual_seed(s)])
def test_same_seed_same_crop(make_generator):
    transform = ImageTransform(16, train=True, hflip=True)
    first = [transform(_image(), make_generator(seed)) for seed in range(6)]
    again = [transform(_image(), make_generator(seed)) for seed in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(first[0], other) for other in first[1:])  # seeds move the crop


def test_eval_is_center_crop_of_resized():
    transform = ImageTransform(16, train=False, mid_reso=1.125)
    image = _image()
    expected = pil_to_tensor(center_crop(resize_shorter_side(image, 18), 16))
    assert torch.equal(transform(image), expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mid_reso"):
        ImageTransform(16, mid_reso=0.9)
    with pytest.raises(ValueError, match="channels"):
        ImageTransform(16, channels=4)


def test_float_pictures_in_0_1_and_in_0_255_give_the_same_pixels():
    levels = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    unit = pil_to_tensor(Image.fromarray(levels, mode="F"), channels=1)
    bytes_ = pil_to_tensor(Image.fromarray(levels * 255, mode="F"), channels=1)
    expected = pil_to_tensor(Image.fromarray(np.rint(levels * 255).astype(np.uint8), mode="L"), channels=1)
    assert torch.equal(unit, expected) and torch.equal(bytes_, expected)


def test_the_longer_side_is_truncated_as_torchvision_resize_does():
    for (width, height), expected in (((400, 300), (384, 288)), ((401, 300), (384, 288)), ((300, 401), (288, 384))):
        assert resize_shorter_side(Image.new("RGB", (width, height)), 288).size == expected


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_transparent_colour_of_an_rgb_or_gray_png_goes_on_white_as_palette_ones_do(tmp_path, mode):
    """A PNG tRNS chunk marks one colour transparent in RGB and L files too, not only in palette files."""
    colour = (30, 60, 90) if mode == "RGB" else 30
    image = Image.new(mode, (8, 8), colour)
    image.putpixel((0, 0), (200, 100, 0) if mode == "RGB" else 200)
    path = tmp_path / "c" / "trns.png"
    path.parent.mkdir()
    image.save(path, transparency=colour)
    with Image.open(path) as opened:
        for channels in (3, 1):
            pixels = np.asarray(convert_mode(opened, channels))
            assert (pixels[1:, 1:] == 255).all()  # the transparent colour, as viewers show it
            assert pixels.reshape(-1, channels)[0].tolist() != [255] * channels  # the opaque pixel is kept
    assert file_sizes(ImageFolderDataset(tmp_path, 8)).transparent == 1


def test_32_bit_integer_images_are_scaled_from_the_range_their_values_or_file_hold(tmp_path):
    from nextscale.data.image_reading import load_image, open_image, read_training_image

    ramp = np.arange(16 * 16).reshape(16, 16) % 256  # 8-bit values 0..255
    # made in memory: convert("I") of an 8-bit picture holds 0..255, and must not be divided as if 16-bit
    eight_bit = Image.fromarray(ramp.astype(np.int32))
    assert eight_bit.mode == "I"
    assert np.array_equal(np.asarray(convert_mode(eight_bit, 1)), ramp)
    assert np.array_equal(np.asarray(convert_mode(eight_bit, 3))[..., 0], ramp)
    # 16-bit values in an "I" image are scaled by 257, as I;16 ones are
    sixteen_bit = Image.fromarray((ramp * 257).astype(np.int32))
    assert np.array_equal(np.asarray(convert_mode(sixteen_bit, 1)), ramp)
    # a 32-bit TIFF of 8-bit values (its file says 32 bits: its values tell the range), read as training reads it
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "eight.tif")
    assert np.array_equal(np.asarray(read_training_image(tmp_path / "eight.tif", 16, 1)), ramp)
    expected = torch.from_numpy(ramp).float().div(127.5).sub(1.0)
    assert torch.allclose(load_image(tmp_path / "eight.tif", 16, channels=1)[0], expected)
    # a dark 16-bit file (a PGM of maxval 65535 opens as "I") stays dark: its file's depth wins over its values
    dark = np.full((16, 16), 200, dtype=">u2")
    (tmp_path / "dark.pgm").write_bytes(b"P5\n16 16\n65535\n" + dark.tobytes())
    opened = open_image(tmp_path / "dark.pgm")
    assert opened.mode == "I" and opened.getextrema() == (200, 200)
    assert np.asarray(convert_mode(opened, 1)).max() == 1  # round(200 / 257)
    assert np.asarray(read_training_image(tmp_path / "dark.pgm", 16, 1)).max() == 1
