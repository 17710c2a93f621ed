"""`evaluate --loss` says what it measured: a token folder tokenized from the training split (or the very folder the
run trained on) is reported as training-split loss with a warning naming the fix, a held-out folder's report is as
before, and tokens whose classes the model numbers otherwise are refused as `train --eval-tokens` refuses them."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.pretrained import atomic_write_text, config_to_dict, save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.checkpoint import checkpoint_path, save_checkpoint
from nextscale.training.transformer_trainer import TOKENIZER_DIR
from nextscale.transformer.model import ScaleTransformer

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture(scope="module")
def run_and_tokens(tmp_path_factory):
    """(a tiny transformer run that records it trained on `train-tokens`, {name: token folder}): the train split,
    the test split, and 6-class tokens of other data."""
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.token_manifest import write_manifest
    from nextscale.data.token_shards import write_token_shards

    root = tmp_path_factory.mktemp("split-honesty")
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, in_channels=1)).eval()
    images = FashionMNIST(ASSETS, "test", 16, 1)
    low_labels = [index for index in range(len(images)) if images[index][1] < 6][:4]  # valid 6-class labels too
    subset = torch.utils.data.Subset(images, low_labels)
    folders = {}
    for name, split, classes in (
        ("train-tokens", "train", images.classes),
        ("test-tokens", "test", images.classes),
        ("shapes-tokens", "val", [f"shape{index}" for index in range(6)]),
    ):
        folders[name] = root / name
        write_token_shards(tokenizer, subset, folders[name], batch_size=4)
        write_manifest(tokenizer, len(subset), folders[name], 50_000, class_names=classes, split=split)
    run = root / "run"
    save_component(tokenizer, run / TOKENIZER_DIR)
    run_config = {
        "kind": "transformer",
        "transformer": config_to_dict(transformer_config),
        "tokens": str(folders["train-tokens"]),
        "class_names": list(images.classes),
    }
    atomic_write_text(run / "config.json", json.dumps(run_config))
    weights = ScaleTransformer(transformer_config).state_dict()
    save_checkpoint(checkpoint_path(run, 2), {"step": 2, "models": {"model": weights}, "ema": None})
    return run, folders


def evaluate_loss(model: Path, tokens: Path, out: Path) -> dict:
    argv = ["evaluate", "--loss", "--model", str(model), "--tokens", str(tokens), "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_train_split_tokens_are_reported_as_training_loss_with_a_warning(run_and_tokens, tmp_path, capsys):
    run, folders = run_and_tokens
    report = evaluate_loss(run, folders["train-tokens"], tmp_path / "report.json")
    assert report["measured"] == "training-split loss"
    (warning,) = report["warnings"]
    assert '"split": "train"' in warning and "the tokens this run trained on" in warning
    assert "--split test" in warning
    assert "warning: " + warning in capsys.readouterr().err


def test_the_folder_the_run_trained_on_is_training_loss_even_without_a_recorded_split(run_and_tokens, tmp_path):
    run, folders = run_and_tokens
    unsplit = tmp_path / "unsplit"  # the run's config names this folder; its manifest records no split
    manifest = json.loads((folders["test-tokens"] / "manifest.json").read_text())
    manifest.pop("split")
    unsplit.mkdir()
    for shard in folders["test-tokens"].glob("shard-*"):
        (unsplit / shard.name).write_bytes(shard.read_bytes())
    (unsplit / "manifest.json").write_text(json.dumps(manifest))
    config = json.loads((run / "config.json").read_text())
    other_run = tmp_path / "run"
    other_run.mkdir()
    for item in run.iterdir():
        (other_run / item.name).symlink_to(item)
    (other_run / "config.json").unlink()
    (other_run / "config.json").write_text(json.dumps({**config, "tokens": str(unsplit)}))
    report = evaluate_loss(other_run, unsplit, tmp_path / "report.json")
    assert report["measured"] == "training-split loss"
    assert "it is the --tokens this run trained on" in report["warnings"][0]


def test_a_held_out_folder_is_reported_as_before(run_and_tokens, tmp_path, capsys):
    run, folders = run_and_tokens
    report = evaluate_loss(run, folders["test-tokens"], tmp_path / "report.json")
    assert report["measured"] == "held-out test loss"
    assert report["warnings"] == []
    assert "warning:" not in capsys.readouterr().err


def test_tokens_of_other_classes_are_refused_in_one_line(run_and_tokens, tmp_path, capsys):
    run, folders = run_and_tokens
    argv = ["evaluate", "--loss", "--model", str(run), "--tokens", str(folders["shapes-tokens"]), "--no-progress"]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "numbers its labels differently" in err and "classes only in one of them" in err
    assert "Traceback" not in err
