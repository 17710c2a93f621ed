"""Text (STAR) training end to end on the captioned scene assets: captioned token shards, training, resume,
export to a TextPipeline, and resolution transfer with --init-from."""

import json
from pathlib import Path

import pytest
import torch
from test_cli import REPO, run_command
from training_helpers import read_metrics

from nextscale import Pipeline
from nextscale.data.token_dataset import TokenShardDataset
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.training.export import load_run_model, load_tokenizer


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tok") / "tok"
    tiny = f"--config {REPO}/configs/tiny_tokenizer.json --data fashion-mnist:{REPO}/tests/assets/fashion_mnist"
    assert run_command("train_tokenizer", f"{tiny} --run-dir {run} --steps 2 --disc-start 100 --no-progress") == 0
    return run


def test_captioned_tokens_train_resume_and_export(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    tokens, run = tmp_path / "tokens", tmp_path / "star"
    data = "captions:tests/assets/scenes/train"
    assert run_command("tokenize", f"--tokenizer {tiny_tokenizer} --data {data} --out {tokens} --no-progress") == 0
    manifest = json.loads((tokens / "manifest.json").read_text())
    assert manifest["condition"] == "text" and manifest["count"] == 64
    shards = TokenShardDataset(tokens)
    first_tokens, first_caption = shards[0]
    captions = [json.loads(line)["caption"] for line in (REPO / "tests/assets/scenes/train/captions.jsonl").open()]
    assert first_caption == captions[0] and first_tokens.shape == (21,)
    with pytest.raises(ValueError, match="holds captioned tokens, which train a text model: pass --text-encoder"):
        run_command("train", f"--tokenizer {tiny_tokenizer} --tokens {tokens} --run-dir {tmp_path / 'class'}")
    assert not (tmp_path / "class").exists()  # refused before the run folder is made

    train = (
        f"--config configs/tiny_text_transformer.json --tokenizer {tiny_tokenizer} --tokens {tokens} --run-dir {run}"
    )
    assert run_command("train", f"{train} --steps 4 --max-steps 2 --log-every 1 --no-progress") == 0
    assert run_command("train", f"{train} --steps 4 --log-every 1 --no-progress") == 0  # the same command resumes
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    # bit for bit the uninterrupted run, although the resumed one starts with an empty caption memo (text/cache.py)
    whole = tmp_path / "whole"
    assert run_command("train", f"{train.replace(str(run), str(whole))} --steps 4 --log-every 1 --no-progress") == 0
    resumed, uninterrupted = load_run_model(run, raw=True).state_dict(), load_run_model(whole, raw=True).state_dict()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)
    assert read_metrics(run)[0]["loss"] == pytest.approx(4.16, abs=0.5)  # ln 64 at the start
    assert any((run / "previews").glob("*.png"))
    assert (run / "text_encoder" / "text_encoder.json").is_file()

    assert run_command("export", f"--run {run} --out {tmp_path / 'pipe'}") == 0
    pipe = Pipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(pipe, TextPipeline) and pipe.text_encoder is not None
    out = pipe(prompt=["a bag in the top left"], seed=0, output_type="pt")
    assert out.images.shape == (1, 1, 16, 16)


