"""The web demo's sliders over the HTTP API, which sends what it likes: one line naming the slider, never a bare
"Error" with a logged traceback."""

import math

import gradio as gr
import pytest

from nextscale.cli.web_app import build_app
from nextscale.sampling.pipeline import Pipeline


@pytest.fixture(scope="module")
def sliders(tiny_pipeline_dir):
    pipe = Pipeline.from_pretrained(tiny_pipeline_dir)
    return [block for block in build_app(pipe, None, max_images=8).blocks.values() if isinstance(block, gr.Slider)]


def test_every_slider_refuses_what_the_page_never_sends_in_one_line(sliders):
    labels = {slider.label for slider in sliders}
    assert {"cfg (0: off)", "temperature", "images per class", "results", "y0 (fraction)", "x1 (fraction)"} <= labels
    for slider in sliders:
        low, high = slider.minimum, slider.maximum
        # None and "2" made gradio's own check compare them with the bounds (TypeError: a bare "Error"); NaN passed
        for value, shown in [(None, "None"), ("2", "'2'"), (math.nan, "nan"), (high + 1, f"{high + 1}")]:
            with pytest.raises(gr.Error) as caught:
                slider.preprocess(value)
            message = caught.value.message
            assert message == f"{slider.label} must be a number from {low:g} to {high:g}, got {shown}", message
        assert slider.preprocess(low) == low and slider.preprocess(high) == high
