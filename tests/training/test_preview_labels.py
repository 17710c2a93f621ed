"""A text run's preview grid with a long caption among its prompts (found by a first-hour user run, session 18).

The preview labels every cell with its full prompt, so one 600-word caption among the first training captions
(the default preview prompts) widens every cell to the caption's width: a 69242 x 96 px PNG for 8 prompts at 32 px.
`nextscale sample` cuts its grid labels to ``data.grids.prompt_label``'s 24 characters; previews should too.
"""

import contextlib
from types import SimpleNamespace

import torch
from PIL import Image

from nextscale.presets import tiny
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.transformer_trainer import TransformerTrainer
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.text_model import TextScaleTransformer
from tiny_models import tiny_text_config

WIDTH = 8  # text feature width of the stand-in encoder


def stub_trainer(tmp_path, prompts):
    """The attributes ``TransformerTrainer.preview`` reads, around a tiny tokenizer and text transformer."""
    torch.manual_seed(0)
    tokenizer_config = tiny()[0]
    config = tiny_text_config(WIDTH)
    transformer = TextScaleTransformer(config).eval()

    def text_condition(texts):
        hidden, mask = torch.randn(len(texts), 3, WIDTH), torch.ones(len(texts), 3, dtype=torch.int64)
        return TextCondition(hidden, mask, hidden.mean(1))

    @contextlib.contextmanager
    def preview_model():
        with torch.no_grad():
            yield transformer

    return SimpleNamespace(
        objective=SimpleNamespace(preview_seed=0, preview_cfg=3.0, train_sampler_head=False),
        device=torch.device("cpu"),
        is_text=True,
        is_raster=False,
        preview_prompts=lambda: prompts,
        text_condition=text_condition,
        null_text=text_condition([""]),
        preview_model=preview_model,
        tokenizer=MultiScaleVQVAE(tokenizer_config).eval(),
        run_dir=tmp_path,
    )


def test_a_long_caption_does_not_widen_the_preview_grid(tmp_path):
    long_caption = " ".join(["a very detailed red circle with many words"] * 80)  # 640 words
    prompts = ["a red circle", long_caption, "a blue square", "a green square"]
    TransformerTrainer.preview(stub_trainer(tmp_path, prompts), step=1)
    with Image.open(tmp_path / "previews" / "step-00000001.png") as grid:
        width = grid.width
    # 4 cells of a 16 px image; labels cut as `sample` cuts them (24 characters) keep each cell a few hundred px
    assert width < 4 * 300, f"preview grid is {width} px wide for 4 prompts"
