"""Editing from Python with the inputs a researcher has at hand (paths, arrays, tensors, mask files) and the
mistakes one makes (misnamed arguments, wrong ranges, odd shapes): each works or says what to do."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import tiny_class_pipeline, tiny_text_transformer

from nextscale.presets import tiny
from nextscale.sampling.raster_pipeline import RasterPipeline
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer

pytestmark = pytest.mark.usefixtures("one_thread")
BOX = (0.25, 0.25, 0.75, 0.75)


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()


@pytest.fixture(scope="module")
def picture():
    """A 20x16 RGB picture (not square: it is centre-cropped)."""
    rows = np.linspace(0, 255, 16, dtype=np.uint8)[:, None, None]
    return np.broadcast_to(rows, (16, 20, 3)).copy()


def edit_tokens(pipe, image, **kwargs):
    return pipe.inpaint(image, **{"box": BOX, "seed": 0, "output_type": "pt", **kwargs}).tokens


def test_paths_arrays_and_pil_images_give_the_same_edit(pipe, picture, tmp_path):
    Image.fromarray(picture).save(tmp_path / "in.png")
    expected = edit_tokens(pipe, Image.fromarray(picture))
    assert torch.equal(edit_tokens(pipe, tmp_path / "in.png"), expected)  # a pathlib.Path
    assert torch.equal(edit_tokens(pipe, str(tmp_path / "in.png")), expected)
    assert torch.equal(edit_tokens(pipe, picture), expected)  # a uint8 (H, W, 3) array


def test_a_pil_image_with_an_exif_orientation_edits_like_its_file(pipe, picture, tmp_path):
    """Phone photos store their pixels sideways plus a turn; opened with PIL or given as a path, the edit is made
    on the upright picture a viewer shows (and a mask of that picture's size fits)."""
    stored = Image.fromarray(picture)  # 20 wide, 16 high as stored
    exif = stored.getexif()
    exif[0x0112] = 6  # EXIF Orientation: turn 90 degrees clockwise to view
    stored.save(tmp_path / "photo.png", exif=exif)
    mask = np.zeros((20, 16), dtype=bool)  # (H, W) of the upright picture
    mask[:10] = True
    from_path = pipe.inpaint(tmp_path / "photo.png", mask=mask, seed=0, output_type="pt")
    with Image.open(tmp_path / "photo.png") as opened:
        from_pil = pipe.inpaint(opened, mask=mask, seed=0, output_type="pt")
    assert torch.equal(from_pil.tokens, from_path.tokens)
    assert from_pil.pasted()[0].size == from_path.pasted()[0].size == (16, 20)
    # a mask made with PIL from the stored photo carries the same tag, and is turned the same way
    stored_mask = Image.fromarray(mask.astype(np.uint8) * 255).transpose(Image.Transpose.ROTATE_90)
    stored_mask.info["exif"] = exif.tobytes()
    assert stored_mask.size == stored.size
    with_tag = pipe.inpaint(tmp_path / "photo.png", mask=stored_mask, seed=0, output_type="pt")
    assert torch.equal(with_tag.keep_mask, from_path.keep_mask)


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((16, 16, 3), dtype=np.float32), TypeError, "uint8"),
        (b"\x89PNG", TypeError, "image must be a path"),
        (torch.zeros(2, 3, 16, 16), ValueError, "one image"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), TypeError, "float in"),
        (torch.full((1, 3, 16, 16), 200.0), ValueError, r"values in \[-1, 1\]"),
    ],
    ids=["float-array", "bytes", "batch-of-two", "uint8-tensor", "0-255-tensor"],
)
def test_images_the_model_cannot_take_are_refused_with_the_fix(pipe, image, error, match):
    with pytest.raises(error, match=match):
        pipe.inpaint(image, box=BOX)


