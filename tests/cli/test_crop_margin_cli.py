"""`--crop-margin` end to end: `tokenize` records it in manifest.json (today's default when not given), and a
`train-tokenizer` run records it in config.json, keeps it when resumed without the flag and refuses another."""

import json

import pytest

from nextscale.cli import main
from tiny_folders import class_folder


def tokenize(pipeline, data, out, *extra: str) -> int:
    argv = ["tokenize", "--tokenizer", str(pipeline), "--data", str(data), "--out", str(out), "--no-progress"]
    return main([*argv, "--device", "cpu", *extra])


def test_tokenize_records_the_margin_in_the_manifest(tiny_pipeline_dir, tmp_path):
    data = class_folder(tmp_path / "classes")
    assert tokenize(tiny_pipeline_dir, data, tmp_path / "tight", "--split", "all", "--crop-margin", "1.0") == 0
    assert json.loads((tmp_path / "tight" / "manifest.json").read_text())["crop_margin"] == 1.0
    assert tokenize(tiny_pipeline_dir, data, tmp_path / "default", "--split", "all") == 0
    assert json.loads((tmp_path / "default" / "manifest.json").read_text())["crop_margin"] == 1.125


def test_tokenize_refuses_a_margin_for_fashion_mnist(tiny_pipeline_dir, tmp_path, capsys):
    assert tokenize(tiny_pipeline_dir, "fashion-mnist", tmp_path / "out", "--crop-margin", "1.0") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Fashion-MNIST images are resized whole" in error


def train_tokenizer(data, run_dir, *extra: str) -> int:
    argv = f"train-tokenizer --data {data} --preset tiny --resolution 16 --steps 1 --batch-size 2 --run-dir {run_dir}"
    argv += " --no-progress --eval-every none --preview-every none --perceptual none --device cpu"
    return main([*argv.split(), *extra])


class RecordingTrainer:
    """Stands in for ``TokenizerTrainer``: keeps what the command built, trains nothing."""

    built: list = []

    def __init__(self, tokenizer, losses, config, run_dir, train_set, eval_set, run_config, dist_info) -> None:
        RecordingTrainer.built.append((train_set, eval_set, run_config))


def test_a_tokenizer_run_crops_with_its_margin_records_it_and_refuses_another(tmp_path, monkeypatch, capsys):
    from nextscale.training import tokenizer_trainer
    from nextscale.training.checkpoint import checkpoint_path

    monkeypatch.setattr(tokenizer_trainer, "TokenizerTrainer", RecordingTrainer)
    monkeypatch.setattr("nextscale.training.options.fit_and_report", lambda *args: {})
    data = class_folder(tmp_path / "classes")
    assert train_tokenizer(data, tmp_path / "new", "--crop-margin", "1.0") == 0
    train_set, eval_set, run_config = RecordingTrainer.built[-1]
    assert train_set.transform.resize_side == eval_set.transform.resize_side == 16  # 1.0 x 16 px, not 18
    assert run_config["crop_margin"] == 1.0
    # A run that trained with 1.0 (config.json and a checkpoint): resumed without the flag it keeps 1.0 ...
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"data": str(data), "crop_margin": 1.0}))
    checkpoint_path(run_dir, 1).parent.mkdir()
    checkpoint_path(run_dir, 1).write_bytes(b"listed by name only")
    assert train_tokenizer(data, run_dir) == 0
    assert (
        RecordingTrainer.built[-1][0].transform.resize_side == 16
        and RecordingTrainer.built[-1][2]["crop_margin"] == 1.0
    )
    # ... and another margin is refused in one line.
    capsys.readouterr()
    assert train_tokenizer(data, run_dir, "--crop-margin", "1.125") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "trained with crop margin 1 (its config.json)" in error


class RecordingTransformerTrainer:
    """Stands in for ``TransformerTrainer``: keeps what the command built, trains nothing."""

    built: list = []
    step, last_held_out_loss = 0, None  # what the command reads after training, for its chance-loss note

    def __init__(self, transformer, tokenizer, objective, config, run_dir, train_set, eval_set, **options) -> None:
        RecordingTransformerTrainer.built.append((eval_set, options["run_config"]))


def test_train_on_tokens_crops_held_out_images_as_the_tokens_were(tiny_pipeline_dir, tmp_path, monkeypatch, capsys):
    from nextscale.training import transformer_trainer

    data = class_folder(tmp_path / "classes")
    assert tokenize(tiny_pipeline_dir, data, tmp_path / "tokens", "--split", "train", "--crop-margin", "1.0") == 0
    monkeypatch.setattr(transformer_trainer, "TransformerTrainer", RecordingTransformerTrainer)
    monkeypatch.setattr("nextscale.training.options.fit_and_report", lambda *args: {})
    argv = f"train --tokenizer {tiny_pipeline_dir} --tokens {tmp_path / 'tokens'} --data {data} --preset tiny"
    argv += f" --steps 1 --batch-size 2 --run-dir {tmp_path / 'run'} --no-progress --device cpu"
    assert main(argv.split()) == 0
    eval_set, run_config = RecordingTransformerTrainer.built[-1]
    assert eval_set.transform.resize_side == 16 and run_config["crop_margin"] == 1.0  # the folder's, not 1.125
    capsys.readouterr()
    assert main([*argv.split(), "--crop-margin", "1.125"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "was made with crop margin 1 (its manifest.json)" in error


@pytest.mark.parametrize("command", ["train-tokenizer", "train"])
def test_a_refused_margin_leaves_no_run_folder(tiny_pipeline_dir, tmp_path, capsys, command):
    run_dir = tmp_path / "run"
    argv = [command, "--data", "fashion-mnist", "--crop-margin", "1.2", "--run-dir", str(run_dir), "--device", "cpu"]
    if command == "train":
        argv += ["--tokenizer", str(tiny_pipeline_dir)]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Fashion-MNIST images are resized whole" in error
    assert not run_dir.exists()
