"""A damaged token folder is refused when it opens, naming the shard, the problem and the fix, before any training."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from nextscale.cli import error_text, main
from nextscale.data.token_dataset import TokenShardDataset
from nextscale.data.token_manifest import MANIFEST_NAME, shard_name, write_manifest
from nextscale.data.token_shards import write_token_shards
from nextscale.presets import tiny
from nextscale.pretrained import save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE

CLASSES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def tokenizer() -> MultiScaleVQVAE:
    torch.manual_seed(0)
    return MultiScaleVQVAE(tiny()[0]).eval()


@pytest.fixture
def tokens(tokenizer, tmp_path) -> Path:
    """A good 6-row class folder in shards of 4 and 2 rows."""
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    dataset = [(images[index], index % 3) for index in range(6)]
    out = tmp_path / "tokens"
    write_token_shards(tokenizer, dataset, out, batch_size=4, shard_size=4)
    write_manifest(tokenizer, len(dataset), out, 4, class_names=CLASSES)
    return out


def _resave(path: Path, **changes: torch.Tensor) -> None:
    """Rewrite one shard with some tensors replaced, keeping its metadata."""
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    save_file({**tensors, **changes}, str(path), metadata=metadata)


def test_a_good_folder_opens(tokens, tokenizer):
    assert len(TokenShardDataset(tokens, tokenizer)) == 6


def test_a_truncated_shard_is_named_when_the_folder_opens(tokens):
    path = tokens / shard_name(1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"shard-00001.safetensors: not a readable safetensors file .*--overwrite"):
        TokenShardDataset(tokens)


def test_a_manifest_count_larger_than_the_shard_is_refused(tokens):
    manifest = json.loads((tokens / MANIFEST_NAME).read_text())
    manifest["shards"][0]["count"] = 9
    manifest["count"] = 11
    (tokens / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"shard-00000.safetensors: it holds 4 rows, but manifest.json says 9"):
        TokenShardDataset(tokens)


def test_rows_of_another_length_than_the_schedule_are_refused(tokens):
    path = tokens / shard_name(0)
    with safe_open(str(path), framework="pt") as handle:
        short = handle.get_tensor("tokens")[:, :5].contiguous()
    _resave(path, tokens=short)
    with pytest.raises(ValueError, match=r"shape \[4, 5\], but the manifest's scales \[1, 2, 4\] make rows of 21"):
        TokenShardDataset(tokens)


def test_a_token_id_outside_the_vocabulary_is_named_with_its_shard(tokens, tokenizer):
    path = tokens / shard_name(1)
    with safe_open(str(path), framework="pt") as handle:
        bad = handle.get_tensor("tokens").clone()
    bad[1, 5] = 9999
    _resave(path, tokens=bad)
    vocab = tokenizer.config.vocab_size
    message = rf"shard-00001.safetensors: row 1 holds token id 9999 \(position 5\), but .* is 0..{vocab - 1};"
    with pytest.raises(ValueError, match=message + r".*nextscale tokenize --overwrite"):
        TokenShardDataset(tokens)


def test_a_label_outside_the_classes_is_named_with_its_shard(tokens):
    _resave(tokens / shard_name(0), labels=torch.tensor([0, 1, 57, 2]))
    message = r"shard-00000.safetensors: row 2 has class label 57, but labels must be 0..2 \(the 3 classes"
    with pytest.raises(ValueError, match=message):
        TokenShardDataset(tokens)


@pytest.mark.parametrize(
    ("captions", "message"),
    [
        ('[["a"', "its captions are not valid JSON"),
        ('[["a"], ["b"]]', "its captions are not one non-empty list of strings for each of its 4 rows"),
        ('[["a"], [], ["c"], ["d"]]', "its captions are not one non-empty list of strings"),
    ],
)
def test_broken_captions_are_refused_when_the_folder_opens(tokenizer, tmp_path, captions, message):
    """Not on the first read of that shard, deep in a DataLoader worker, as a bare JSONDecodeError."""
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    out = tmp_path / "tokens"
    write_token_shards(tokenizer, [(images[i], (f"caption {i}",)) for i in range(6)], out, batch_size=4, shard_size=4)
    write_manifest(tokenizer, 6, out, 4, condition="text")
    path = out / shard_name(0)
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = {**handle.metadata(), "captions": captions}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=rf"shard-00000.safetensors: {re.escape(message)}.*--overwrite"):
        TokenShardDataset(out)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda manifest: manifest.pop("total_tokens"), "lacks total_tokens"),
        (lambda manifest: manifest["shards"][0].pop("count"), 'lacks "file" and "count" of every "shards" entry'),
    ],
)
def test_a_manifest_without_what_readers_need_is_one_clear_error(tokens, edit, message):
    manifest = json.loads((tokens / MANIFEST_NAME).read_text())
    edit(manifest)
    (tokens / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=rf"manifest.json {re.escape(message)}.*re-run `nextscale tokenize`"):
        TokenShardDataset(tokens)
    (tokens / MANIFEST_NAME).write_text("[]")
    with pytest.raises(ValueError, match="holds a JSON list, not a token manifest"):
        TokenShardDataset(tokens)


def test_the_cli_reports_a_damaged_folder_on_one_line_before_training(tokens, tokenizer, tmp_path, capsys):
    _resave(tokens / shard_name(0), labels=torch.tensor([0, 1, -3, 2]))
    save_component(tokenizer, tmp_path / "tokenizer")
    argv = ["train", "--preset", "tiny", "--tokenizer", str(tmp_path / "tokenizer"), "--tokens", str(tokens)]
    argv += ["--steps", "2", "--batch-size", "2", "--num-workers", "1", "--no-progress", "--run-dir"]
    assert main([*argv, str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "row 2 has class label -3" in err and "shard-00000.safetensors" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


class _Broken(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise ValueError("data/x.safetensors: row 1 is broken; re-tokenize")


def test_an_error_from_a_dataloader_worker_is_its_own_message():
    with pytest.raises(ValueError) as caught:
        next(iter(DataLoader(_Broken(), num_workers=1)))
    assert "Traceback" in str(caught.value)  # what torch re-raises
    assert error_text(caught.value) == "data/x.safetensors: row 1 is broken; re-tokenize"
