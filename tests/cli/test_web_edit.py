"""The web demo's edit tabs: uploads gone from the server's cache, messages that name the upload and not the server's
folders, and the text model's recommended masked sampling."""

import dataclasses

import gradio as gr
import numpy as np
import pytest
import torch

from nextscale.cli.demo import enlarge
from nextscale.cli.web_app import image_upload
from nextscale.cli.web_handlers import UNCONDITIONAL, ServedModels, edit_image, edit_image_with_text, sample_classes
from nextscale.cli.web_inputs import Knobs
from nextscale.data.grids import make_grid
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.transformer.text_model import TextScaleTransformer

BOX = (0.25, 0.25, 0.75, 0.75)  # y0 x0 y1 x1: the centre


@pytest.fixture(scope="module")
def tiny_pipe(tiny_pipeline_dir):
    return Pipeline.from_pretrained(tiny_pipeline_dir)


def test_an_upload_deleted_by_the_cache_clean_up_asks_for_it_again(tiny_pipe, tmp_path):
    """The server deletes uploads a day old while a page may stay open: the page's next click sent a path that no
    longer exists, and was told the image was corrupt (widget) or shown the server's cache path (handler)."""
    cached = tmp_path / "gradio-cache" / "0123abcd" / "photo.png"  # as gradio names an upload: its name, kept
    expected = "the uploaded image photo.png is no longer on this server .*: upload it again"
    with pytest.raises(gr.Error, match=expected) as caught:
        image_upload(None).preprocess(gr.FileData(path=str(cached), orig_name="photo.png"))
    assert "corrupt" not in str(caught.value)
    with pytest.raises(gr.Error, match=expected) as caught:
        edit_image(ServedModels(tiny_pipe), str(cached), *BOX, "inpaint", UNCONDITIONAL, 1)
    assert str(tmp_path) not in str(caught.value)


def test_an_unreadable_upload_is_named_without_the_server_folders(tiny_pipe, tmp_path):
    # an SVG passes gradio's widget untouched (it does not open one) and fails in the handler; so does a truncated file
    folder = tmp_path / "gradio-cache" / "4567cdef"
    folder.mkdir(parents=True)
    drawing = folder / "drawing.svg"
    drawing.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"></svg>')
    assert image_upload(None).preprocess(gr.FileData(path=str(drawing), orig_name="drawing.svg")) == str(drawing)
    expected = r"cannot read the uploaded image drawing.svg \(.*drawing.svg.*\); it is corrupt or not an image"
    with pytest.raises(gr.Error, match=expected) as caught:
        edit_image(ServedModels(tiny_pipe), str(drawing), *BOX, "inpaint", UNCONDITIONAL, 1)
    assert str(tmp_path) not in str(caught.value)


def with_sampler_head(pipe: TextPipeline) -> TextPipeline:
    """The pipeline with a masked-sampler head (the star-1024-sampler kind), recommending masked sampling."""
    config = dataclasses.replace(pipe.transformer.config, sampler_head=True, sampler_from_scale=2)
    torch.manual_seed(0)
    grown = TextScaleTransformer(config)
    grown.init_weights(init_head=1.0)
    grown.load_state_dict(pipe.transformer.state_dict(), strict=False)
    with torch.no_grad():  # a decided head: its confidence order then changes the drawn tokens
        grown.sampler_head.head.weight.mul_(50)
    return TextPipeline(pipe.tokenizer, grown.eval(), pipe.text_encoder).recommend(masked_sampling=True)


def test_text_edit_uses_the_recommended_masked_sampling_as_nextscale_edit_does(tiny_pipe):
    from nextscale.cli.demo_text import EXAMPLE_SCENE, edit_example_prompt

    pipe = with_sampler_head(Pipeline.from_pretrained("bundled:scenes"))
    served = ServedModels(tiny_pipe, pipe, max_images=4)
    top_left, knobs = (0.0, 0.0, 0.5, 0.5), Knobs(seed=0)
    grid, _, _ = edit_image_with_text(served, str(EXAMPLE_SCENE), *top_left, "inpaint", edit_example_prompt(), 1, knobs)

    def edited(masked_sampling: bool) -> np.ndarray:
        out = pipe.edit(
            str(EXAMPLE_SCENE),
            box=top_left,
            prompt=edit_example_prompt(),
            output_type="pt",
            masked_sampling=masked_sampling,
            **knobs.settings(),
        )
        pictures, labels = out.side_by_side()
        return np.asarray(make_grid(enlarge(pictures, 128 // pipe.image_size), nrow=len(labels), labels=labels))

    assert np.array_equal(np.asarray(grid), edited(masked_sampling=True))
    assert not np.array_equal(np.asarray(grid), edited(masked_sampling=False))  # the head made a difference


def test_a_raster_baseline_has_no_edit_tab_and_no_coarse_to_fine_view(tmp_path):
    """The raster baseline cannot edit and draws one token map: its Edit tab failed on every click, and its
    coarse-to-fine view was a one-column grid of the finished images (`sample --show-scales` refuses it)."""
    from nextscale.cli.web_app import build_app
    from nextscale.presets import tiny
    from nextscale.sampling.raster_pipeline import RasterPipeline
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.raster_config import RasterConfig
    from nextscale.transformer.raster_model import RasterTransformer

    torch.manual_seed(0)
    tokenizer_config, _ = tiny()
    side = tokenizer_config.scale_sides[-1]
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, scale_sides=(side,)))
    config = RasterConfig.from_depth(1, embed_dim=32, num_heads=1, num_classes=10, vocab_size=64, side=side)
    raster = RasterPipeline(tokenizer, RasterTransformer(config))
    app = build_app(raster)
    assert [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)] == ["Class → image"]
    (view,) = [block for block in app.blocks.values() if str(getattr(block, "label", "")).startswith("coarse to fine")]
    assert view.visible is False
    served = ServedModels(raster)
    grid, status = sample_classes(served, ["3"], 2, Knobs(seed=0))
    assert status.startswith("2 images in ")
    with pytest.raises(gr.Error, match="this model has one scale .*no coarse-to-fine view: untick it"):
        sample_classes(served, ["3"], 2, Knobs(seed=0), coarse_to_fine=True)


def test_outpainting_a_box_over_the_whole_image_says_to_shrink_it(tiny_pipe):
    # the library's "the mask leaves nothing to generate; use a non-empty region" spoke of a mask the page does not
    # have, and of an empty region where the box covers everything
    from nextscale.cli.web_app import example_image

    served = ServedModels(tiny_pipe)
    with pytest.raises(gr.Error) as caught:
        edit_image(served, example_image(tiny_pipe), 0.0, 0.0, 1.0, 1.0, "outpaint", UNCONDITIONAL, 1)
    assert caught.value.message == (
        "this box and mode keep all of the image, leaving nothing to generate: shrink the box, or choose inpaint"
    )
