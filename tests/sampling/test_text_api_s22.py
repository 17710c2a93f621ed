"""A first-time user's slips with the text pipeline: each gets one line naming the argument and the fix."""

import logging

import numpy as np
import pytest
import torch
from tiny_pipelines import tiny_text_transformer

from nextscale.presets import tiny
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.text import load_default_text_encoder
from nextscale.tokenizer.vqvae import MultiScaleVQVAE


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return TextPipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer(), load_default_text_encoder())


@pytest.mark.parametrize(
    ("prompt", "error", "says"),
    [
        ({"a bag", "a coat"}, TypeError, "ordered list"),  # a set would give the images in no fixed order
        (b"a bag", TypeError, "prompt.decode()"),
        (["a bag", None], TypeError, "empty prompt ''"),
    ],
)
def test_unusable_prompts_are_refused_with_the_fix(pipe, prompt, error, says):
    with pytest.raises(error, match=f"^prompt.*{says}".replace("(", r"\(").replace(")", r"\)")):
        pipe(prompt=prompt, seed=0)


def test_a_negative_prompt_list_with_none_gets_the_same_hint(pipe):
    with pytest.raises(TypeError, match="empty prompt ''"):
        pipe(prompt=["a bag", "a coat"], negative_prompt=["blurry", None], cfg=2.0, seed=0)


def test_numpy_string_prompts_come_back_as_plain_strings(pipe):
    out = pipe(prompt=np.array(["a bag", "a coat"]), seed=0, output_type="pt")
    assert out.prompts == ["a bag", "a coat"]
    assert all(type(text) is str for text in out.prompts)  # not numpy's str_, which prints as np.str_('a bag')
    assert torch.equal(out.tokens, pipe(prompt=["a bag", "a coat"], seed=0, output_type="pt").tokens)


def test_the_encoded_prompt_passed_whole_is_refused_naming_its_parts(pipe):
    condition = pipe.encode_prompt("a bag")
    with pytest.raises(TypeError, match=r"prompt_embeds=c\.hidden.*pooled_prompt_embeds=c\.pooled"):
        pipe(prompt_embeds=condition, pooled_prompt_embeds=condition.pooled, seed=0)
    with pytest.raises(TypeError, match=r"negative_prompt_embeds=c\.hidden"):
        pipe(prompt="a bag", negative_prompt_embeds=condition, seed=0)


def test_a_negative_prompt_without_guidance_is_not_ignored_silently(pipe, caplog):
    with caplog.at_level(logging.WARNING, logger="nextscale.sampling.text_pipeline"):
        unguided = pipe(prompt="a bag", negative_prompt="a coat", cfg=0.0, seed=0, output_type="pt")
    assert "negative prompt has no effect" in caplog.text
    assert torch.equal(unguided.tokens, pipe(prompt="a bag", cfg=0.0, seed=0, output_type="pt").tokens)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nextscale.sampling.text_pipeline"):
        pipe(prompt="a bag", negative_prompt="a coat", cfg=2.0, seed=0)
    assert "no effect" not in caplog.text


@pytest.mark.parametrize("prompts", [None, b"a bag", {"a bag"}, 3])
def test_the_encoder_refuses_what_is_not_a_list_of_prompts(pipe, prompts):
    with pytest.raises(TypeError, match="encode takes a list of prompts"):
        pipe.text_encoder.encode(prompts)


def test_an_edit_warns_about_a_zero_to_one_image_tensor(pipe, caplog):
    size = pipe.image_size
    unit = pipe(prompt="a bag", seed=0, output_type="pt").images  # [0, 1], as a call gives it
    with caplog.at_level(logging.WARNING, logger="nextscale.sampling.pipeline_editing"):
        pipe.inpaint(unit, box=(0, 0, 0.5, 0.5), prompt="a coat", seed=0)
    assert "images * 2 - 1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nextscale.sampling.pipeline_editing"):
        pipe.inpaint(unit * 2 - 1, box=(0, 0, 0.5, 0.5), prompt="a coat", seed=0)
        keep = torch.ones(pipe.transformer.config.scale_sides[-1], pipe.transformer.config.scale_sides[-1]).bool()
        pipe.edit_images(torch.rand(2, 3, size, size) * 2 - 1, keep, prompts=["a", "b"], seed=0)
    assert "images * 2 - 1" not in caplog.text
