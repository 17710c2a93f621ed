"""The training commands end to end on the tiny run files, and their user errors."""

import argparse
import importlib
import json
from pathlib import Path

import pytest
import torch

from conftest import read_metrics
from nextscale.sampling.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[2]


def run_command(name: str, *argv: str) -> int:
    module = importlib.import_module(f"nextscale.cli.{name}")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args([str(a) for a in argv]))


def test_train_tokenize_train_export_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the run files name the bundled test assets relative to the repository
    tok_run, var_run = tmp_path / "tok", tmp_path / "var"
    assert (
        run_command(
            "train_tokenizer",
            "--config",
            "configs/tiny_tokenizer.json",
            "--run-dir",
            tok_run,
            "--steps",
            8,
            "--disc-start",
            4,
            "--no-progress",
        )
        == 0
    )
    assert read_metrics(tok_run)[-1]["step"] == 8
    assert (
        run_command(
            "tokenize",
            "--tokenizer",
            tok_run,
            "--data",
            "fashion-mnist:tests/assets/fashion_mnist",
            "--out",
            tmp_path / "tokens",
            "--no-progress",
        )
        == 0
    )
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert manifest["count"] == 200 and manifest["total_tokens"] == 21 and manifest["dtype"] == "int16"
    assert (
        run_command(
            "train",
            "--config",
            "configs/tiny_transformer.json",
            "--tokenizer",
            tok_run,
            "--tokens",
            tmp_path / "tokens",
            "--run-dir",
            var_run,
            "--steps",
            6,
            "--max-steps",
            4,
            "--log-every",
            1,
            "--no-progress",
        )
        == 0
    )
    assert read_metrics(var_run)[-1]["step"] == 4
    # the same command resumes and finishes
    assert (
        run_command(
            "train",
            "--config",
            "configs/tiny_transformer.json",
            "--tokenizer",
            tok_run,
            "--tokens",
            tmp_path / "tokens",
            "--run-dir",
            var_run,
            "--steps",
            6,
            "--log-every",
            1,
            "--no-progress",
        )
        == 0
    )
    assert [r["step"] for r in read_metrics(var_run)] == [1, 2, 3, 4, 5, 6]
    assert run_command("export", "--run", var_run, "--out", tmp_path / "pipe") == 0
    out = Pipeline.from_pretrained(tmp_path / "pipe")(class_labels=[1, 2], seed=0, output_type="pt")
    assert out.images.shape == (2, 1, 16, 16) and out.tokens.dtype == torch.int64


def test_missing_data_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data folder .*missing-images does not exist"):
        run_command(
            "train_tokenizer",
            "--preset",
            "tiny",
            "--data",
            tmp_path / "missing-images",
            "--run-dir",
            tmp_path / "run",
            "--steps",
            1,
        )
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST folder"):
        run_command(
            "train_tokenizer",
            "--preset",
            "tiny",
            "--data",
            f"fashion-mnist:{tmp_path / 'nothing'}",
            "--run-dir",
            tmp_path / "run",
            "--steps",
            1,
        )


def test_run_file_errors_and_required_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"args": {"learning-rate": 0.1}}))
    with pytest.raises(ValueError, match="unknown flag 'learning-rate'"):
        run_command("train_tokenizer", "--config", bad, "--run-dir", tmp_path / "run")
    with pytest.raises(ValueError, match="--steps N or --epochs E"):
        run_command(
            "train_tokenizer",
            "--preset",
            "tiny",
            "--in-channels",
            "1",
            "--data",
            "fashion-mnist:tests/assets/fashion_mnist",
            "--run-dir",
            tmp_path / "run",
        )
    with pytest.raises(ValueError, match="--run-dir and --tokenizer are required"):
        run_command("train", "--data", "fashion-mnist")
