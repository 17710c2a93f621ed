"""The web demo under a demanding user: huge, transparent and non-image uploads, values the HTTP API sends that the
page never does, the text tab's negative prompt, two requests at once, and a request that fails inside the server.
Each mistake is one line in the page, and the server goes on serving."""

import re
import socket
import threading

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from nextscale.cli import web_handlers
from nextscale.cli.web_app import bind, build_app, example_image, image_upload
from nextscale.cli.web_handlers import (
    UNCONDITIONAL,
    ServedModels,
    edit_image,
    edit_image_with_text,
    sample_classes,
    sample_prompts,
)
from nextscale.cli.web_inputs import Knobs
from nextscale.sampling.pipeline import Pipeline
from web_api import gradio_api_call

BOX = (0.25, 0.25, 0.75, 0.75)  # y0 x0 y1 x1: the centre


@pytest.fixture(scope="module")
def tiny_pipe(tiny_pipeline_dir):
    return Pipeline.from_pretrained(tiny_pipeline_dir)  # RGB, 16 px


@pytest.fixture(scope="module")
def text_pipe():
    return Pipeline.from_pretrained("bundled:scenes")  # grayscale, 64 px, with its MiniLM text encoder


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(gr.Error) as caught:
        call(*args, **kwargs)
    message = caught.value.message
    assert "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------------------------------------------- uploads
def test_a_huge_upload_is_called_too_large_not_corrupt(tiny_pipe, tmp_path, monkeypatch):
    photo = tmp_path / "phone.jpg"
    Image.new("RGB", (128, 128), (90, 120, 200)).save(photo)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 16384 pixels: over twice it, the most Pillow opens
    expected = (
        "the uploaded image phone.jpg is too large to open (16,384 pixels, over the 10,000 this server opens): upload "
        "a smaller copy"
    )
    at_upload = one_line_error(image_upload(None).preprocess, gr.FileData(path=str(photo), orig_name="phone.jpg"))
    assert at_upload.startswith(expected) and "corrupt" not in at_upload
    in_handler = one_line_error(edit_image, ServedModels(tiny_pipe), str(photo), *BOX)  # a script's call
    assert in_handler.startswith(expected)


