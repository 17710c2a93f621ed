"""A tiny text pipeline with the default MiniLM encoder: prompts, negatives, folders, editing, the CLI."""

import pytest
import torch
from PIL import Image
from tiny_pipelines import tiny_text_transformer

from nextscale import Pipeline
from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.text import load_default_text_encoder
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.text_model import TextScaleTransformer


@pytest.fixture(scope="module")
def encoder():
    return load_default_text_encoder()


@pytest.fixture(scope="module")
def pipe(encoder):
    torch.manual_seed(0)
    return TextPipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer(), encoder)


@pytest.fixture(scope="module")
def folder(pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("text-pipe") / "tiny-star"
    pipe.save_pretrained(path)
    return path


def test_prompts_sample_deterministically_and_depend_on_the_prompt(pipe):
    a = pipe(prompt=["a bag", "a sneaker"], num_images_per_prompt=2, seed=1, cfg=2.0, output_type="pt")
    b = pipe(prompt=["a bag", "a sneaker"], num_images_per_prompt=2, seed=1, cfg=2.0, output_type="pt")
    assert a.tokens.shape == (4, 21) and a.images.shape == (4, 3, 16, 16)
    assert torch.equal(a.tokens, b.tokens)
    assert a.prompts == ["a bag", "a bag", "a sneaker", "a sneaker"] and a.class_labels is None
    c = pipe(prompt=["a dress", "a sneaker"], num_images_per_prompt=2, seed=1, cfg=2.0, output_type="pt")
    assert not torch.equal(a.tokens[:2], c.tokens[:2])
    generated = pipe(prompt=(text for text in ["a bag", "a sneaker"]), num_images_per_prompt=2, seed=1, cfg=2.0)
    assert generated.prompts == a.prompts and torch.equal(generated.tokens, a.tokens)  # a generator is read once


def test_precomputed_features_equal_prompts(pipe, encoder):
    encoding, empty = encoder.encode(["a coat"]), encoder.encode([""])
    by_text = pipe(prompt="a coat", seed=5, cfg=3.0, top_k=10)
    by_features = pipe(
        prompt_embeds=encoding.hidden,
        prompt_attention_mask=encoding.mask,
        pooled_prompt_embeds=encoding.pooled,
        negative_prompt_embeds=empty.hidden,
        negative_prompt_attention_mask=empty.mask,
        negative_pooled_prompt_embeds=empty.pooled,
        seed=5,
        cfg=3.0,
        top_k=10,
    )
    assert torch.equal(by_text.tokens, by_features.tokens)


def test_negative_prompt_replaces_the_empty_prompt(pipe):
    plain = pipe(prompt="a coat", seed=2, cfg=4.0)
    negative = pipe(prompt="a coat", negative_prompt="a bag", seed=2, cfg=4.0)
    assert not torch.equal(plain.tokens, negative.tokens)
    unguided = pipe(prompt="a coat", negative_prompt="a bag", seed=2, cfg=0.0)
    assert torch.equal(unguided.tokens, pipe(prompt="a coat", seed=2, cfg=0.0).tokens)


def test_folder_round_trip_returns_a_text_pipeline(folder, pipe):
    loaded = Pipeline.from_pretrained(folder)
    assert isinstance(loaded, TextPipeline) and loaded.text_encoder is not None
    assert loaded.text_encoder.width == 384
    ours = pipe(prompt="a shirt", seed=3, cfg=1.5).tokens
    assert torch.equal(loaded(prompt="a shirt", seed=3, cfg=1.5).tokens, ours)
    with pytest.raises(ValueError, match="holds a TextPipeline"):
        from nextscale.sampling.pipeline import Pipeline as ClassPipeline

        class Narrow(ClassPipeline):  # a subclass that is not the folder's kind
            pass

        Narrow.from_pretrained(folder)


def test_text_edit_keeps_the_tokens_outside_the_region(pipe):
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    out = pipe.inpaint(image, box=(0.0, 0.0, 0.5, 0.5), prompt="a bag", seed=0, output_type="pt")
    keep = out.keep_mask  # (4, 4) on the last grid
    original = pipe.tokenizer.encode(image)[-1].reshape(4, 4)
    last = out.tokens[0, -16:].reshape(4, 4)
    assert torch.equal(last[keep], original[keep]) and out.prompts == ["a bag"]
    with pytest.raises(ValueError, match="text-conditional"):
        pipe.inpaint(image, box=(0.0, 0.0, 0.5, 0.5), class_label=1)


def test_bad_input_is_refused(pipe, encoder):
    with pytest.raises(ValueError, match="empty"):
        pipe(prompt=[])
    with pytest.raises(ValueError, match="text-conditional"):
        pipe(class_labels=[1])
    with pytest.raises(ValueError, match="exactly one"):
        pipe()
    with pytest.raises(ValueError, match="1 or 2 negative"):
        pipe(prompt=["a", "b"], negative_prompt=["x", "y", "z"])
    with pytest.raises(ValueError, match="width 384, but the transformer expects 32"):
        TextPipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer(text_dim=32), encoder)
    with pytest.raises(TypeError, match="TextPipeline"):
        Pipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer())


