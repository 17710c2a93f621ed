"""The web demo's edit tabs show each result pasted back into the upload at its size and mode (what
``nextscale edit --paste-back`` writes), not only the model-resolution results: a third output, a PNG gallery, after
the status line so that API clients find the grid and the status where they were."""

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from nextscale.cli.web_app import build_app
from nextscale.cli.web_handlers import UNCONDITIONAL, ServedModels, edit_image
from nextscale.cli.web_inputs import Knobs
from nextscale.sampling.pipeline import Pipeline

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: fastest on one thread
BOX = (0.5, 0.0, 1.0, 1.0)  # y0 x0 y1 x1: the bottom half


@pytest.fixture(scope="module")
def tiny_pipe(tiny_pipeline_dir):
    return Pipeline.from_pretrained(tiny_pipeline_dir)  # 16 px RGB


def transparent_upload(folder) -> tuple[str, np.ndarray]:
    rgba = np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:6, :, 3] = 0  # a transparent top
    path = folder / "cut.png"
    Image.fromarray(rgba).save(path)
    return str(path), rgba


def test_the_edit_handler_returns_each_result_pasted_into_the_upload(tiny_pipe, tmp_path):
    path, rgba = transparent_upload(tmp_path)
    grid, status, pasted = edit_image(ServedModels(tiny_pipe), path, *BOX, "inpaint", UNCONDITIONAL, 2, Knobs(seed=0))
    expected = tiny_pipe.edit(path, box=BOX, num_images=2, output_type="pt", **Knobs(seed=0).settings()).pasted()
    assert [caption for _, caption in pasted] == ["result 1", "result 2"] and status.startswith("2 images in ")
    for (picture, _), wanted in zip(pasted, expected):
        assert picture.mode == "RGBA" and picture.size == (30, 20)  # the upload's own size and transparency
        assert np.array_equal(np.asarray(picture), np.asarray(wanted))
    assert np.array_equal(np.asarray(pasted[0][0])[..., 3], rgba[..., 3])
    assert grid.size[1] < 200  # the side-by-side grid stays at the model's size, enlarged for display


def test_the_edit_tab_has_a_png_gallery_as_its_third_output(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    app = build_app(tiny_pipe, None, max_images=4)
    (block_fn,) = [fn for fn in app.fns.values() if fn.api_name == "edit_image"]
    image, status, gallery = block_fn.outputs
    assert (image.label, status.label) == ("result", "status")  # where API clients found them before
    assert isinstance(gallery, gr.Gallery) and gallery.format == "png" and "paste-back" in gallery.label
    path, rgba = transparent_upload(tmp_path)
    shown = gallery.postprocess([(Image.open(path), "result 1")])  # what gradio writes for the page: lossless, RGBA
    with Image.open(shown.root[0].image.path) as written:
        assert written.format == "PNG" and np.array_equal(np.asarray(written), rgba)
    sample = [fn for fn in app.fns.values() if fn.api_name == "sample_classes"][0]
    assert len(sample.outputs) == 2  # the sampling tabs have nothing to paste back
