"""`tokenize --tokenizer RUN` crops with the margin the tokenizer run trained with (its config.json) for data of the
kind it trained on, saying so; a typed --crop-margin that differs is used, with a one-line warning."""

import json
import logging

from nextscale.cli import main
from nextscale.training.checkpoint import checkpoint_path
from nextscale.training.crop_margin import tokenize_crop_margin
from tiny_folders import class_folder


def tokenizer_run(run_dir, data: str, margin: float):
    """A run directory as train-tokenizer leaves it, for what the margin rules read: config.json and a checkpoint."""
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"kind": "tokenizer", "data": data, "crop_margin": margin}))
    checkpoint_path(run_dir, 1).parent.mkdir()
    checkpoint_path(run_dir, 1).write_bytes(b"listed by name only")
    return run_dir


def test_the_run_margin_is_the_default_for_data_of_its_kind(tmp_path):
    run = tokenizer_run(tmp_path / "tok", "images/a", 1.0)
    margin, note = tokenize_crop_margin("images/b", None, run)
    assert margin == 1.0 and "trained with (its config.json)" in note
    # another kind of data keeps its own default: a folder's crops say nothing about the positions captions name
    assert tokenize_crop_margin("captions:data/scenes", None, run) == (1.0, "")
    captions_run = tokenizer_run(tmp_path / "captions", "captions:data/scenes", 1.25)
    assert tokenize_crop_margin("images/b", None, captions_run) == (1.125, "")
    # a typed margin wins, with a warning when it is not the run's
    margin, note = tokenize_crop_margin("images/b", 1.125, run)
    assert margin == 1.125 and "was trained with crop margin 1" in note
    assert tokenize_crop_margin("images/b", 1.0, run) == (1.0, "")


def test_tokenize_takes_a_trained_runs_margin_and_warns_about_another(tmp_path, caplog):
    data = class_folder(tmp_path / "classes")
    run_dir = tmp_path / "tok"
    argv = f"train-tokenizer --data {data} --preset tiny --resolution 16 --steps 1 --batch-size 2 --run-dir {run_dir}"
    argv += " --no-progress --eval-every none --preview-every none --perceptual none --device cpu --crop-margin 1.0"
    assert main(argv.split()) == 0
    tokenize = ["tokenize", "--tokenizer", str(run_dir), "--data", str(data), "--split", "all", "--no-progress"]
    with caplog.at_level(logging.INFO, logger="nextscale.data"):
        assert main([*tokenize, "--out", str(tmp_path / "own")]) == 0
    assert json.loads((tmp_path / "own" / "manifest.json").read_text())["crop_margin"] == 1.0  # was 1.125
    assert any("crop margin 1, which the tokenizer run" in record.message for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nextscale.data"):
        assert main([*tokenize, "--out", str(tmp_path / "other"), "--crop-margin", "1.125"]) == 0
    assert json.loads((tmp_path / "other" / "manifest.json").read_text())["crop_margin"] == 1.125
    (warning,) = [
        record for record in caplog.records if record.levelno == logging.WARNING and "margin" in record.message
    ]
    assert "\n" not in warning.message and "trained with crop margin 1 (its config.json)" in warning.message