def test_precomputed_features_with_nan_or_a_mask_not_of_0_and_1_are_named_as_the_cause(pipe, encoder):
    """Not "the logits overflowed (an extreme cfg ...)" nor "a text row has no real token (mask all 0)"."""
    encoding = encoder.encode(["a cat", "a dog"])
    features = dict(prompt_embeds=encoding.hidden, pooled_prompt_embeds=encoding.pooled, cfg=0, seed=0)
    with pytest.raises(ValueError, match="prompt_embeds or pooled_prompt_embeds hold NaN"):
        pipe(**{**features, "prompt_embeds": encoding.hidden * float("nan")})
    with pytest.raises(ValueError, match="prompt_attention_mask must hold 1 .* and 0 .* only"):
        pipe(**features, prompt_attention_mask=encoding.mask * 2)
    bool_mask = pipe(**features, prompt_attention_mask=encoding.mask.bool()).tokens
    assert torch.equal(bool_mask, pipe(**features, prompt_attention_mask=encoding.mask).tokens)


def test_cli_sample_and_edit_with_prompts(folder, tmp_path, capsys):
    out_dir = tmp_path / "each"
    code = main(
        ["sample", "--model", str(folder), "--prompt", "a bag in the top left", "a coat", "--num", "2"]
        + ["--seed", "0", "--out", str(tmp_path / "grid.png"), "--out-dir", str(out_dir)]
    )
    assert code == 0
    assert sorted(p.name for p in out_dir.glob("*.png")) == [f"{i:04d}.png" for i in range(4)]
    assert (out_dir / "prompts.txt").read_text().splitlines() == ["a bag in the top left"] * 2 + ["a coat"] * 2
    assert Image.open(out_dir / "0000.png").size == (16, 16)
    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "in.png")
    code = main(
        ["edit", "--model", str(folder), "--image", str(tmp_path / "in.png"), "--box", "0", "0", "0.5", "0.5"]
        + ["--prompt", "a bag", "--seed", "0", "--out", str(tmp_path / "edited.png")]
    )
    assert code == 0 and Image.open(tmp_path / "edited.png").size == (16, 16)
    capsys.readouterr()
    assert main(["sample", "--model", str(folder), "--class", "3", "--out", str(tmp_path / "x.png")]) == 2
    assert "text-conditional" in capsys.readouterr().err
    assert main(["sample", "--prompt", "a bag", "--model", "/nonexistent/model", "--out", str(tmp_path / "x.png")]) == 2


