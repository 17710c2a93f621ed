"""Token folders keep every caption of an image and never hold a stand-in for an image that fails to decode."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from nextscale.cli import main
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.image_reading import BadImageError
from nextscale.data.images import ImageFolderDataset
from nextscale.data.token_dataset import TokenShardDataset
from nextscale.data.token_manifest import MANIFEST_NAME, shard_name, write_manifest
from nextscale.data.token_shards import write_token_shards
from nextscale.presets import tiny
from nextscale.pretrained import save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE

SIZE = 16  # the tiny preset's image side
CAPTIONS = [["a red cat", "a cat in red", "red feline"], ["a dog"], ["a bird"], ["a fish", "one fish"], ["a cow"]]


@pytest.fixture(scope="module")
def tokenizer() -> MultiScaleVQVAE:
    torch.manual_seed(0)
    return MultiScaleVQVAE(tiny()[0]).eval()


def _write_png(path: Path, seed: int, truncate: bool = False) -> None:
    """Random pixels (so every image tokenizes differently); ``truncate`` keeps the first 60 % of the bytes,
    so the header opens but decoding fails."""
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="RGB").save(path)
    if truncate:
        path.write_bytes(path.read_bytes()[: int(0.6 * path.stat().st_size)])


def _caption_manifest(root: Path, captions: list[list[str]], truncated: tuple[int, ...] = ()) -> Path:
    lines = []
    for index, texts in enumerate(captions):
        _write_png(root / "images" / f"{index}.png", index, truncate=index in truncated)
        lines.append(json.dumps({"image": f"images/{index}.png", "caption": texts}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root / "captions.jsonl"


def _tokenize(tokenizer, dataset, out: Path, shard_size: int = 50_000, condition: str = "text") -> TokenShardDataset:
    write_token_shards(tokenizer, dataset, out, batch_size=2, shard_size=shard_size)
    write_manifest(tokenizer, len(dataset), out, shard_size, condition=condition)
    return TokenShardDataset(out, tokenizer)


def test_every_caption_is_stored_and_each_is_drawn_over_the_epochs(tokenizer, tmp_path):
    data = CaptionManifestDataset(_caption_manifest(tmp_path / "data", CAPTIONS), SIZE)
    shards = _tokenize(tokenizer, data, tmp_path / "tokens", shard_size=2)
    with safe_open(str(tmp_path / "tokens" / shard_name(0)), framework="pt") as handle:
        assert json.loads(handle.metadata()["captions"]) == CAPTIONS[:2]  # a list of captions per row
    assert [shards.captions_of(index) for index in range(len(shards))] == [tuple(texts) for texts in CAPTIONS]
    drawn = {index: set() for index in range(len(shards))}
    for epoch in range(30):
        shards.set_epoch(epoch)
        for index in range(len(shards)):
            drawn[index].add(shards[index][1])
    assert drawn == {index: set(texts) for index, texts in enumerate(CAPTIONS)}


def test_a_caption_is_fixed_by_seed_epoch_and_index_and_matches_the_image_data(tokenizer, tmp_path):
    data = CaptionManifestDataset(_caption_manifest(tmp_path / "data", CAPTIONS), SIZE, seed=3)
    _tokenize(tokenizer, data, tmp_path / "tokens")

    def draws(dataset, epochs=range(8)) -> list[str]:
        out = []
        for epoch in epochs:
            dataset.set_epoch(epoch)
            out.extend(dataset[index][1] for index in range(len(dataset)))
        return out

    first = draws(TokenShardDataset(tmp_path / "tokens", seed=3))
    resumed = TokenShardDataset(tmp_path / "tokens", seed=3)
    draws(resumed, range(5))  # a run that went on, then came back to the same epochs (resume)
    assert draws(resumed) == first
    assert draws(TokenShardDataset(tmp_path / "tokens", seed=4)) != first
    assert draws(data) == first  # the same caption as training from the captioned images themselves


def test_old_shards_with_one_caption_per_row_still_load(tokenizer, tmp_path):
    out, texts = tmp_path / "old", ["a red cat", "a dog", "a bird"]
    length = tokenizer.config.schedule.total_tokens
    tokens = torch.arange(3 * length, dtype=torch.int16).reshape(3, length) % 64
    out.mkdir()
    save_file({"tokens": tokens}, str(out / shard_name(0)), metadata={"captions": json.dumps(texts)})
    write_manifest(tokenizer, 3, out, 50_000, condition="text")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    del manifest["left_out"]  # as an older version wrote it
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    shards = TokenShardDataset(out, tokenizer)
    for epoch in (0, 7):
        shards.set_epoch(epoch)
        assert [shards[index][1] for index in range(3)] == texts
    assert shards.captions_of(1) == ("a dog",)
    assert torch.equal(shards[2][0], tokens[2].long())


def test_tokenize_leaves_a_truncated_image_out_and_names_it(tokenizer, tmp_path, caplog, capsys):
    manifest = _caption_manifest(tmp_path / "data", CAPTIONS, truncated=(2,))
    save_component(tokenizer, tmp_path / "tokenizer")
    out = tmp_path / "tokens"
    argv = ["tokenize", "--tokenizer", str(tmp_path / "tokenizer"), "--data", f"captions:{manifest}"]
    argv += ["--split", "all", "--out", str(out), "--shard-size", "2", "--batch-size", "3", "--no-progress"]
    with caplog.at_level(logging.INFO, logger="nextscale"):
        assert main(argv) == 0
    truncated = str(tmp_path / "data" / "images" / "2.png")
    assert f"wrote 4 token sequences of {tokenizer.config.schedule.total_tokens} tokens" in capsys.readouterr().out
    lines = [record.getMessage() for record in caplog.records if "left out" in record.getMessage()]
    assert lines == [f"left out 1 image that could not be decoded: {truncated}"]

    manifest_json = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest_json["count"] == 4 and manifest_json["left_out"] == [truncated]
    assert [shard["count"] for shard in manifest_json["shards"]] == [2, 1, 1]  # shard 1 lost its image 2
    shards = TokenShardDataset(out, tokenizer)
    kept = [0, 1, 3, 4]
    assert [shards.captions_of(index) for index in range(len(shards))] == [tuple(CAPTIONS[i]) for i in kept]
    data = CaptionManifestDataset(manifest, SIZE)
    expected = tokenizer.tokens_from_indices(tokenizer.encode(torch.stack([data.read(i)[0] for i in kept])))
    tokens = torch.stack([shards[index][0] for index in range(len(shards))])
    assert torch.equal(tokens, expected)  # each readable image once, in order: no stand-in for image 2
    assert len({tuple(row.tolist()) for row in tokens}) == 4  # and no row repeats another


def _image_folder(root: Path, truncated: tuple[str, ...]) -> Path:
    for seed, name in enumerate(("a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png")):
        _write_png(root / name, seed, truncate=name in truncated)
    return root


def test_image_folder_shards_leave_truncated_files_out_across_ranks(tokenizer, tmp_path):
    root = _image_folder(tmp_path / "images", truncated=("a/1.png", "a/2.png", "b/0.png"))
    data = ImageFolderDataset(root, SIZE, train=False, bad_images="skip")
    out = tmp_path / "tokens"
    for rank in (0, 1):  # two ranks, shards of 2: rank 0 writes shards 0 and 2, rank 1 shard 1 (a/2, b/0: both bad)
        write_token_shards(tokenizer, data, out, batch_size=4, shard_size=2, rank=rank, world_size=2)
    write_manifest(tokenizer, len(data), out, 2, class_names=data.classes)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["left_out"] == [str(root / name) for name in ("a/1.png", "a/2.png", "b/0.png")]
    assert manifest["shards"] == [{"file": shard_name(0), "count": 1}, {"file": shard_name(2), "count": 2}]
    shards = TokenShardDataset(out, tokenizer)
    assert len(shards) == 3 and [shards[index][1] for index in range(3)] == [0, 1, 1]  # a/0, b/1, b/2
    expected = tokenizer.tokens_from_indices(tokenizer.encode(torch.stack([data.read(i)[0] for i in (0, 4, 5)])))
    assert torch.equal(torch.stack([shards[index][0] for index in range(3)]), expected)
    assert data.skip_counts() == {"truncated": 3}

    with pytest.raises(BadImageError, match=r"a/1\.png \(truncated"):  # --bad-images fail stops at the file
        write_token_shards(tokenizer, data, tmp_path / "strict", shard_size=2, skip_unreadable=False)


def test_the_manifest_refuses_a_shard_from_another_run(tokenizer, tmp_path):
    data = CaptionManifestDataset(_caption_manifest(tmp_path / "data", CAPTIONS), SIZE)
    write_token_shards(tokenizer, data, tmp_path / "tokens", shard_size=4)
    with pytest.raises(ValueError, match="its share of the data is 2 images: it is from another run"):
        write_manifest(tokenizer, 6, tmp_path / "tokens", 4, condition="text")
