"""The web demo as a first-time API user meets it: the negative prompt may be left out, an image sent as a URL or as
a path on the caller's machine is one line (not a bare "Error" and a server traceback), a tiny upload's blurred
edit is said in the status line, and `--host 0.0.0.0` says which address to open."""

import asyncio
import socket
import types

import gradio as gr
import pytest
from PIL import Image

from nextscale.cli import main
from nextscale.cli.web_app import build_app
from nextscale.cli.web_handlers import ServedModels, edit_image, tiny_image_note
from nextscale.sampling.pipeline import Pipeline
from web_api import gradio_api_call

# the centre box, mode, target, one result, the sampling knobs and the extend size: /edit_image's inputs after the image
FILE_DATA = {"_type": "gradio.FileData"}
EDIT_INPUTS = [0.25, 0.25, 0.75, 0.75, "inpaint", "(none: unconditional)", 1, 0, 3.0, None, None, 1.0, False, 0.6]


@pytest.fixture(scope="module")
def tiny_pipe(tiny_pipeline_dir):
    return Pipeline.from_pretrained(tiny_pipeline_dir)  # RGB, 16 px


@pytest.fixture(scope="module")
def app(tiny_pipe):
    # the text tabs' layout reads only the recommended settings: a stand-in text model keeps this test fast
    return build_app(tiny_pipe, types.SimpleNamespace(recommended_sampling=None), max_images=8)


def endpoint(app: gr.Blocks, api_name: str):
    (block_fn,) = [block_fn for block_fn in app.fns.values() if block_fn.api_name == api_name]
    return block_fn


def refusal(app: gr.Blocks, api_name: str, values: list) -> str:
    with pytest.raises(gr.Error) as caught:
        asyncio.run(app.preprocess_data(endpoint(app, api_name), values, None))
    assert caught.value.print_exception is False  # the caller's mistake: no traceback in the server's log
    return caught.value.message


def test_the_negative_prompt_may_be_left_out_of_an_api_call(app):
    # gradio_client refused predict(prompts=..., api_name="/sample_prompts"): "No value provided for required
    # argument: negative_prompt", since the textbox had no starting value
    parameters = app.get_api_info()["named_endpoints"]["/sample_prompts"]["parameters"]
    (negative,) = [parameter for parameter in parameters if parameter["parameter_name"] == "negative_prompt"]
    assert negative["parameter_has_default"] and negative["parameter_default"] == ""


def test_an_image_given_as_a_url_is_refused_before_gradio_downloads_it(app, monkeypatch):
    # gradio fetched it (any host the caller names) and, offline, answered a bare "Error" after a logged traceback
    async def no_download(*args, **kwargs):
        raise AssertionError("the server tried to download the URL")

    monkeypatch.setattr(gr.Image, "async_move_resource_to_block_cache", no_download)
    url = "https://example.com/bus.png"  # what gradio_client's view_api offers as the image's example
    message = refusal(app, "edit_image", [{"path": url, "meta": FILE_DATA}, *EDIT_INPUTS])
    assert message.startswith(f"this server does not download images, and an image input is the URL {url}: ")
    assert "handle_file" in message


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
def test_an_image_path_that_was_not_uploaded_is_one_line_naming_it(app, tmp_path):
    # a path on the caller's machine: the event said {"error": null} and the server logged an InvalidPathError
    photo = tmp_path / "photo.png"
    Image.new("RGB", (16, 16)).save(photo)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:  # gradio checks where a path lies only once it serves
        event, error = gradio_api_call(url, "edit_image", [{"path": str(photo), "meta": FILE_DATA}, *EDIT_INPUTS])
    finally:
        app.close()
    assert event == "error"
    assert error.startswith(f"an image input must be a file uploaded to this server first, got the path {photo}: ")


def test_a_tiny_upload_is_said_in_the_status_line(tiny_pipe, tmp_path):
    # the library warned only in the server's log: the page showed a blurred edit without a word
    assert tiny_image_note(Image.new("RGB", (8, 8)), 32) == ""  # 4x: the library's limit, no warning
    note = tiny_image_note(Image.new("RGB", (7, 100)), 32)
    assert note.startswith("; the image is only 7x100 pixels (its 7x7 centre), enlarged")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2), (200, 30, 30)).save(tiny)
    _, status, pasted = edit_image(ServedModels(tiny_pipe), str(tiny), 0.25, 0.25, 0.75, 0.75)
    assert status.endswith(
        "; the image is only 2x2 pixels, enlarged 8x to the model's 16x16: the edit sees a blurred copy; give a "
        "picture of at least 16x16 pixels"
    )
    assert pasted[0][0].size == (2, 2)  # the edit still ran


def test_serving_every_address_says_which_address_to_open(monkeypatch, capsys, tiny_pipeline_dir):
    # "starting the web demo at http://0.0.0.0:PORT" alone: an address some browsers refuse to open
    monkeypatch.setattr(gr.Blocks, "launch", lambda app, **options: None)  # returns at once instead of serving
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert (
        main(["serve", "--model", str(tiny_pipeline_dir), "--no-text", "--host", "0.0.0.0", "--port", str(port)]) == 0
    )
    out = capsys.readouterr().out
    assert f"starting the web demo at http://0.0.0.0:{port} " in out
    assert f"open http://127.0.0.1:{port} here" in out and "no login" in out