def test_a_mask_file_works_like_the_mask_itself(pipe, picture, tmp_path):
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    image = Image.fromarray(picture)
    by_array = pipe.inpaint(image, mask=mask, seed=0, output_type="pt")
    by_file = pipe.inpaint(image, mask=tmp_path / "mask.png", seed=0, output_type="pt")
    assert torch.equal(by_file.tokens, by_array.tokens) and torch.equal(by_file.keep_mask, by_array.keep_mask)


@pytest.mark.parametrize("box", [(0.1, 0.1, 0.5), "0 0 1 1", (0.1, "a", 0.5, 0.5)])
def test_a_box_that_is_not_four_numbers_is_refused(pipe, picture, box):
    with pytest.raises(ValueError, match="four numbers"):
        pipe.inpaint(picture, box=box)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"class_labels": [3]}, TypeError, "class_label="),
        ({"num_images_per_prompt": 2}, TypeError, "num_images="),
        ({"num_images": 0}, ValueError, "num_images must be >= 1"),
        ({"num_images": 2.0}, TypeError, "num_images must be an int"),
    ],
)
def test_call_argument_names_in_an_edit_are_pointed_to_the_edit_names(pipe, picture, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipe.inpaint(picture, box=BOX, **kwargs)


def test_class_labels_of_numpy_and_torch_types_edit_like_ints(pipe, picture):
    null_id = pipe.transformer.config.null_class_id
    assert pipe.inpaint(picture, box=BOX, class_label=np.int64(null_id), seed=0).class_labels.tolist() == [null_id]
    assert pipe.inpaint(picture, box=BOX, class_label=torch.tensor(2), seed=0).class_labels.tolist() == [2]


@pytest.mark.parametrize("output_type", ["np", "pt"])
def test_pasted_works_for_every_output_type(pipe, picture, output_type):
    image = Image.fromarray(picture)
    expected = pipe.inpaint(image, box=BOX, seed=0, num_images=2).pasted()
    pasted = pipe.inpaint(image, box=BOX, seed=0, num_images=2, output_type=output_type).pasted()
    assert [image.size for image in pasted] == [(20, 16), (20, 16)]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(pasted, expected))


def test_palette_and_bilevel_pictures_edit_like_their_rgb_conversion(pipe):
    """They are converted before the resize (as in training), not resized by nearest neighbour as "P" and "1" are."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    for picture in (rgb.convert("P"), rgb.convert("1")):
        converted = picture.convert("RGB")
        assert torch.equal(edit_tokens(pipe, picture), edit_tokens(pipe, converted)), picture.mode


def test_pasted_shows_the_picture_as_the_model_saw_it_outside_the_crop(pipe):
    """16-bit values are scaled to 8 bits, not clipped to 255 (transparency: tests/sampling/test_paste_keeps_mode.py).
    A 16-bit grayscale picture comes back as 8-bit grayscale, the picture's own mode as the model saw it."""
    sixteen_bit = np.full((16, 24), 32896, dtype=np.uint16)  # 32896 / 257 = 128
    for image, shape in ((sixteen_bit, (16, 24)), (np.dstack([sixteen_bit] * 3), (16, 24, 3))):
        pasted = np.asarray(pipe.inpaint(image, box=BOX, seed=0).pasted()[0])
        assert pasted.shape == shape
        assert (pasted[:, :4] == 128).all() and (pasted[:, -4:] == 128).all()  # outside the centre crop


def test_edit_images_takes_a_numpy_mask_and_refuses_an_empty_batch(pipe):
    keep = np.zeros((4, 4), dtype=bool)
    keep[:2] = True
    images = torch.zeros(2, 3, 16, 16)
    expected = pipe.edit_images(images, torch.from_numpy(keep), seed=0).tokens
    assert torch.equal(pipe.edit_images(images, keep, seed=0).tokens, expected)
    with pytest.raises(ValueError, match="B >= 1"):
        pipe.edit_images(images[:0], keep, seed=0)


