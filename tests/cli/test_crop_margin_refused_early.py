"""`check_crop_margin` gives run_crop_margin's refusals without changing anything, so that train-tokenizer and train
can refuse --crop-margin before the run directory is made (was: an empty run folder with a .lock left behind)."""

import argparse
import json

import pytest

from nextscale.training.checkpoint import checkpoint_path
from nextscale.training.crop_margin import check_crop_margin, run_crop_margin


def test_a_margin_for_fashion_mnist_is_refused_and_nothing_is_written(tmp_path):
    run_dir = tmp_path / "run"
    args = argparse.Namespace(crop_margin=1.2, data="fashion-mnist", run_dir=str(run_dir))
    with pytest.raises(ValueError, match="Fashion-MNIST images are resized whole"):
        check_crop_margin(args)
    assert not run_dir.exists()


def test_another_margin_than_a_resumed_runs_is_refused_and_the_check_changes_no_flag(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"data": "images", "crop_margin": 1.0}))
    checkpoint_path(run_dir, 1).parent.mkdir()
    checkpoint_path(run_dir, 1).write_bytes(b"listed by name only")
    with pytest.raises(ValueError, match="trained with crop margin 1"):
        check_crop_margin(argparse.Namespace(crop_margin=1.125, data="images", run_dir=str(run_dir)))
    args = argparse.Namespace(crop_margin=None, data="images", run_dir=str(run_dir))
    check_crop_margin(args)
    assert args.crop_margin is None  # only run_crop_margin settles the flag
    assert run_crop_margin(args) == {"crop_margin": 1.0} and args.crop_margin == 1.0
