"""A JPEG too large for Pillow to open (over twice ``Image.MAX_IMAGE_PIXELS``) is edited from a copy decoded shrunk,
as training reads it; a huge file of another kind is still refused in one line.

The edit sees a model-size copy anyway, but pasting the result back at the input's original size (what ``pasted``
and ``--paste-back`` promise) needs the full-size pixels, which are never decoded: that is refused with the fix.
The limit is lowered so that a 100x60 photo stands for a 200-megapixel one.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.data.image_reading import SHRUNK_BY_KEY, open_image
from nextscale.presets import tiny
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

COLOUR = (200, 60, 20)
BOX = (0.25, 0.25, 0.75, 0.75)


def _photo(path, size=(100, 60)):
    rng = np.random.default_rng(0)
    pixels = np.clip(np.array(COLOUR) + rng.integers(-3, 4, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


@pytest.fixture
def huge_jpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 6000 pixels: over twice it; 1/2 is 1500, 1/4 is 375
    return _photo(tmp_path / "phone.jpg")


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    return Pipeline(MultiScaleVQVAE(tokenizer_config), ScaleTransformer(transformer_config))


def test_the_editing_reader_decodes_a_huge_jpeg_shrunk_and_says_by_what(huge_jpeg):
    with pytest.raises(ValueError, match="phone.jpg is too large to open"):
        open_image(huge_jpeg)  # the default (the web demo's upload check) still refuses it
    picture = open_image(huge_jpeg, shrink_huge_jpeg=True)
    assert picture.size == (25, 15) and picture.info[SHRUNK_BY_KEY] == 4
    assert np.abs(np.asarray(picture, dtype=float).mean(axis=(0, 1)) - COLOUR).max() < 4


def test_a_huge_file_of_another_kind_is_still_refused_in_one_line(huge_jpeg):
    png = huge_jpeg.with_suffix(".png")
    Image.open(_photo(huge_jpeg.with_name("small.jpg"), (20, 20))).resize((100, 60)).save(png)
    with pytest.raises(ValueError, match=r"phone.png is too large to open .*; save a smaller copy") as caught:
        open_image(png, shrink_huge_jpeg=True)
    assert "\n" not in str(caught.value)


def test_an_edit_of_a_huge_jpeg_works_and_refuses_only_pasting_back(huge_jpeg, pipe):
    out = pipe.inpaint(str(huge_jpeg), box=BOX, seed=0, output_type="pt")
    assert out.prepared.original.size == (25, 15) and out.prepared.shrunk_by == 4
    same = pipe.inpaint(open_image(huge_jpeg, shrink_huge_jpeg=True), box=BOX, seed=0, output_type="pt")
    assert torch.equal(out.images, same.images)  # the path edits the shrunk copy
    for edit in (out, same, pipe.outpaint(str(huge_jpeg), inner_fraction=0.5, seed=0)):
        with pytest.raises(ValueError, match=r"read at 1/4 size, so its result cannot be pasted back at the orig"):
            edit.pasted()


def test_a_jpeg_pillow_opens_is_still_read_and_pasted_back_at_full_size(tmp_path, monkeypatch, pipe):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3600)  # 6000 pixels: over the limit, under twice it
    out = pipe.inpaint(str(_photo(tmp_path / "photo.jpg")), box=BOX, seed=0)
    assert out.prepared.shrunk_by == 1 and out.pasted()[0].size == (100, 60)


def test_the_cli_edits_a_huge_jpeg_and_refuses_paste_back_in_one_line(huge_jpeg, pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "pipe")
    edit = ["edit", "--model", str(tmp_path / "pipe"), "--image", str(huge_jpeg), "--box", *map(str, BOX)]
    assert main([*edit, "--class", "1", "--out", str(tmp_path / "edited.png")]) == 0
    assert Image.open(tmp_path / "edited.png").size == (16, 16)
    capsys.readouterr()
    assert main([*edit, "--class", "1", "--paste-back", "--out", str(tmp_path / "pasted.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--paste-back needs" in err and "too large to decode" in err
    assert "Traceback" not in err and not (tmp_path / "pasted.png").exists()
    # refused before the model is even loaded (so before any sampling): a missing model is not what it reports
    edit[2] = str(tmp_path / "no-such-model")
    assert main([*edit, "--class", "1", "--paste-back", "--out", str(tmp_path / "pasted.png")]) == 2
    assert "--paste-back needs" in capsys.readouterr().err
