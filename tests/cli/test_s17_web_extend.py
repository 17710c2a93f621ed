"""The web demo's "extend" edit mode: `nextscale edit --extend` in the page (``pipe.outpaint`` with ``inner_fraction``),
with one-line errors for sizes the model's token grid cannot take."""

import asyncio

import gradio as gr
import numpy as np
import pytest

from nextscale.cli.demo import enlarge
from nextscale.cli.web_app import build_app, example_image
from nextscale.cli.web_handlers import UNCONDITIONAL, ServedModels, edit_image
from nextscale.cli.web_inputs import Knobs
from nextscale.data.grids import make_grid
from nextscale.sampling.pipeline import Pipeline

BOX = (0.25, 0.25, 0.75, 0.75)  # y0 x0 y1 x1: not used by "extend"


@pytest.fixture(scope="module")
def tiny_pipe(tiny_pipeline_dir):
    return Pipeline.from_pretrained(tiny_pipeline_dir)  # 16 px, a 4x4 last-scale token grid


@pytest.fixture(scope="module")
def app(tiny_pipe):
    return build_app(tiny_pipe, None, max_images=4)


def test_extend_is_the_library_outpaint_with_inner_fraction_as_the_cli_calls_it(tiny_pipe, app):
    image = example_image(tiny_pipe)
    # through the page's wiring (the extend slider is the input after the sampling knobs) to the handler; the box,
    # empty here, is not used by extend
    (endpoint,) = [fn for fn in app.fns.values() if fn.api_name == "edit_image"]
    knobs = (3, 3.0, None, None, 1.0, False)  # seed, cfg, top-k, top-p, temperature, smooth
    grid, status, pasted = endpoint.fn(image, 0.6, 0.2, 0.4, 0.8, "extend", UNCONDITIONAL, 1, *knobs, 0.6)
    out = tiny_pipe.outpaint(image, inner_fraction=0.6, output_type="pt", **Knobs(*knobs).settings())
    pictures, labels = out.side_by_side()
    expected = make_grid(enlarge(pictures, 128 // tiny_pipe.image_size), nrow=len(labels), labels=labels)
    assert np.array_equal(np.asarray(grid), np.asarray(expected)) and status.startswith("1 image in ")
    ((extended, caption),) = pasted  # the extended picture at the input's resolution, as `edit --paste-back`
    assert caption == "result 1" and np.array_equal(np.asarray(extended), np.asarray(out.pasted()[0]))
    # the region panel tints the generated frame: 0.6 of a 4x4 grid rounds to the 2x2 cells in the middle
    pixels = np.asarray(grid.convert("RGB"), dtype=np.float64)
    source, region = (pixels[2:130, 2 + i * 130 : 130 + i * 130] for i in range(2))
    inside = np.zeros((128, 128), dtype=bool)
    inside[32:96, 32:96] = True
    assert np.array_equal(region[inside], source[inside]) and np.abs(region - source)[~inside].mean() > 10


def test_extend_sizes_and_modes_the_model_cannot_take_are_one_line_errors(tiny_pipe, app):
    served, image = ServedModels(tiny_pipe), example_image(tiny_pipe)
    cases = [
        (
            0.9,
            "extend",
            "extend 0.9 rounds to the whole 4x4 token grid of this model, leaving no frame to generate: "
            "choose a smaller extend",
        ),
        (
            0.1,
            "extend",
            "extend 0.1 shrinks the image below one cell of this model's 4x4 token grid: choose a larger extend",
        ),
        (0.6, "sideways", "unknown mode 'sideways': choose one of inpaint, outpaint, extend"),
    ]
    for extend, mode, message in cases:
        with pytest.raises(gr.Error) as caught:
            edit_image(served, image, *BOX, mode, UNCONDITIONAL, 1, Knobs(seed=0), extend)
        assert caught.value.message == message
    (radio,) = [block for block in app.blocks.values() if isinstance(block, gr.Radio)]
    assert [value for value, _ in radio.choices] == ["inpaint", "outpaint", "extend"]
    (extend_slider,) = [block for block in app.blocks.values() if str(getattr(block, "label", "")).startswith("extend")]
    with pytest.raises(gr.Error) as caught:  # what the HTTP API may send, as every slider
        extend_slider.preprocess(None)
    assert caught.value.message == f"{extend_slider.label} must be a number from 0.05 to 0.95, got None"


def test_too_few_inputs_and_an_image_that_is_no_file_are_one_line_api_errors(tiny_pipe, app):
    # gradio refuses both before any widget or handler runs, and its errors (a ValueError, a pydantic
    # ValidationError) reached an HTTP caller as a bare "Error"
    (endpoint,) = [fn for fn in app.fns.values() if fn.api_name == "edit_image"]
    values = [None, *BOX, "extend", UNCONDITIONAL, 1, 0, 3.0, None, None, 1.0, False, 0.6]
    with pytest.raises(gr.Error) as caught:  # a client written before the extend slider: one value short
        asyncio.run(app.preprocess_data(endpoint, values[:-1], None))
    message = caught.value.message
    assert message.startswith("/edit_image takes 15 inputs, got 14: send one value for each, in order (image (any")
    assert message.endswith("extend: the image's size on the canvas (fraction))") and "\n" not in message
    with pytest.raises(gr.Error) as caught:  # a bare path, not an uploaded file object
        asyncio.run(app.preprocess_data(endpoint, ["photo.png", *values[1:]], None))
    assert caught.value.message == (
        "an image input must be an uploaded file ({'path': ..., 'meta': {'_type': 'gradio.FileData'}}: gradio_client's "
        "handle_file(path), or a path from /gradio_api/upload), got 'photo.png'"
    )
    assert asyncio.run(app.preprocess_data(endpoint, values, None))[5] == "extend"  # a whole call passes as before
