"""``EditOutput.pasted()`` and ``nextscale edit --paste-back`` give the picture back in the input's mode: a transparent
input keeps its alpha (everywhere, the regenerated region included), a grayscale one stays grayscale, whatever the
model's channels. Before, every result was RGB (or L for a grayscale model) and a PNG's transparency was lost.
The CLI's side: tests/cli/test_edit_paste_back_keeps_alpha.py."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import tiny_class_pipeline

from nextscale.sampling.editing import PreparedImage, paste_back

pytestmark = pytest.mark.usefixtures("one_thread")
BOTTOM_HALF = (0.5, 0.0, 1.0, 1.0)  # y0 x0 y1 x1: the bottom two rows of the 4x4 token grid


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()  # 16 px RGB, a 4x4 last-scale grid


def cut_out(height: int = 64, width: int = 96) -> np.ndarray:
    """An RGBA picture with a transparent border (colour 40 hidden under it) and a half-transparent band."""
    rgba = np.random.default_rng(0).integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:8, :, 3], rgba[:8, :, :3] = 0, 40
    rgba[20:28, :, 3] = 128
    return rgba


def test_a_transparent_input_keeps_its_alpha_and_its_own_pixels_outside_the_region(pipe):
    photo = cut_out()  # a 64x64 centre square at x 16..80, 16 px per cell
    out = pipe.inpaint(Image.fromarray(photo), box=BOTTOM_HALF, seed=0)
    pasted = out.pasted()[0]
    assert pasted.mode == "RGBA" and pasted.size == (96, 64)
    pixels = np.asarray(pasted)
    assert np.array_equal(pixels[..., 3], photo[..., 3])  # the input's alpha, in the regenerated rows too
    assert np.array_equal(pixels[:24], photo[:24])  # kept cells: the input's RGBA as stored (not whitened)
    assert np.array_equal(pixels[:, :16], photo[:, :16]) and np.array_equal(pixels[:, -16:], photo[:, -16:])
    generated = np.asarray(out.images[0].resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(pixels[32:, 16:80, :3], generated[32:])  # regenerated cells: the model's colours


def test_grayscale_inputs_stay_grayscale_and_gray_alpha_stays_gray_alpha(pipe):
    gray = np.random.default_rng(1).integers(0, 256, (16, 24), dtype=np.uint8)
    pasted = pipe.inpaint(Image.fromarray(gray), box=BOTTOM_HALF, seed=0).pasted()[0]
    assert pasted.mode == "L" and np.array_equal(np.asarray(pasted)[:, :4], gray[:, :4])  # outside the crop
    alpha = np.full((16, 24), 200, dtype=np.uint8)
    gray_alpha = Image.fromarray(np.dstack([gray, alpha]), "LA")
    pasted = pipe.inpaint(gray_alpha, box=BOTTOM_HALF, seed=0).pasted()[0]
    assert pasted.mode == "LA" and np.array_equal(np.asarray(pasted)[..., 1], alpha)


def test_a_grayscale_result_is_pasted_into_a_colour_picture_in_colour():
    """A grayscale model's result keeps the colour input's own colours outside the regenerated region."""
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 256, (8, 12, 3), dtype=np.uint8))
    prepared = PreparedImage(torch.zeros(1, 1, 8, 8), picture, (2, 0, 10, 8))
    keep = torch.tensor([[True, True], [False, False]])  # regenerate the bottom half of the crop
    pasted = paste_back(Image.new("L", (8, 8), 77), prepared, keep)
    assert pasted.mode == "RGB"
    assert np.array_equal(np.asarray(pasted)[:, :2], np.asarray(picture)[:, :2])  # outside the crop
    assert (np.asarray(pasted)[4:, 2:10] == 77).all()  # the model's gray, in every channel


def test_extending_a_transparent_picture_makes_an_opaque_frame_around_its_own_alpha(pipe):
    photo = cut_out(32, 32)
    pasted = pipe.outpaint(Image.fromarray(photo), inner_fraction=0.5, seed=0).pasted()[0]
    assert pasted.mode == "RGBA" and pasted.size == (64, 64)
    alpha = np.asarray(pasted)[..., 3]
    assert (alpha[:8] == 255).all() and (alpha[:, :8] == 255).all()  # the generated frame is visible
    assert np.array_equal(alpha[16:48, 16:48], photo[..., 3])  # the input's alpha where the input lies
