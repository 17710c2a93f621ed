"""Editing through the sampler's constraint hook: kept tokens stay, masks follow the official recipe."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import tiny_class_pipeline

from nextscale.cli import main
from nextscale.sampling.editing import (
    KeepTokensConstraint,
    box_mask,
    extend_canvas,
    keep_mask_for,
    mask_from_array,
    scale_keep_masks,
)
from nextscale.sampling.guidance import SamplingConfig


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()


@pytest.fixture(scope="module")
def image():
    return torch.linspace(-1, 1, 3 * 16 * 16).reshape(1, 3, 16, 16).sin()


def test_box_mask_uses_the_official_rounding():
    mask = box_mask(16, (0.1, 0.1, 0.8, 0.8))  # rows round(1.6)=2 .. round(12.8)=13
    rows = mask.any(1).nonzero().flatten()
    assert rows.min() == 2 and rows.max() == 12 and mask.sum() == 11 * 11
    assert torch.equal(box_mask(16, (32, 32, 128, 128), image_size=256), box_mask(16, (0.125, 0.125, 0.5, 0.5)))
    for bad in [(0.5, 0.1, 0.4, 0.8), (-0.1, 0, 0.5, 0.5), (0, 0, 1.2, 1)]:
        with pytest.raises(ValueError):
            box_mask(16, bad)


def test_per_scale_masks_match_the_official_bilinear_recipe_on_fixed_examples():
    keep = torch.zeros(16, 16, dtype=torch.bool)
    keep[:8] = True  # top half kept
    masks = scale_keep_masks(keep, (1, 2, 3, 4, 8, 16))
    assert masks[0].tolist() == [[True]]  # 1x1 always from the image
    assert masks[1].view(2, 2).tolist() == [[True, True], [False, False]]
    # 3x3: the middle row samples the boundary at exactly 0.5 -> not kept (> 0.5 is required)
    assert masks[2].view(3, 3).tolist() == [[True] * 3, [False] * 3, [False] * 3]
    assert torch.equal(masks[5].view(16, 16), keep)
    assert torch.equal(masks[4].view(8, 8)[:4], torch.ones(4, 8, dtype=torch.bool))
    assert not masks[4].view(8, 8)[4:].any()


def test_every_kept_token_equals_the_image_token_at_every_scale(pipe, image):
    keep = box_mask(4, (0.0, 0.0, 0.5, 1.0))
    out = pipe.edit_with_keep_mask(_prepared(image), keep, class_label=3, seed=0, output_type="pt")
    image_tokens = pipe.tokenizer.tokens_from_indices(pipe.tokenizer.encode(image))
    masks = torch.cat(scale_keep_masks(keep, pipe.transformer.config.scale_sides), dim=1)
    assert torch.equal(out.tokens[masks], image_tokens[masks])
    assert not torch.equal(out.tokens, image_tokens)


def test_full_keep_mask_reproduces_the_image_tokens(pipe, image):
    indices = pipe.tokenizer.encode(image)
    sides = pipe.transformer.config.scale_sides
    constraint = KeepTokensConstraint(
        indices, scale_keep_masks(torch.ones(4, 4, dtype=torch.bool), sides), pipe.tokenizer.quantizer
    )
    result = pipe.sampler.sample(
        [1], config=SamplingConfig(), generator=torch.Generator().manual_seed(0), constraint=constraint
    )
    assert torch.equal(result.tokens, pipe.tokenizer.tokens_from_indices(indices))
    assert torch.allclose(result.f_hat, pipe.tokenizer.quantizer.indices_to_fhat(indices), atol=1e-5)


def test_empty_keep_mask_equals_plain_sampling_except_the_first_scale(pipe, image):
    """With nothing kept, only the 1x1 scale comes from the image. Give the edit an "image" whose 1x1 token
    is the one plain sampling draws (the rest from a real image): the edit must then equal plain sampling with
    the same seed exactly, so the constraint adds nothing else and draws nothing extra."""
    sides = pipe.transformer.config.scale_sides
    plain = pipe.sampler.sample([1], generator=torch.Generator().manual_seed(0))
    image_indices = pipe.tokenizer.encode(image)
    indices = [pipe.tokenizer.indices_from_tokens(plain.tokens)[0], *image_indices[1:]]
    assert not torch.equal(pipe.tokenizer.tokens_from_indices(indices), plain.tokens)  # later scales differ
    empty = scale_keep_masks(torch.zeros(4, 4, dtype=torch.bool), sides)
    assert [m.any().item() for m in empty] == [True, False, False]
    constraint = KeepTokensConstraint(indices, empty, pipe.tokenizer.quantizer)
    edited = pipe.sampler.sample([1], generator=torch.Generator().manual_seed(0), constraint=constraint)
    assert torch.equal(edited.tokens, plain.tokens)
    assert torch.equal(edited.f_hat, plain.f_hat)


def test_inpaint_outpaint_and_extend_through_the_pipeline(pipe, tmp_path):
    picture = Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8))
    inpainted = pipe.inpaint(picture, box=(0.25, 0.25, 0.75, 0.75), seed=0)
    assert inpainted.pasted()[0].size == (60, 40)
    outpainted = pipe.outpaint(picture, mask=np.pad(np.ones((20, 20)), 10), seed=0, class_label=2)
    assert outpainted.keep_mask.sum() == 4
    extended = pipe.outpaint(picture, inner_fraction=0.5, seed=0, output_type="pt")
    assert extended.images.shape == (1, 3, 16, 16)
    # pasted back: the framed picture at the input's resolution (the 40x40 centre square, extended to 80x80), not
    # the shrunk canvas squeezed into the centre square between the input's own uncropped sides
    assert extended.pasted()[0].size == (80, 80)


def test_an_extended_image_covers_whole_token_cells():
    # 0.6 of a 16 px canvas placed 10 px at 3 px: the 4 px cells 1 and 2 held 1 px of blank fill each, and the kept
    # cells carried the fill's grey into the result. Snapped to the grid, the image lies on whole cells.
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    canvas, placed = extend_canvas(image, 0.6, fill=0.0, grid_side=4)
    cells = placed.reshape(4, 4, 4, 4).permute(0, 2, 1, 3).flatten(2)  # (cell row, cell column, its 16 pixels)
    assert torch.equal(cells.all(dim=2), cells.any(dim=2))  # every cell wholly placed or wholly blank
    assert torch.equal(mask_from_array(placed, 4), cells.all(dim=2)) and cells.all(dim=2).sum() == 4  # 2 x 2 cells
    assert torch.equal(canvas[..., ~placed], torch.zeros_like(canvas[..., ~placed]))
    assert extend_canvas(image, 0.6)[1].sum() == 10 * 10  # without a grid: the fraction as given
    assert not extend_canvas(image, 0.1, grid_side=4)[1].any()  # under half a cell: nothing placed


def test_degenerate_masks_and_bad_inputs_raise(pipe, image, tmp_path):
    with pytest.raises(ValueError, match="nothing to generate"):
        keep_mask_for("outpaint", torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="keeps nothing"):
        keep_mask_for("inpaint", torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mode"):
        keep_mask_for("erase", torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="2-D"):
        mask_from_array(np.ones((2, 2, 2, 2)), 4)
    with pytest.raises(ValueError, match="exactly one"):
        pipe.edit(image, box=(0, 0, 0.5, 0.5), mask=np.ones((4, 4)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        pipe.inpaint(str(broken), box=(0, 0, 0.5, 0.5))


def test_cli_edit_writes_result_and_side_by_side(pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "model")
    Image.fromarray((np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = main(
        [
            "edit",
            "--model",
            str(tmp_path / "model"),
            "--image",
            str(tmp_path / "in.png"),
            "--box",
            "0.25",
            "0.25",
            "0.75",
            "0.75",
            "--class",
            "3",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "out.png"),
            "--side-by-side",
            str(tmp_path / "cmp.png"),
            "--paste-back",
        ]
    )
    assert code == 0
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    assert Image.open(tmp_path / "cmp.png").size[0] > 3 * 16
    code = main(
        [
            "edit",
            "--model",
            str(tmp_path / "model"),
            "--image",
            str(tmp_path / "in.png"),
            "--box",
            "0.9",
            "0.9",
            "0.1",
            "0.1",
        ]
    )
    assert code == 2 and "box" in capsys.readouterr().err


def _prepared(image):
    from nextscale.sampling.editing import PreparedImage

    pil = Image.new("RGB", (16, 16))
    return PreparedImage(image, pil, (0, 0, 16, 16))


def test_a_mask_of_a_non_square_image_is_cropped_like_the_image():
    """The image is centre-cropped to a square; a mask of the image's size must mark the same pixels, not be
    squeezed into the square (which would move its region)."""
    from nextscale.sampling.editing import mask_for_image, prepare_image

    wide = Image.new("RGB", (64, 32), (90, 90, 90))  # its model view is the centre square x in [16, 48)
    prepared = prepare_image(wide, 16, 3)
    mask = np.zeros((32, 64), dtype=np.uint8)
    mask[:, 16:32] = 255  # the left half of the centre square
    region = mask_for_image(Image.fromarray(mask), prepared, 8)
    assert region[:, :4].all() and not region[:, 4:].any()
    outside = np.zeros((32, 64), dtype=np.uint8)
    outside[:, 52:] = 255  # only outside the square: nothing of the model's view is marked
    assert not mask_for_image(outside, prepared, 8).any()
    square = np.zeros((10, 10), dtype=bool)
    square[5:] = True  # a square mask is the model's view itself: its lower half
    assert mask_for_image(square, prepared, 8)[4:].all() and not mask_for_image(square, prepared, 8)[:4].any()
    with pytest.raises(ValueError, match="the mask is 40x30 but the image is 64x32"):
        mask_for_image(np.zeros((30, 40)), prepared, 8)


def test_transparent_mask_pixels_are_not_region_whatever_colour_they_store(tmp_path):
    """A mask painted white on a transparent layer: the transparent pixels often store white too."""
    from nextscale.sampling.editing import load_mask

    rgba = np.full((16, 16, 4), 255, dtype=np.uint8)
    rgba[:, 8:, 3] = 0  # the right half is transparent white
    left = torch.zeros(4, 4, dtype=torch.bool)
    left[:, :2] = True
    Image.fromarray(rgba).save(tmp_path / "mask.png")
    masks = {
        "RGBA image": mask_from_array(Image.fromarray(rgba), 4),
        "LA image": mask_from_array(Image.fromarray(rgba).convert("LA"), 4),
        "RGBA file": load_mask(str(tmp_path / "mask.png"), 4),
        "uint8 array": mask_from_array(rgba, 4),
        "0..1 array": mask_from_array(rgba / 255.0, 4),
    }
    for name, mask in masks.items():
        assert torch.equal(mask, left), name
    half = rgba.copy()
    half[:, :8, 3] = 100  # less than half opaque white: under the 0.5 threshold
    assert not mask_from_array(Image.fromarray(half), 4)[:, :2].any()
    # opaque masks are read as before: luminance of an image, first channel of an array
    opaque = rgba.copy()
    opaque[..., 3], opaque[:, 8:, :3] = 255, 0
    assert torch.equal(mask_from_array(Image.fromarray(opaque), 4), left)
    assert torch.equal(mask_from_array(opaque, 4), left)


def test_the_null_class_id_edits_unconditionally_as_in_the_official_demo(pipe, image):
    null_id = pipe.transformer.config.null_class_id  # the official edit notebook passes 1000 for ImageNet
    plain = pipe.inpaint(image, box=(0.25, 0.25, 0.75, 0.75), seed=3, output_type="pt")
    with_null = pipe.inpaint(image, box=(0.25, 0.25, 0.75, 0.75), seed=3, class_label=null_id, output_type="pt")
    assert torch.equal(plain.tokens, with_null.tokens)
    with pytest.raises(ValueError, match="out of range"):
        pipe.inpaint(image, box=(0.25, 0.25, 0.75, 0.75), seed=3, class_label=null_id + 1)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--extend", "0.5", "--mode", "inpaint"], "leave out --mode"),
        (["--extend", "0.5", "--pixels"], "--pixels says how --box is given"),
        (["--mask", "MASK", "--pixels"], "--pixels says how --box is given"),
    ],
)
def test_cli_edit_refuses_flags_it_would_ignore(pipe, tmp_path, capsys, flags, message):
    """--mode beside --extend (which always keeps the image) and --pixels without --box were silently ignored."""
    pipe.save_pretrained(tmp_path / "model")
    Image.new("RGB", (16, 16), (90, 90, 90)).save(tmp_path / "in.png")
    Image.new("L", (16, 16), 255).save(tmp_path / "mask.png")
    flags = [str(tmp_path / "mask.png") if flag == "MASK" else flag for flag in flags]
    base = ["edit", "--model", str(tmp_path / "model"), "--image", str(tmp_path / "in.png")]
    assert main([*base, *flags, "--out", str(tmp_path / "out.png")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out.png").exists()


def test_sixteen_bit_and_float_masks_are_read_at_their_own_scale(tmp_path):
    """Pillow's convert("L") clips 16-bit values at 255 and keeps float values as they are: a 30 % grey 16-bit mask
    (19661 of 65535) became full white, and a float 0..1 mask became empty."""
    from nextscale.sampling.editing import load_mask

    top = torch.zeros(4, 4, dtype=torch.bool)
    top[:2] = True
    for value, expected in ((19661, torch.zeros_like(top)), (45875, top), (65535, top), (255, top)):
        values = np.zeros((8, 8), dtype=np.uint16)
        values[:4] = value
        Image.fromarray(values).save(tmp_path / "mask16.png")  # a 16-bit grayscale PNG
        assert torch.equal(load_mask(str(tmp_path / "mask16.png"), 4), expected), value
        assert torch.equal(mask_from_array(values, 4), expected), value
    fractions = np.zeros((8, 8), dtype=np.float32)
    fractions[:4] = 1.0
    assert torch.equal(mask_from_array(Image.fromarray(fractions), 4), top)  # mode "F"


def test_a_box_in_pixels_without_the_pixel_flag_gets_a_hint():
    with pytest.raises(ValueError, match="look like pixels.*box_in_pixels=True") as caught:
        box_mask(16, (32, 32, 96, 96))
    assert "--pixels" not in str(caught.value)  # the CLI's flag is noise to a Python caller (`edit` says --pixels)
    with pytest.raises(ValueError, match="y0 < y1") as caught:
        box_mask(16, (0.5, 0.1, 0.4, 0.8))  # fractions in the wrong order: no pixel hint
    assert "pixels" not in str(caught.value)