def test_recommended_sampling_is_saved_and_used_by_the_cli_for_flags_left_out(pipe, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "recommended"
    pipe.recommend(cfg=4.0, top_k=5)
    try:
        pipe.save_pretrained(folder)
    finally:
        pipe.recommend()
    loaded = Pipeline.from_pretrained(folder)
    assert loaded.recommended_sampling == {"cfg": 4.0, "top_k": 5}
    common = ["sample", "--model", str(folder), "--prompt", "a bag", "--seed", "3", "--out", str(tmp_path / "g.png")]
    assert main([*common, "--save-tokens", str(tmp_path / "a.safetensors")]) == 0
    assert main([*common, "--cfg", "4", "--top-k", "5", "--save-tokens", str(tmp_path / "b.safetensors")]) == 0
    assert main([*common, "--top-k", "none", "--save-tokens", str(tmp_path / "c.safetensors")]) == 0
    a, b, c = (load_file(str(tmp_path / f"{name}.safetensors"))["tokens"] for name in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)
    expected = loaded(prompt="a bag", seed=3, **loaded.recommended_sampling).tokens
    assert torch.equal(a, expected)
    with pytest.raises(ValueError, match="unknown settings"):
        pipe.recommend(guidance=3)


def test_a_batch0_model_warns_once_about_a_batch_of_different_prompts(encoder, caplog):
    import dataclasses
    import logging

    official = tiny_text_transformer()
    official = TextScaleTransformer(dataclasses.replace(official.config, official_batch0_cross_attention=True))
    pipe = TextPipeline(MultiScaleVQVAE(tiny()[0]), official, encoder)
    with caplog.at_level(logging.WARNING, logger="nextscale.sampling.text_pipeline"):
        pipe(prompt=["a bag"], num_images_per_prompt=3, seed=0, output_type="pt")  # one prompt: harmless
        assert not caplog.records
        for _ in range(2):
            pipe(prompt=["a bag", "a boot"], seed=0, output_type="pt")
    assert len(caplog.records) == 1 and "batch-0 cross-attention" in caplog.records[0].getMessage()


def test_an_interrupted_save_over_a_text_pipeline_leaves_the_old_one_whole(pipe, encoder, tmp_path, monkeypatch):
    """text_encoder/ is staged and swapped with the other entries: no old transformer beside a new encoder reference."""
    import shutil

    from nextscale.sampling import pipeline_folder
    from nextscale.text import default_text_encoder_path, load_text_encoder

    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    reference = (folder / "text_encoder" / "text_encoder.json").read_text()
    other = TextPipeline(pipe.tokenizer, pipe.transformer, load_text_encoder(default_text_encoder_path(), max_length=9))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline_folder, "save_component", interrupted)
        with pytest.raises(KeyboardInterrupt):
            other.save_pretrained(folder)
    assert (folder / "text_encoder" / "text_encoder.json").read_text() == reference
    assert TextPipeline.from_pretrained(folder).text_encoder.max_length == encoder.max_length

    # The encoder's files are the folder's own text_encoder/ (copied, or a model folder put there): saved again in
    # place, the staged folder gets a copy, since the swap replaces the folder they are in.
    pipe.save_pretrained(folder, copy_text_encoder=True)
    TextPipeline.from_pretrained(folder).save_pretrained(folder)
    (folder / "text_encoder" / "text_encoder.json").unlink()  # now a plain Hugging Face model folder
    TextPipeline.from_pretrained(folder).save_pretrained(folder)
    shutil.move(folder, tmp_path / "moved")
    moved = TextPipeline.from_pretrained(tmp_path / "moved")
    assert torch.equal(moved(prompt="a shirt", seed=3).tokens, pipe(prompt="a shirt", seed=3).tokens)
    # A pipeline without an encoder saved over one with: the folder says so, and loads.
    TextPipeline(pipe.tokenizer, pipe.transformer).save_pretrained(tmp_path / "moved")
    assert not (tmp_path / "moved" / "text_encoder").exists()
    assert TextPipeline.from_pretrained(tmp_path / "moved").text_encoder is None