@pytest.mark.parametrize(
    "name, content", [("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"), ("e.png", b"")]
)
def test_files_that_are_not_images_are_one_line_naming_the_upload(tiny_pipe, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    message = one_line_error(edit_image, ServedModels(tiny_pipe), str(path), *BOX)
    assert message.startswith(f"cannot read the uploaded image {name} (") and str(tmp_path) not in message


def test_a_transparent_png_edits_on_white_and_keeps_its_alpha_on_gray_and_rgb_models(tiny_pipe, text_pipe, tmp_path):
    pixels = np.zeros((40, 40, 4), dtype=np.uint8)
    pixels[..., 0] = 255
    pixels[:20, :, 3] = 255  # top half opaque red, bottom half fully transparent
    upload = tmp_path / "sticker.png"
    Image.fromarray(pixels).save(upload)
    served = ServedModels(tiny_pipe, text_pipe)
    for edit, target in ((edit_image, UNCONDITIONAL), (edit_image_with_text, "a bag")):
        grid, status, pasted = edit(served, str(upload), *BOX, "inpaint", target, 1, Knobs(seed=0))
        assert status.startswith("1 image in ")
        source = np.asarray(grid.convert("RGB"), dtype=np.float64)[2:130, 2:130]  # the input tile, 128 px
        assert source[-10:].min() == 255  # the transparent half composited on white, not black
        ((result, _),) = pasted
        assert result.mode == "RGBA" and result.size == (40, 40)
        assert np.array_equal(np.asarray(result)[..., 3], pixels[..., 3])  # the upload's own alpha, unchanged


# ----------------------------------------------------------------------------------- values the page never sends
@pytest.mark.parametrize(
    "box, mode, extend, message",
    [
        ((None, 0.25, 0.75, 0.75), "inpaint", 0.6, "y0 must be a number, got None"),  # was a raw TypeError
        ((0.25, "0.25", 0.75, 0.75), "outpaint", 0.6, "x0 must be a number, got '0.25'"),
        ((0.25, 0.25, float("nan"), 0.75), "inpaint", 0.6, "y1 must be a number, got nan"),
        (BOX, "extend", 0.0, r"extend must be between 0 and 1 \(the image's size on the canvas\), got 0"),
        (BOX, "extend", 1.5, "extend must be between 0 and 1"),  # was "inner_fraction must be in (0, 1)"
        (BOX, "extend", None, "extend must be a number, got None"),  # was "give exactly one of box=... or mask"
    ],
)
def test_bad_region_values_name_the_widget(tiny_pipe, box, mode, extend, message):
    served = ServedModels(tiny_pipe)
    error = one_line_error(edit_image, served, example_image(tiny_pipe), *box, mode, UNCONDITIONAL, 1, extend=extend)
    assert re.match(message, error), error
    assert "inner_fraction" not in error


def test_checkbox_strings_are_refused_not_read_as_ticked(tiny_pipe):
    # gradio passes a checkbox's value through untouched: the string "false" was truthy, so smooth was on
    served = ServedModels(tiny_pipe)
    assert one_line_error(sample_classes, served, ["Bag"], 1, Knobs(smooth="false")) == (
        "smooth must be true or false, got 'false'"
    )
    assert one_line_error(sample_classes, served, ["Bag"], 1, Knobs(), "false") == (
        "coarse to fine must be true or false, got 'false'"
    )
    grid, _ = sample_classes(served, ["Bag"], 1, Knobs(seed=1, smooth=0))
    assert np.array_equal(np.asarray(grid), np.asarray(sample_classes(served, ["Bag"], 1, Knobs(seed=1))[0]))


# ------------------------------------------------------------------------------------------------- text tab
def test_a_long_negative_prompt_is_named_as_the_negative_prompt(text_pipe):
    served = ServedModels(None, text_pipe)
    long_text = "a bag " * 200  # far past MiniLM's 256 tokens
    _, status = sample_prompts(served, "a bag in the top left", long_text, 1, Knobs(seed=0))
    assert status.endswith(
        "; the negative prompt is longer than the text encoder's 256 tokens: the rest was ignored, shorten it"
    )  # was "1 of 2 prompts are longer", of a page with one prompt
    _, both = sample_prompts(served, long_text, long_text, 1, Knobs(seed=0))
    assert "; the prompt is longer" in both and "; the negative prompt is longer" in both
    _, fits = sample_prompts(served, "a bag in the top left", "a dress", 1, Knobs(seed=0))
    assert "longer than" not in fits


def test_the_prompt_length_check_runs_under_the_model_lock(text_pipe, monkeypatch):
    """Another request may be running the same tokenizer (a Rust fast tokenizer refuses two callers at once)."""
    served = ServedModels(None, text_pipe)
    held = []
    check = web_handlers.truncation_note
    monkeypatch.setattr(
        web_handlers, "truncation_note", lambda *a, **k: held.append(served.lock.locked()) or check(*a, **k)
    )
    from nextscale.cli.demo_text import EXAMPLE_SCENE

    sample_prompts(served, "a bag", "a coat", 1, Knobs(seed=0))
    _, status, _ = edit_image_with_text(served, str(EXAMPLE_SCENE), *BOX, "inpaint", "a bag " * 200, 1, Knobs(seed=0))
    assert held == [True, True] and status.endswith("the rest was ignored, shorten it")


# ----------------------------------------------------------------------------------------- two requests at once
def test_two_requests_at_once_on_every_tab_give_what_each_gives_alone(tiny_pipe, text_pipe):
    from nextscale.cli.demo_text import EXAMPLE_SCENE

    served = ServedModels(tiny_pipe, text_pipe, max_images=8)
    requests = {
        "class": lambda: sample_classes(served, ["Bag", "Coat"], 2, Knobs(seed=1)),
        "text": lambda: sample_prompts(served, "a bag in the top left\na dress", "", 2, Knobs(seed=1)),
        "edit": lambda: edit_image(served, example_image(tiny_pipe), *BOX, "inpaint", "Bag", 2, Knobs(seed=1)),
        "text edit": lambda: edit_image_with_text(served, str(EXAMPLE_SCENE), *BOX, "inpaint", "a bag", 1, Knobs()),
    }
    alone = {name: np.asarray(request()[0]) for name, request in requests.items()}
    together, failures = {}, []

    def send(name: str, copy: int) -> None:
        try:
            together[name, copy] = np.asarray(requests[name]()[0])
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            failures.append(repr(err))

    threads = [threading.Thread(target=send, args=(name, copy)) for copy in range(2) for name in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(together) == 8
    assert all(np.array_equal(image, alone[name]) for (name, _), image in together.items())


# ------------------------------------------------------------------------------------------- a failure inside
def test_a_failure_inside_the_server_is_one_line_in_the_page(tiny_pipe, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("grid\nbroke")

    monkeypatch.setattr(web_handlers, "result_grid", broken)
    bound = bind(sample_classes, ServedModels(tiny_pipe), after_knobs=1)
    message = one_line_error(bound, ["Bag"], 1, 0, 3.0, None, None, 1.0, False, False)
    assert message == (
        "this request failed inside the server (RuntimeError: grid broke); its log has the traceback: try other "
        "settings, or report it"
    )
    with pytest.raises(RuntimeError, match="grid"):  # the handler itself, as scripts and tests call it, is unchanged
        sample_classes(ServedModels(tiny_pipe), ["Bag"], 1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
def test_the_launched_server_shows_a_failure_and_serves_the_next_request(tiny_pipe, monkeypatch):
    failures = iter([RuntimeError("the decoder broke")])
    real_grid = web_handlers.result_grid

    def fails_once(*args, **kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_grid(*args, **kwargs)

    monkeypatch.setattr(web_handlers, "result_grid", fails_once)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(tiny_pipe, None, max_images=4)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        request = [["Bag"], 1, 0, 3.0, None, None, 1.0, False, False]
        event, error = gradio_api_call(url, "sample_classes", request)
        assert event == "error" and error.startswith("this request failed inside the server (RuntimeError: the deco")
        event, (image, status) = gradio_api_call(url, "sample_classes", request)
        assert event == "complete" and status.startswith("1 image in ") and image["path"].endswith(".png")
    finally:
        app.close()