@pytest.mark.parametrize(("fraction", "match"), [(0.01, "smaller than one cell"), (0.99, "no frame to generate")])
def test_an_extend_fraction_the_token_grid_cannot_show_says_so(pipe, picture, fraction, match):
    with pytest.raises(ValueError, match=match):
        pipe.outpaint(picture, inner_fraction=fraction)


def test_an_empty_mask_is_refused_in_one_line(pipe, picture):
    with pytest.raises(ValueError, match="not empty"):
        pipe.inpaint(picture, mask=np.zeros((0, 0)))


def test_a_raster_pipeline_refuses_every_edit_with_the_reason():
    tokenizer_config, transformer_config = tiny()
    side = tokenizer_config.scale_sides[-1]
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, scale_sides=(side,)))
    transformer = RasterTransformer(
        RasterConfig.from_depth(2, embed_dim=32, num_heads=2, num_classes=10, vocab_size=64, side=side)
    )
    raster = RasterPipeline(tokenizer, transformer)
    image = torch.zeros(1, 3, 16, 16)
    for edit in (lambda: raster.inpaint(image, box=BOX), lambda: raster.outpaint(image, inner_fraction=0.5)):
        with pytest.raises(ValueError, match="raster-scan model cannot"):
            edit()


@pytest.fixture(scope="module")
def text_pipe():
    """A tiny text pipeline without an encoder: precomputed features only."""
    torch.manual_seed(0)
    return TextPipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer(text_dim=8))


def test_text_features_of_another_width_are_refused_naming_text_dim(text_pipe):
    with pytest.raises(ValueError, match="text_dim"):
        text_pipe(prompt_embeds=torch.zeros(1, 3, 5), pooled_prompt_embeds=torch.zeros(1, 5), cfg=0)
    with pytest.raises(ValueError, match="negative_pooled_prompt_embeds"):
        text_pipe(
            prompt_embeds=torch.zeros(1, 3, 8),
            pooled_prompt_embeds=torch.zeros(1, 8),
            negative_prompt_embeds=torch.zeros(1, 3, 8),
        )


def test_prompts_of_the_wrong_type_are_refused(text_pipe):
    with pytest.raises(TypeError, match="prompt must be a string or a list of strings"):
        text_pipe(prompt=3)
    with pytest.raises(TypeError, match="one prompt"):
        text_pipe.inpaint(torch.zeros(1, 3, 16, 16), box=BOX, prompt=["a bag", "a coat"])


def test_pasted_keeps_the_original_pixels_outside_the_regenerated_cells(pipe):
    """Before, the whole centre square came back as the model's low-resolution redraw enlarged: the kept part blurred
    and a seam at the square's edges. Now only the regenerated cells (feathered inside the kept ones) are pasted."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)  # a 64x64 centre square, 16 px per cell of 4x4
    out = pipe.inpaint(photo, box=(0.5, 0.0, 1.0, 1.0), seed=0)  # regenerates the bottom half of the square
    pasted = np.asarray(out.pasted()[0])
    assert pasted.shape == photo.shape
    assert np.array_equal(pasted[:24], photo[:24])  # kept cells, up to the outer half of the last kept row
    assert np.array_equal(pasted[:, :16], photo[:, :16]) and np.array_equal(pasted[:, -16:], photo[:, -16:])
    generated = np.asarray(out.images[0].resize((64, 64), Image.Resampling.LANCZOS))
    assert np.array_equal(pasted[32:, 16:80], generated[32:])  # regenerated cells: the model's, unblended


def test_extending_pastes_the_original_in_the_middle_at_its_own_resolution(pipe):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pasted = np.asarray(pipe.outpaint(photo, inner_fraction=0.5, seed=0).pasted()[0])
    assert pasted.shape == (64, 64, 3)  # 2 of the 4 cells: the picture twice as large
    assert np.array_equal(pasted[24:40, 24:40], photo[8:24, 8:24])  # inside the feathered edge: the original's pixels
