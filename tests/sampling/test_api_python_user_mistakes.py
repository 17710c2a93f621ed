"""Mistakes a researcher makes calling a pipeline from Python, each refused in one line that names the argument and
the fix (not a deep PyTorch error); and a pipeline that pickles, as a multiprocessing worker needs."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_pipelines import tiny_class_pipeline, tiny_text_transformer

from nextscale.presets import tiny
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()


@pytest.fixture(scope="module")
def text_pipe():
    """A text pipeline without an encoder: precomputed features only (no encoder to load)."""
    torch.manual_seed(0)
    return TextPipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer(text_dim=8))


def test_a_float_class_label_names_class_labels_and_the_int_to_give(pipe):
    with pytest.raises(TypeError, match=r"class_labels must be an int id.*got 3.0 \(float\).*class_labels=\[3\]"):
        pipe(class_labels=3.0, seed=0)  # was "'float' object is not iterable"
    with pytest.raises(TypeError, match=r"int id or a class name, got 3.0 \(float\); pass int\(3.0\) = 3"):
        pipe(class_labels=[3.0], seed=0)
    with pytest.raises(TypeError, match=r"got np.float64\(3.5\) \(float64\); e.g. 3 or 'Sneaker'"):
        pipe(class_labels=[np.float64(3.5)], seed=0)


def test_none_among_class_labels_is_an_unconditional_row(pipe):
    assert pipe(class_labels=[1, None], seed=0).class_labels.tolist() == [1, pipe.num_classes]


def test_an_inner_fraction_given_as_text_is_named(pipe):
    image = Image.new("RGB", (16, 16), "white")
    with pytest.raises(TypeError, match=r"inner_fraction must be a number in \(0, 1\) such as 0.6, got '0.6'"):
        pipe.outpaint(image, inner_fraction="0.6", seed=0)  # was "'<' not supported between 'float' and 'str'"


def test_text_features_that_are_not_numbers_name_their_argument(text_pipe):
    pooled = torch.zeros(1, 8)
    with pytest.raises(TypeError, match="prompt_embeds must be a .B, T, D. tensor of numbers, got a string"):
        text_pipe(prompt_embeds="a red apple", pooled_prompt_embeds=pooled, cfg=0, seed=0)
    with pytest.raises(TypeError, match="pooled_prompt_embeds must be a .B, D. tensor or array of numbers, got list"):
        text_pipe(prompt_embeds=torch.zeros(1, 3, 8), pooled_prompt_embeds=[["a"] * 8], cfg=0, seed=0)
    with pytest.raises(TypeError, match="prompt_attention_mask must be"):
        text_pipe(
            prompt_embeds=torch.zeros(1, 3, 8), prompt_attention_mask=[["x"] * 3], pooled_prompt_embeds=pooled, cfg=0
        )
    # numbers in any container still work: a nested list of features and a bool mask
    out = text_pipe(
        prompt_embeds=torch.zeros(1, 3, 8).tolist(),
        prompt_attention_mask=torch.ones(1, 3, dtype=torch.bool),
        pooled_prompt_embeds=pooled.numpy(),
        cfg=0,
        seed=0,
        output_type="pt",
    )
    assert out.tokens.shape[0] == 1


def test_decode_tokens_names_float_and_foreign_tokens(pipe):
    tokens = pipe(class_labels=[1], seed=0, output_type="pt").tokens
    with pytest.raises(TypeError, match=r"tokens must be integer token ids, got torch.float32; .*tokens.long\(\)"):
        pipe.decode_tokens(tokens.float())
    vocab = pipe.tokenizer.config.vocab_size
    with pytest.raises(ValueError, match=rf"tokens must be ids in \[0, {vocab}\).*got values in \[\d+, {vocab + 5}\]"):
        pipe.decode_tokens(torch.cat([tokens[:, :-1], torch.tensor([[vocab + 5]])], dim=1))
    assert torch.equal(pipe.decode_tokens(tokens.numpy()), pipe.decode_tokens(tokens))


def test_a_pipeline_pickles_and_the_copy_samples_the_same_images_on_its_own_lock(pipe):
    before = pipe(class_labels=[2, 5], seed=3, output_type="pt")  # the call keeps CPU memory and a KV cache
    twin = pickle.loads(pickle.dumps(pipe))  # was "cannot pickle 'generator' object"
    after = twin(class_labels=[2, 5], seed=3, output_type="pt")
    assert torch.equal(before.tokens, after.tokens)
    assert twin.call_lock is not pipe.call_lock and twin.turn_holder is None
    assert twin.sampler.transformer is twin.transformer and twin.sampler.tokenizer is twin.tokenizer
    assert twin.sampler.steps is not pipe.sampler.steps


@pytest.mark.parametrize("output_type", ["pil", "pt", "np"])
def test_an_output_tiles_into_one_grid_whatever_its_output_type(pipe, output_type):
    out = pipe(class_labels=[1, 2, 3], seed=0, output_type=output_type)
    grid = out.grid(nrow=2)  # 2 columns, 2 rows of 16 px tiles, 2 px padding
    assert grid.mode == "RGB" and grid.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)
    reference = pipe(class_labels=[1, 2, 3], seed=0, output_type="pil").images[1].convert("RGB")
    assert np.array_equal(np.asarray(grid)[2:18, 20:36], np.asarray(reference))  # the second tile, pixel for pixel


def test_decode_scales_gives_the_coarse_to_fine_view_ending_in_the_image(pipe):
    out = pipe(class_labels=[4, 6], seed=1, output_type="pt")
    views = pipe.decode_scales(out.tokens)
    assert len(views) == len(pipe.tokenizer.config.scale_sides)
    assert all(view.shape == out.images.shape for view in views)
    assert torch.allclose(views[-1], out.images, atol=1e-6)
    assert not torch.allclose(views[0], views[-1])  # the 1x1 scale alone is not the image
    assert len(pipe.decode_scales(out.tokens.tolist(), output_type="pil")[0]) == 2
    with pytest.raises(TypeError, match="tokens must be integer token ids"):
        pipe.decode_scales(out.tokens.float())


def test_a_text_encoder_given_as_a_path_says_how_to_load_it(text_pipe):
    with pytest.raises(TypeError, match=r"not the path 'models/minilm': pass nextscale.text.load_text_encoder\(path\)"):
        TextPipeline(
            text_pipe.tokenizer, text_pipe.transformer, "models/minilm"
        )  # was "'str' has no attribute 'width'"
    with pytest.raises(TypeError, match=r"with .encode\(prompts\) and .width .*got dict"):
        TextPipeline(text_pipe.tokenizer, text_pipe.transformer, {"width": 8})


def test_one_string_for_a_batch_of_edits_is_refused_not_split_into_letters(pipe, text_pipe):
    keep = torch.ones(4, 4, dtype=torch.bool)
    keep[:2] = False
    with pytest.raises(TypeError, match=r"class_labels must be a list with one entry per image; .*\['Bag'\] \* 2"):
        pipe.edit_images(torch.zeros(2, 3, 16, 16), keep, class_labels="Bag", seed=0)  # was "2 images, 3 labels"
    with pytest.raises(TypeError, match=r"prompts must be a list with one entry per image; .*\['a bag'\] \* 2"):
        text_pipe.edit_images(torch.zeros(2, 3, 16, 16), keep, prompts="a bag", seed=0)  # was "5 prompts"


def test_bytes_as_class_labels_are_refused_not_read_as_character_codes(pipe):
    with pytest.raises(TypeError, match=r"class_labels must be an int id, a class name.*got b'3' \(bytes\)"):
        pipe(class_labels=b"3", seed=0)  # was "class 51 is out of range"


@pytest.mark.parametrize(
    ("dtype", "meant"), [(torch.bfloat16, "bf16"), ("float16", "fp16"), ("BF16", "bf16"), (torch.float32, "fp32")]
)
def test_a_dtype_spelled_as_in_other_libraries_names_the_precision_meant(pipe, dtype, meant):
    with pytest.raises(ValueError, match=rf"a name, not a torch.dtype.*pass dtype='{meant}'"):
        pipe.use_precision(dtype)
    with pytest.raises(ValueError, match=rf"pass dtype='{meant}'"):
        Pipeline.from_pretrained("no-such-folder", dtype=dtype)  # refused before the folder is read
    with pytest.raises(ValueError, match=r"dtype must be one of .*got \['bf16'\]$"):
        pipe.use_precision(["bf16"])
