"""The web demo as an HTTP API client meets it: named inputs, a note for prompts the text encoder cuts, widget
refusals that are not logged as server tracebacks, and a server that stops on SIGTERM as on Ctrl-C."""

import asyncio
import signal
import socket
import types

import gradio as gr
import pytest

from nextscale.cli.web_app import build_app
from nextscale.cli.web_handlers import truncation_note
from nextscale.sampling.pipeline import Pipeline


@pytest.fixture(scope="module")
def app(tiny_pipeline_dir):
    return build_app(Pipeline.from_pretrained(tiny_pipeline_dir), None, max_images=8)


def endpoint(app: gr.Blocks, api_name: str):
    (block_fn,) = [block_fn for block_fn in app.fns.values() if block_fn.api_name == api_name]
    return block_fn


def test_api_inputs_are_named_after_the_handler_and_the_knobs(app):
    # the handlers were bound as bound(*values): gradio_client saw param_0, param_1, ... and no keyword calls
    parameters = app.get_api_info()["named_endpoints"]["/edit_image"]["parameters"]
    names = [parameter["parameter_name"] for parameter in parameters]
    assert names == [
        "image_path", "y0", "x0", "y1", "x1", "mode", "target", "num_results",
        "seed", "cfg", "top_k", "top_p", "temperature", "smooth", "extend",
    ]  # fmt: skip
    top_k = parameters[names.index("top_k")]
    assert top_k["parameter_has_default"] and top_k["parameter_default"] is None  # off unless given
    sample = app.get_api_info()["named_endpoints"]["/sample_classes"]["parameters"]
    assert [parameter["parameter_name"] for parameter in sample][:3] == ["classes", "images_per_class", "seed"]


def test_a_mode_outside_the_radio_choices_is_one_line_without_a_server_traceback(app):
    block_fn = endpoint(app, "edit_image")
    values = [None, 0.25, 0.25, 0.75, 0.75, "swap", "(none: unconditional)", 1, 0, 3.0, None, None, 1.0, False, 0.6]
    with pytest.raises(gr.Error, match="'swap'.* is not in the list of choices") as caught:
        asyncio.run(app.preprocess_data(block_fn, values, None))
    assert caught.value.print_exception is False  # gradio logged a traceback for each such call


class WordTokenizer:
    """A stand-in for the encoder's tokenizer: one token per word, plus two special ones."""

    def __call__(self, texts, truncation, verbose):
        assert truncation is False  # the full length, to compare with the limit
        return {"input_ids": [[0, *text.split(), 0] for text in texts]}


def test_a_prompt_longer_than_the_text_encoder_takes_is_said_in_the_status_line():
    # the encoder cut it and said so only in the server's log: the page showed the image as if all of it was read
    pipe = types.SimpleNamespace(text_encoder=types.SimpleNamespace(tokenizer=WordTokenizer(), max_length=6))
    assert truncation_note(pipe, ["a bag in the"]) == ""  # 4 words + 2 special tokens: exactly the limit
    assert truncation_note(pipe, ["a bag in the corner"]) == (
        "; the prompt is longer than the text encoder's 6 tokens: the rest was ignored, shorten it"
    )
    assert truncation_note(pipe, ["a bag", "a bag in the corner"]).startswith("; 1 of 2 prompts are longer")


def test_serve_stops_on_sigterm_as_on_ctrl_c(monkeypatch, capsys, tiny_pipeline_dir):
    # kill, systemd and docker stop send SIGTERM: the server died mid-request, without "web demo stopped"
    from nextscale.cli import main

    def launch_then_terminate(app, **options):  # what arrives while gradio waits: the handler the signal would run
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler), handler
        handler(signal.SIGTERM, None)

    monkeypatch.setattr(gr.Blocks, "launch", launch_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    with socket.socket() as probe:  # a free port, checked for real before the models load
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["serve", "--model", str(tiny_pipeline_dir), "--no-text", "--port", str(port)]) == 0
    assert capsys.readouterr().out.endswith("web demo stopped\n")
    assert signal.getsignal(signal.SIGTERM) == before  # put back once the server stopped
