"""First-hour fixes: a near-miss class name gets a suggestion, a folder given as an image says so, a bundled model
loaded through the wrong class is named as typed, a tiny edit input is warned about, and a 16-bit input pastes back
8-bit as the README says."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import tiny_class_pipeline

from nextscale.data.image_reading import open_image
from nextscale.sampling.editing import paste_back, prepare_image
from nextscale.sampling.pipeline_class_names import ClassNamesMixin
from nextscale.sampling.raster_pipeline import RasterPipeline
from nextscale.sampling.text_pipeline import TextPipeline

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class Named(ClassNamesMixin):
    def __init__(self, names):
        self.num_classes = len(names)
        self.class_names = self.check_class_names(names)


@pytest.mark.parametrize(
    "typed, meant",
    [("cat", "'cats'"), ("red apple", "'red apples'"), ("redapples", "'red apples'"), ("RED aples", "'red apples'")],
)
def test_a_near_miss_class_name_suggests_the_name(typed, meant):
    with pytest.raises(ValueError) as caught:
        Named(["Cars", "cats", "red apples"]).class_ids([typed])
    assert str(caught.value) == (
        f"unknown class name {typed!r}; valid names: 0 Cars, 1 cats, 2 red apples; did you mean {meant}?"
    )


def test_suggestions_name_whole_names_and_stay_quiet_for_a_stranger():
    pipe = Named(FASHION)
    for typed, meant in (("sneakers", "'Sneaker'"), ("shirts", "'Shirt' or 'T-shirt/top'"), ("boots", "'Ankle boot'")):
        with pytest.raises(ValueError, match=f"did you mean {meant}\\?$"):
            pipe.class_ids([typed])
    with pytest.raises(ValueError) as caught:
        pipe.class_ids(["hat"])
    assert str(caught.value).endswith("9 Ankle boot")  # nothing close: the message as before


def test_a_folder_given_as_an_image_says_it_is_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder, not an image file; give one image file"):
        open_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        tiny_class_pipeline().inpaint(str(tmp_path), box=(0, 0, 0.5, 0.5), seed=0)


def test_a_bundled_model_of_the_wrong_kind_is_named_as_typed():
    with pytest.raises(ValueError) as caught:
        TextPipeline.from_pretrained("bundled:fashion-mnist")
    assert str(caught.value).startswith("bundled:fashion-mnist holds a Pipeline, not a TextPipeline")
    with pytest.raises(ValueError, match="^bundled:scenes holds a TextPipeline, not a RasterPipeline"):
        RasterPipeline.from_pretrained("bundled:scenes")


def test_a_tiny_edit_input_is_warned_about(caplog):
    pipe = tiny_class_pipeline()
    size = pipe.image_size
    with caplog.at_level(logging.WARNING, logger="nextscale.sampling.pipeline_editing"):
        pipe.inpaint(Image.new("RGB", (2, 2), "white"), box=(0, 0, 0.5, 0.5), seed=0, output_type="pt")
    warned = [r.getMessage() for r in caplog.records if "enlarged" in r.getMessage()]
    assert warned == [
        f"the image is only 2x2 pixels, enlarged {size / 2:.3g}x to the model's {size}x{size}: the edit sees a "
        f"blurred copy; give a picture of at least {size}x{size} pixels"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nextscale.sampling.pipeline_editing"):
        pipe.inpaint(Image.new("RGB", (size * 3, size // 4), "white"), box=(0, 0, 0.5, 0.5), seed=0)  # 4x: fine
        pipe.outpaint(Image.new("RGB", (size, size), "white"), inner_fraction=0.5, seed=0)
    assert not [r for r in caplog.records if "enlarged" in r.getMessage()]


def test_a_16_bit_input_pastes_back_as_8_bit_gray_as_the_readme_says():
    picture = Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16))
    assert picture.mode.startswith("I;16")
    prepared = prepare_image(picture, 16, 1)
    pasted = paste_back(Image.new("L", (16, 16), 0), prepared, torch.zeros(4, 4, dtype=torch.bool))
    assert (pasted.mode, pasted.size) == ("L", (30, 20))