def test_resolution_transfer_grows_the_level_embeddings(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    low, high = tmp_path / "low", tmp_path / "high"
    common = f"--config configs/tiny_text_transformer.json --tokenizer {tiny_tokenizer} --no-progress"
    assert run_command("train", f"{common} --run-dir {low} --steps 2") == 0
    trained = load_run_model(low)
    rope_norm = 2 * trained.config.rope_norm  # RoPE settings are no shape: a fine-tuning may change them
    transfer = f"{common} --run-dir {high} --steps 1 --init-from {low} --scale-sides 1,2,4,8 --rope-norm {rope_norm}"
    assert run_command("train", transfer) == 0
    grown = load_run_model(high, raw=True)
    assert grown.config.scale_sides == (1, 2, 4, 8) and grown.level_embed.weight.shape[0] == 4
    assert grown.config.rope_norm == rope_norm and grown.config.rope_theta == trained.config.rope_theta
    config = json.loads((high / "config.json").read_text())
    assert config["init_from"] == str(low) and config["transformer"]["scale_sides"] == [1, 2, 4, 8]
    # one optimizer step moved the weights, but the grown model started from the trained one
    moved = (grown.blocks[0].attn.qkv.weight - trained.blocks[0].attn.qkv.weight).abs().max()
    assert 0 < moved < 0.05
    pipe = TextPipeline(load_tokenizer(tiny_tokenizer, (1, 2, 4, 8)), grown)  # 4x downsampling: 32 px
    features = dict(prompt_embeds=torch.randn(1, 3, 384), pooled_prompt_embeds=torch.randn(1, 384))
    assert pipe(**features, cfg=0.0, seed=0, output_type="pt").images.shape == (1, 1, 32, 32)


def test_text_and_class_data_do_not_mix(tiny_tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    class_model = f"--config configs/tiny_transformer.json --tokenizer {tiny_tokenizer} --no-progress --steps 1"
    with pytest.raises(ValueError, match="class model needs labelled data"):
        run_command("train", f"{class_model} --data captions:tests/assets/scenes/train --run-dir {tmp_path / 'a'}")
    text_model = f"--config configs/tiny_text_transformer.json --tokenizer {tiny_tokenizer} --no-progress --steps 1"
    with pytest.raises(ValueError, match="text model needs captioned data"):
        run_command(
            "train",
            f"{text_model} --data fashion-mnist:tests/assets/fashion_mnist --eval-data "
            f"fashion-mnist:tests/assets/fashion_mnist --run-dir {tmp_path / 'b'}",
        )
    with pytest.raises(ValueError, match="not a text model"):
        run_command("train", f"{text_model} --preset tiny --run-dir {tmp_path / 'c'}")
    with pytest.raises(ValueError, match="resolution transfer needs a text"):
        low = tmp_path / "var"
        run_command("train", f"{class_model} --data fashion-mnist:tests/assets/fashion_mnist --run-dir {low}")
        run_command(
            "train",
            f"{class_model} --data fashion-mnist:tests/assets/fashion_mnist --run-dir {tmp_path / 'd'} "
            f"--init-from {low} --scale-sides 1,2,4,8",
        )


def test_a_run_on_an_encoder_copied_from_another_pipeline_exports_a_loadable_pipeline(
    tiny_tokenizer, tmp_path, monkeypatch
):
    # An encoder given from another pipeline's text_encoder/ folder (files copied in, e.g. a converted STAR with
    # --copy-text-encoder) is copied into the run ("path": "."); export copied only text_encoder.json, so the
    # exported pipeline could not load its encoder.
    from nextscale.text import load_default_text_encoder, save_text_encoder_reference

    monkeypatch.chdir(REPO)
    other = tmp_path / "other" / "text_encoder"
    save_text_encoder_reference(other, load_default_text_encoder(), copy_files=True)
    tokens, run = tmp_path / "tokens", tmp_path / "star"
    data = "captions:tests/assets/scenes/train"
    assert run_command("tokenize", f"--tokenizer {tiny_tokenizer} --data {data} --out {tokens} --no-progress") == 0
    train = f"--config configs/tiny_text_transformer.json --tokenizer {tiny_tokenizer} --tokens {tokens}"
    assert run_command("train", f"{train} --text-encoder {other} --run-dir {run} --steps 1 --no-progress") == 0
    assert json.loads((run / "text_encoder" / "text_encoder.json").read_text())["path"] == "."
    assert run_command("export", f"--run {run} --out {tmp_path / 'pipe'}") == 0
    pipe = Pipeline.from_pretrained(tmp_path / "pipe")
    assert pipe(prompt=["a bag in the top left"], seed=0, output_type="pt").images.shape == (1, 1, 16, 16)
