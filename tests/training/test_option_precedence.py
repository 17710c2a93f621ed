"""One precedence rule for every training option: command line > run file > default."""

import importlib
import json
import shlex

import pytest
from training_helpers import tiny_data, train_tokenizer_error

from nextscale.cli import build_parser
from nextscale.cli.train import fit_num_classes
from nextscale.training.options import apply_run_file

# (command, run-file args, typed flags, dest, expected value)
CASES = [
    # typed values win, also when they equal the default or are 'none'
    ("train-tokenizer", {"lr-schedule": "cos"}, "--lr-schedule constant", "lr_schedule", "constant"),
    ("train-tokenizer", {"disc-start": 15}, "--disc-start none", "disc_start", None),
    ("train-tokenizer", {"batch-size": 16}, "--batch-size 64", "batch_size", 64),
    ("train-tokenizer", {"seed": 3}, "--seed 0", "seed", 0),
    ("train-tokenizer", {"lr": 0.002}, "--lr 0.0001", "lr", 1e-4),
    ("train-tokenizer", {"betas": [0.9, 0.99]}, "--betas 0.5 0.9", "betas", [0.5, 0.9]),
    ("train-tokenizer", {"preset": "tiny"}, "--preset var-d16", "preset", "var-d16"),
    ("train-tokenizer", {"ema-decay": 0.5}, "--ema-decay none", "ema_decay", None),
    ("train-tokenizer", {"eval-every": 30}, "--eval-every none", "eval_every", None),
    ("train-tokenizer", {"grad-clip": 1.0}, "--grad-clip none", "grad_clip", None),
    ("train-tokenizer", {"perceptual": "none"}, "--perceptual ssim", "perceptual", "ssim"),
    ("train", {"label-smoothing": 0.1}, "--label-smoothing 0.0", "label_smoothing", 0.0),
    ("train", {"init-std": 0.02}, "--init-std none", "init_std", None),
    ("train", {"lr-schedule": "cos"}, "--lr-schedule lin0", "lr_schedule", "lin0"),
    ("train", {"batch-size": 64}, "--batch-size 768", "batch_size", 768),
    ("train", {"num-classes": 7}, "--num-classes 10", "num_classes", 10),
    # not typed: the run file's value (strings parse like the flag would)
    ("train-tokenizer", {"disc-start": 15}, "", "disc_start", 15),
    ("train-tokenizer", {"disc-start": "none"}, "", "disc_start", None),
    ("train-tokenizer", {"scale-sides": "1,2,4"}, "", "scale_sides", (1, 2, 4)),
    ("train-tokenizer", {"scale-sides": [1, 2, 4]}, "", "scale_sides", (1, 2, 4)),
    ("train-tokenizer", {"compile": True}, "", "compile", True),
    ("train-tokenizer", {"weight-decay": 0.1}, "", "weight_decay", 0.1),
    ("train", {"progressive": 0.5}, "", "progressive", 0.5),
    ("train", {"num-classes": 7}, "", "num_classes", 7),
    # neither: the default
    ("train-tokenizer", {}, "", "lr_schedule", "constant"),
    ("train", {}, "", "lr_schedule", "lin0"),
    ("train", {}, "", "num_classes", None),  # later inferred from the data
    # data typed on the command line replaces the file's data source and what follows from it
    ("train", {"data": "fashion-mnist", "num-classes": 7}, "--tokens t", "data", None),
    ("train", {"data": "fashion-mnist", "num-classes": 7}, "--tokens t", "num_classes", None),
    ("train", {"tokens": "a", "eval-tokens": "b"}, "--data fashion-mnist", "eval_tokens", None),
    ("train", {"tokens": "a", "eval-tokens": "b"}, "--tokenizer tok", "eval_tokens", "b"),
    ("train-tokenizer", {"data": "fashion-mnist", "in-channels": 1}, "--data imgs", "in_channels", None),
    ("train-tokenizer", {"preset": "tiny", "vocab-size": 64}, "--init-from tok", "vocab_size", None),
    ("train-tokenizer", {"preset": "tiny"}, "--init-from tok", "preset", "var-d16"),
]


@pytest.mark.parametrize(("command", "file_args", "typed", "dest", "expected"), CASES)
def test_command_line_beats_run_file_beats_default(tmp_path, command, file_args, typed, dest, expected):
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"args": file_args}))
    args = build_parser().parse_args([command, "--config", str(run_file), *shlex.split(typed)])
    module = importlib.import_module(f"nextscale.cli.{command.replace('-', '_')}")
    apply_run_file(args, module.RUN_FILE_SOURCES)
    assert getattr(args, dest) == expected


@pytest.mark.parametrize("command", ["train", "train-tokenizer"])
def test_help_states_the_rule(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "option precedence, the same for every option" in capsys.readouterr().out


def test_class_count_follows_the_data():
    train_set, _ = tiny_data()
    assert fit_num_classes(None, train_set, "fashion-mnist") == 10
    assert fit_num_classes(10, train_set, "fashion-mnist") == 10
    with pytest.raises(ValueError, match="--num-classes 7 contradicts the training data: fashion-mnist has 10"):
        fit_num_classes(7, train_set, "fashion-mnist")


def test_image_folder_channels_are_inferred_from_the_files(tmp_path):
    from PIL import Image

    from nextscale.training.data_specs import data_channels

    for mode, folder in (("L", "gray"), ("RGB", "colour")):
        for name in ("a", "b"):
            (tmp_path / folder / name).mkdir(parents=True)
            Image.new(mode, (8, 8)).save(tmp_path / folder / name / "0.png")
    Image.new("L", (8, 8)).save(tmp_path / "colour" / "a" / "1.png")  # one colour image makes the folder RGB
    assert data_channels(str(tmp_path / "gray")) == 1
    assert data_channels(str(tmp_path / "colour")) == 3
    assert data_channels("fashion-mnist") == 1
    assert data_channels(f"captions:{tmp_path / 'gray'}") is None  # not a folder spec: the preset decides


@pytest.mark.parametrize(
    ("file_args", "typed", "refused"),
    [
        ({}, "--perceptual none --perceptual-weight 0.5", True),  # the weight would be ignored
        ({}, "--perceptual none --perceptual-weight 1.0", True),  # typed, also when it equals the default
        ({"perceptual-weight": 0.5}, "", False),  # with the default --perceptual ssim
        ({"perceptual": "none", "perceptual-weight": 0.5}, "", True),  # the run file contradicts itself
        ({"perceptual": "none"}, "--perceptual-weight 0.5", True),
        ({"perceptual-weight": 0.5}, "--perceptual none", False),  # the command line overrides the file's term
        ({}, "--perceptual none", False),
    ],
)
def test_a_perceptual_weight_that_perceptual_none_would_ignore_is_refused(tmp_path, capsys, file_args, typed, refused):
    err, run_dir = train_tokenizer_error(tmp_path, capsys, file_args, typed)
    assert ("--perceptual-weight" in err and "--perceptual none" in err) is refused, err
    # an accepted one got as far as reading the (missing) data, and removed the run directory it had made
    assert ("missing" in err) is not refused, err
    assert not run_dir.exists()
