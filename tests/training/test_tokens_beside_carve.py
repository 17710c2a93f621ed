"""``train --tokens T --data captions:DIR``: the held-out split carved from DIR must not be in T. Tokens of all of
DIR (--split all, or made before captioned data gave up a split) are refused; the training side passes."""

import json

import pytest
import torch
from PIL import Image

from nextscale.data.token_manifest import write_manifest
from nextscale.data.token_shards import write_token_shards
from nextscale.presets import tiny
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.data_specs import build_datasets, check_tokens_beside_carve


def caption_folder(root):
    root.mkdir()
    for index in range(30):
        Image.new("RGB", (8, 8), (index * 8, 0, 0)).save(root / f"{index:02d}.png")
        (root / f"{index:02d}.txt").write_text(f"square {index}")
    return f"captions:{root}"


def token_folder(path, source: str, count: int, views: int = 1):
    path.mkdir()
    # "count" is images: with views, each row holds (views, L) tokens (write_manifest counts shard rows).
    manifest = {"format": 1, "count": count, "total_tokens": 1, "scale_sides": [1], "vocab_size": 2}
    manifest.update(shards=[{"file": "shard-00000.safetensors", "count": count}], tokenizer={}, left_out=[])
    manifest.update(source=source, condition="text", **({"views": views} if views > 1 else {}))
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_tokens_of_all_the_captions_are_refused_beside_their_carved_split(tmp_path):
    data = caption_folder(tmp_path / "captions")
    train, held_out = build_datasets(data, 8, 3)
    side = len(train)
    check_tokens_beside_carve(token_folder(tmp_path / "train", data, side, views=3), data, side, held_out)
    check_tokens_beside_carve(token_folder(tmp_path / "val", f"{data}:val", 30 - side), data, side, held_out)
    check_tokens_beside_carve(token_folder(tmp_path / "other", "captions:elsewhere:all", 30), data, side, held_out)
    for name, source in (("all", f"{data}:all"), ("old", data)):  # --split all; the default before the split
        with pytest.raises(ValueError, match=r"holds every image of .* tokenize it again with --split train"):
            check_tokens_beside_carve(token_folder(tmp_path / name, source, 30), data, side, held_out)
    check_tokens_beside_carve(tmp_path / "all", data, 30, None)  # a run resumed without the carve: nothing held out


class FixedTokenizer(MultiScaleVQVAE):
    def encode(self, images):
        return [torch.zeros(len(images), side * side, dtype=torch.long) for side in self.config.scale_sides]


def test_tokens_of_all_the_images_in_several_views_are_refused(tmp_path):
    # The manifest's "count" is images (its shards hold (n, N, L)): dividing it by N hid the overlap.
    data = caption_folder(tmp_path / "captions")
    train, held_out = build_datasets(data, 8, 3)
    whole, _ = build_datasets(data, 8, 3, carve_captions=False)  # as tokenized before captioned data was split
    tokenizer = FixedTokenizer(tiny()[0])
    out = tmp_path / "tokens"
    write_token_shards(tokenizer, whole, out, batch_size=16, shard_size=64, views=2)
    write_manifest(tokenizer, len(whole), out, 64, source=data, condition="text", views=2)
    with pytest.raises(ValueError, match="holds every image of"):
        check_tokens_beside_carve(out, data, len(train), held_out)
