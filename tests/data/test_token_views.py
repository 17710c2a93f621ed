"""`tokenize --views N`: view v of each image is the random crop that training from the images makes in epoch v
(same seed), and a token folder of N views reads view epoch % N; the views really differ; misuse is one line."""

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.data.token_dataset import TokenShardDataset
from nextscale.presets import tiny
from nextscale.pretrained import save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.data_specs import build_datasets

VIEWS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A folder of 2 classes x 3 noisy 24 px pictures (random crops of them differ) and a tiny tokenizer."""
    root = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(0)
    for name in ("circle", "square"):
        (root / "data" / name).mkdir(parents=True)
        for index in range(3):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "data" / name / f"{index}.png")
    torch.manual_seed(0)
    tokenizer = MultiScaleVQVAE(tiny()[0]).eval()
    save_component(tokenizer, root / "tokenizer")
    return root, tokenizer


def stored_and_trained(tokens, images, tokenizer, epochs: int):
    """Per epoch and index: ((stored token row, its label or caption), (the tokens of the crop training from the
    images makes then, its label or caption))."""
    for epoch in range(epochs):
        tokens.set_epoch(epoch)
        images.set_epoch(epoch)
        for index in range(len(images)):
            image, condition = images[index]
            with torch.no_grad():
                expected = tokenizer.tokens_from_indices(tokenizer.encode(image[None]))[0]
            yield epoch, index, tokens[index], (expected, condition)


def test_views_are_the_training_crops_of_their_epochs(setup, tmp_path):
    root, tokenizer = setup
    out = tmp_path / "tokens"
    argv = ["tokenize", "--tokenizer", str(root / "tokenizer"), "--data", str(root / "data"), "--out", str(out)]
    assert main([*argv, "--views", str(VIEWS), "--seed", "5", "--no-progress"]) == 0
    tokens = TokenShardDataset(out, tokenizer)
    assert tokens.views == VIEWS and tokens.manifest["views"] == VIEWS
    size, channels = tokenizer.config.image_size, tokenizer.config.in_channels
    images = build_datasets(str(root / "data"), size, channels, seed=5)[0]  # what `train --data` reads
    assert len(tokens) == len(images) == 4  # one held-out image per class carved away, as for training
    seen = []
    for epoch, index, (row, label), (expected, image_label) in stored_and_trained(tokens, images, tokenizer, VIEWS + 1):
        assert label == image_label
        if epoch < VIEWS:  # the crops training from the images makes in this epoch
            assert torch.equal(row, expected), (epoch, index)
        else:  # later epochs cycle through the views
            assert torch.equal(row, seen[index])
        if epoch == 0:
            seen.append(row)
    from nextscale.cli.info import describe

    assert describe(str(out))["sequences"].endswith(f"{VIEWS} views (random crops) each")
    tokens.set_epoch(1)
    assert any(not torch.equal(tokens[index][0], seen[index]) for index in range(len(tokens)))  # views differ


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--data", "fashion-mnist", "--views", "2"], "Fashion-MNIST images are resized whole"),
        (["--split", "val", "--views", "2"], "--split val tokens are center crops"),
        (["--views", "0"], "--views must be >= 1"),
    ],
)
def test_views_that_cannot_differ_are_refused(setup, tmp_path, capsys, flags, message):
    root, _ = setup
    argv = ["tokenize", "--tokenizer", str(root / "tokenizer"), "--data", str(root / "data"), "--out", str(tmp_path)]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("shard-*"))


def test_a_shard_without_its_views_is_refused(setup, tmp_path):
    root, tokenizer = setup
    out = tmp_path / "tokens"
    argv = ["tokenize", "--tokenizer", str(root / "tokenizer"), "--data", str(root / "data"), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    manifest = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(manifest.replace('"count"', '"views": 2,\n  "count"', 1))
    with pytest.raises(ValueError, match="rows of 2 views per image"):
        TokenShardDataset(out, tokenizer)


def test_views_of_images_with_several_captions_are_the_training_crops(setup, tmp_path):
    """Training from captioned images draws the caption first and the crop after it from one generator; the
    views must be those crops too (they once skipped the caption draw, so a 2-caption image got other crops)."""
    root, tokenizer = setup
    data = tmp_path / "captioned"
    data.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(data / f"{index}.png")
        (data / f"{index}.txt").write_text("a noisy picture\nsome noise\n")
    out = tmp_path / "tokens"
    argv = ["tokenize", "--tokenizer", str(root / "tokenizer"), "--data", f"captions:{data}", "--out", str(out)]
    assert main([*argv, "--views", "2", "--seed", "3", "--no-progress"]) == 0
    tokens = TokenShardDataset(out, tokenizer, seed=3)
    size, channels = tokenizer.config.image_size, tokenizer.config.in_channels
    images = build_datasets(f"captions:{data}", size, channels, seed=3)[0]  # what `train --data captions:` reads
    for epoch, index, (row, caption), (expected, image_caption) in stored_and_trained(tokens, images, tokenizer, 2):
        assert caption == image_caption and torch.equal(row, expected), (epoch, index)


def test_a_negative_seed_is_refused_not_taken_for_broken_images(setup, tmp_path, capsys):
    """numpy refuses negative seeds: every crop failed and tokenize reported each image as undecodable."""
    root, _ = setup
    argv = ["tokenize", "--tokenizer", str(root / "tokenizer"), "--data", str(root / "data"), "--out", str(tmp_path)]
    assert main([*argv, "--views", "2", "--seed", "-1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "seed must be 0 or more" in err and "decoded" not in err
    captioned = tmp_path / "captioned"
    captioned.mkdir()
    Image.new("RGB", (24, 24)).save(captioned / "0.png")
    (captioned / "0.txt").write_text("black\n")
    with pytest.raises(ValueError, match="seed must be 0 or more"):
        build_datasets(f"captions:{captioned}", 16, 3, seed=-1)
