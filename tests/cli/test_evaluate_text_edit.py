"""`nextscale evaluate --edit` of a text model: edits of captioned scenes towards their own or moved-on captions,
judged by the adherence classifier, and ``edit_images`` with one prompt per image."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.cli.evaluate_text_edit import boxed_places, next_item, text_edit

SCENES = Path(__file__).resolve().parents[1] / "assets" / "scenes" / "test"


def edit_args(target: str, box=None) -> argparse.Namespace:
    return argparse.Namespace(edit="inpaint", box=box, edit_target=target)


def test_next_moves_every_boxed_quadrant_on_and_keeps_the_rest():
    assert [next_item(item) for item in (None, 0, 8, 9)] == [0, 1, 9, 0]
    assert boxed_places((0, 0, 0.5, 0.5)) == [0] and boxed_places((0, 0, 0.5, 1)) == [0, 1]
    with pytest.raises(ValueError, match="cuts through one"):
        boxed_places((0.25, 0.25, 0.75, 0.75))
    layouts = [(7, None, None, 8), (None, 3, None, None)]
    captions = ["a sneaker in the top left and a bag in the bottom right", "a dress in the top right"]
    edit = text_edit(edit_args("next", [0, 0, 0.5, 1]), 16, captions, layouts)
    assert edit.layouts == [(8, 0, None, 8), (0, 4, None, None)]
    assert edit.prompts[0] == "a bag in the top left and a t-shirt in the top right and a bag in the bottom right"
    assert edit.original_layouts == layouts
    own = text_edit(edit_args("own"), 16, captions, layouts)
    assert own.prompts == captions and own.layouts == layouts and own.original_layouts is None
    assert text_edit(edit_args("none"), 16, captions, layouts).prompts == ["", ""]
    with pytest.raises(ValueError, match="not scene captions"):
        text_edit(edit_args("next", [0, 0, 0.5, 0.5]), 16, ["a red apple"], None)


@pytest.fixture(scope="module")
def scenes_pipe():
    from nextscale import Pipeline

    return Pipeline.from_pretrained("bundled:scenes")


def test_edit_images_takes_one_prompt_per_image(scenes_pipe):
    from nextscale.sampling.editing import PreparedImage, box_mask, keep_mask_for

    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    keep = keep_mask_for("inpaint", box_mask(scenes_pipe.transformer.config.scale_sides[-1], (0, 0, 0.5, 0.5)))
    prompts = ["a bag in the top left", "a sneaker in the top left"]
    both = scenes_pipe.edit_images(images, keep, prompts=prompts, seed=3, cfg=3.0, output_type="pt")
    assert both.prompts == prompts
    one = scenes_pipe.edit_images(images[:1], keep, prompts=prompts[:1], seed=3, cfg=3.0, output_type="pt")
    single = scenes_pipe.edit_with_keep_mask(
        PreparedImage(images[:1], None, (0, 0, 0, 0)), keep, prompt=prompts[0], seed=3, cfg=3.0, output_type="pt"
    )
    assert torch.equal(one.tokens, single.tokens)
    with pytest.raises(ValueError, match="edits towards prompts, not class_labels"):
        scenes_pipe.edit_images(images, keep, class_labels=[1, 2])


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_the_bundled_scene_model_edits_a_quadrant_towards_the_next_item(tmp_path, capsys):
    argv = ["evaluate", "--model", "bundled:scenes", "--edit", "inpaint", "--box", "0", "0", "0.5", "0.5"]
    argv += ["--edit-target", "next", "--reference", f"captions:{SCENES}", "--num", "12", "--features", "classifier"]
    assert main([*argv, "--cfg", "3", "--top-k", "10", "--seed", "0", "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["measured"] == "inpaint edits of reference images" and report["num_samples"] == 12
    assert report["reference_count"] == 32  # FID against the whole reference; the first 12 images are edited
    assert report["edit"]["target"] == "next" and report["edit"]["kept_fraction"] == 0.75
    row = report["results"][0]
    assert 0 <= row["adherence"]["overall"]["item_accuracy"] <= 1
    assert row["original_adherence"]["overall"]["scene_accuracy"] == 0  # the top left changed in every scene
    inputs = report["edit_baselines"]["inputs"]
    assert inputs["adherence"]["overall"]["item_accuracy"] >= 0.8  # the judge on the real scenes
    assert inputs["fid"] < report["edit_baselines"]["reconstructions"]["fid"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--edit", "inpaint"], "--edit edits real images: give them as --reference captions:PATH"),
        (["--edit", "inpaint", "--num-prompts", "4", "--reference", f"captions:{SCENES}"], "--num-prompts chooses"),
        (
            ["--edit", "inpaint", "--edit-target", "next", "--reference", f"captions:{SCENES}"],
            "cuts through one",  # the default box, the centre quarter, cuts through all four quadrants
        ),
    ],
)
def test_text_edits_out_of_place_are_refused_in_one_line(capsys, flags, message):
    assert main(["evaluate", "--model", "bundled:scenes", "--features", "classifier", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
