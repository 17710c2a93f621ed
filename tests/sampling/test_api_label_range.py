"""Edge cases of the Python sampling call: class ids outside [0, num_classes) (the null id num_classes included) are
refused, unconditional rows are asked for with None; empty text features are named; the bundled scene model's
recommended settings reach a Python call as they reach the CLI; a top_k above the vocabulary is documented."""

import numpy as np
import pytest
import torch
from tiny_pipelines import tiny_class_pipeline, tiny_text_transformer

from nextscale.presets import tiny
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()


@pytest.fixture(scope="module")
def text_pipe():
    torch.manual_seed(0)
    return TextPipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer(text_dim=8))


@pytest.mark.parametrize(
    "labels, shown",
    [([10], 10), (10, 10), (["10"], 10), ([np.int64(10)], 10), (torch.tensor([3, 10]), 10), (np.array([10]), 10)]
    + [([-1], -1), (torch.tensor([-2, 3]), -2), ([torch.tensor(11)], 11)],
)
def test_an_id_outside_the_classes_is_refused_with_the_range_and_the_unconditional_way(pipe, labels, shown):
    assert pipe.num_classes == 10  # id 10 was the null class: silently unconditional samples
    with pytest.raises(ValueError, match=rf"class {shown} is out of range.*classes 0\.\.9; .*class_labels=\[3, None\]"):
        pipe(class_labels=labels, seed=0)


def test_the_null_id_is_named_as_such_and_class_names_are_listed(pipe):
    named = Pipeline(pipe.tokenizer, pipe.transformer, class_names=[f"item{i}" for i in range(10)])
    with pytest.raises(ValueError, match=r"class 10 is out of range \(it is the internal null class\).*9 item9\)"):
        named(class_labels=["item3", 10], seed=0)


def test_none_among_the_labels_samples_the_null_class(pipe):
    null_id = pipe.transformer.config.null_class_id
    out = pipe(class_labels=[2, None], seed=0, output_type="pt")
    expected = pipe.sampler.sample(torch.tensor([2, null_id]), generator=torch.Generator().manual_seed(0))
    assert out.class_labels.tolist() == [2, null_id]
    assert torch.equal(out.tokens, expected.tokens)
    assert pipe(class_labels=[None], num_images_per_prompt=2, seed=0).class_labels.tolist() == [null_id] * 2


def test_edits_keep_the_null_id_of_the_official_edit_demo(pipe):
    null_id = pipe.transformer.config.null_class_id
    image = (torch.rand(1, 3, pipe.image_size, pipe.image_size) * 255).to(torch.uint8).permute(0, 2, 3, 1)[0].numpy()
    by_id = pipe.inpaint(image, box=(0.25, 0.25, 0.75, 0.75), class_label=null_id, seed=0, output_type="pt")
    by_none = pipe.inpaint(image, box=(0.25, 0.25, 0.75, 0.75), class_label=None, seed=0, output_type="pt")
    assert by_id.class_labels.tolist() == [null_id] and torch.equal(by_id.tokens, by_none.tokens)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"prompt_embeds": torch.zeros(2, 0, 8)}, r"prompt_embeds has no tokens \(T = 0"),
        ({"prompt_attention_mask": torch.tensor([[1, 1, 0], [0, 0, 0]])}, r"prompt_attention_mask .* row\(s\) \[1\]"),
        ({"prompt_attention_mask": torch.ones(2, 2)}, r"prompt_attention_mask must be \(B, T\) = \(2, 3\)"),
        ({"pooled_prompt_embeds": torch.zeros(1, 8)}, r"pooled_prompt_embeds must be \(B, D\) with one row per row"),
        ({"prompt_embeds": torch.zeros(0, 3, 8)}, r"prompt_embeds holds no rows"),
        (
            {"negative_prompt_embeds": torch.zeros(1, 0, 8), "negative_pooled_prompt_embeds": torch.zeros(1, 8)},
            r"negative_prompt_embeds has no tokens",
        ),
        (
            {
                "negative_prompt_embeds": torch.zeros(1, 2, 8),
                "negative_prompt_attention_mask": torch.zeros(1, 2),
                "negative_pooled_prompt_embeds": torch.zeros(1, 8),
            },
            r"negative_prompt_attention_mask has no real token",
        ),
    ],
)
def test_empty_text_features_name_the_argument_and_the_fix(text_pipe, change, match):
    features = {"prompt_embeds": torch.randn(2, 3, 8), "pooled_prompt_embeds": torch.randn(2, 8), **change}
    with pytest.raises(ValueError, match=match):  # was "a text row has no real token", naming no argument
        text_pipe(**features, cfg=0.0, seed=0)


def test_a_text_call_with_features_still_samples(text_pipe):
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = text_pipe(
        prompt_embeds=torch.randn(2, 3, 8), prompt_attention_mask=mask, pooled_prompt_embeds=torch.randn(2, 8), cfg=0
    )
    assert out.tokens.shape[0] == 2


def test_the_bundled_scene_model_gives_python_the_clis_recommended_settings():
    from nextscale.cli import build_parser
    from nextscale.cli.common import resolve_sampling, sampling_kwargs

    scenes = Pipeline.from_pretrained("bundled:scenes")
    assert scenes.recommended_sampling == {"cfg": 3.0, "top_k": 10}
    cli = sampling_kwargs(resolve_sampling(build_parser().parse_args(["sample", "--prompt", "a bag"]), scenes))
    assert {name: cli[name] for name in scenes.recommended_sampling} == scenes.recommended_sampling
    # a Python user is told how to sample as the CLI does, where they look first
    for doc in (Pipeline.from_pretrained.__doc__, TextPipeline.__doc__, Pipeline.__call__.__doc__):
        assert "**pipe.recommended_sampling" in doc
    prompt = ["a bag in the top left"]
    python = scenes(prompt=prompt, seed=0, output_type="pt", **scenes.recommended_sampling)
    assert torch.equal(python.tokens, scenes(prompt=prompt, output_type="pt", **{**cli, "seed": 0}).tokens)


def test_a_top_k_above_the_vocabulary_keeps_every_token_as_documented(pipe):
    vocab_size = pipe.transformer.config.vocab_size
    documented = " ".join(SamplingConfig.__doc__.split())
    assert "above the vocabulary size is clamped to it and keeps every token" in documented
    unfiltered = pipe(class_labels=[1, 4], seed=3, output_type="pt").tokens
    assert torch.equal(pipe(class_labels=[1, 4], top_k=vocab_size * 10, seed=3, output_type="pt").tokens, unfiltered)
    assert not torch.equal(pipe(class_labels=[1, 4], top_k=1, seed=3, output_type="pt").tokens, unfiltered)
