"""A new user's own folder through the training commands: --resolution, the data report, the carved held-out
split that tokenize --split val writes, and a quiet -v."""

import importlib.util
import json
import logging
from pathlib import Path

import pytest

from nextscale.cli import build_parser, main
from nextscale.data.folders import open_image_folder
from nextscale.training.options import apply_run_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """6 classes x 4 images at 64x64 (RGB), no val/ folder: one image of each class is held out."""
    spec = importlib.util.spec_from_file_location("make_shapes", REPO / "scripts" / "make_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("own") / "shapes"
    module.write_shapes(root, per_class=4, size=64)
    return root


@pytest.fixture(scope="module")
def tokenizer_run(shapes, tmp_path_factory) -> tuple[Path, list[str]]:
    """One step of train-tokenizer on the folder at --resolution 32, and the INFO lines it logged."""
    run_dir = tmp_path_factory.mktemp("runs") / "tok"
    records = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        argv = f"train-tokenizer --data {shapes} --preset tiny --resolution 32 --steps 1 --batch-size 4"
        argv += f" --run-dir {run_dir} --no-progress --eval-every none --preview-every none"
        assert main(argv.split()) == 0
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return run_dir, records


def test_train_tokenizer_reports_the_data_and_the_schedule(shapes, tokenizer_run):
    run_dir, lines = tokenizer_run
    text = "\n".join(lines)
    assert "data: 18 training images from" in text
    assert "6 classes (0: blue_circle, 1: blue_square, 2: green_circle, 3: green_square, 4: red_circle" in text
    assert f"checked 24 image files of {shapes}: all usable" in text  # the folder once, held-out split included
    assert "files: 64x64 RGB (sizes read from all 18 files)" in text
    held_out = [line for line in lines if line.startswith("held-out: ") or "no val/ folder" in line]
    assert held_out == [
        f"held-out: 6 of the 24 images of {shapes} (5 %, at least 1 per class, seed 0), carved out as it has no val/ "
        "folder"
    ]
    assert (
        "images 32x32 RGB -> tokens: scales 1,2,4,8 (85 tokens), from --resolution 32; your images are 64x64; "
        "training at 32x32 (--resolution 32) - pass --resolution 64 to keep them"
    ) in text
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tokenizer"]["scale_sides"] == [1, 2, 4, 8] and config["tokenizer"]["in_channels"] == 3


def test_tokenize_val_writes_the_carved_held_out_images(shapes, tokenizer_run, tmp_path, caplog):
    run_dir, _ = tokenizer_run
    caplog.set_level(logging.INFO)
    base = f"tokenize --tokenizer {run_dir} --data {shapes} --no-progress"
    assert main(f"{base} --split val --out {tmp_path / 'val'}".split()) == 0
    assert "data: 6 val images from" in caplog.text and "held-out: 6 of the 24 images" in caplog.text
    assert main(f"{base} --out {tmp_path / 'train'}".split()) == 0
    val = json.loads((tmp_path / "val" / "manifest.json").read_text())
    train = json.loads((tmp_path / "train" / "manifest.json").read_text())
    held_out = open_image_folder(shapes, 32, 3, split="val")[0]
    assert val["count"] == len(held_out) == 6 and train["count"] == 18  # disjoint sides of the 24 images
    assert val["source"].endswith(":val") and val["total_tokens"] == 85


def test_tokenize_refuses_a_val_split_that_does_not_exist(tmp_path, tokenizer_run, capsys):
    run_dir, _ = tokenizer_run
    root = tmp_path / "one_each"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "x.png").write_bytes(
            (REPO / "tests" / "assets" / "image_folder" / "bag" / "000.png").read_bytes()
        )
    argv = f"tokenize --tokenizer {run_dir} --data {root} --split val --out {tmp_path / 'v'} --no-progress"
    assert main(argv.split()) == 2
    assert "too few usable images per class to hold any out" in capsys.readouterr().err
    (root / "a" / "x.txt").write_text("a bag")  # one image-caption pair: nothing to hold out
    argv = f"tokenize --tokenizer {run_dir} --data captions:{root} --split val --out {tmp_path / 'c'}"
    assert main(argv.split()) == 2
    assert "too few usable image-caption pairs to hold any out (2 or more are needed)" in capsys.readouterr().err
    assert not (tmp_path / "v").exists() and not (tmp_path / "c").exists()


def test_resolution_errors_name_the_fix(shapes, tokenizer_run, tmp_path, capsys):
    run_dir, _ = tokenizer_run
    base = f"tokenize --tokenizer {run_dir} --data {shapes} --out {tmp_path / 't'}"
    assert main(f"{base} --resolution 30".split()) == 2
    assert (
        "not a multiple of the tokenizer's downsampling factor 4; pass e.g. --resolution 32" in capsys.readouterr().err
    )
    assert main(f"{base} --resolution 64 --scale-sides 1,2,4".split()) == 2
    assert (
        "--scale-sides 1,2,4 make 16 px images with this tokenizer, but --resolution is 64" in capsys.readouterr().err
    )


def test_images_all_too_small_for_the_resolution_are_named_as_such(shapes, tmp_path, capsys):
    argv = f"train-tokenizer --preset tiny --data {shapes} --resolution 1024 --steps 2 --batch-size 4 --no-progress"
    assert main([*argv.split(), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"none of the 24 image files of --data {shapes} can be used (24 tiny): each has a shorter side under" in err
    assert "128 px, too small for 1024 px training; lower --resolution" in err and "0 samples" not in err


def test_train_reports_resolution_from_the_tokenizer_or_the_flag(shapes, tokenizer_run, tmp_path, caplog):
    run_dir, _ = tokenizer_run
    caplog.set_level(logging.INFO)
    argv = f"train --tokenizer {run_dir} --data {shapes} --preset tiny --steps 1 --batch-size 4 --resolution 64"
    argv += f" --run-dir {tmp_path / 'var'} --no-progress --eval-every none --preview-every none"
    assert main(argv.split()) == 0
    assert "images 64x64 RGB -> tokens: scales 1,2,4,8,16 (341 tokens), from --resolution 64" in caplog.text
    assert "your images are" not in caplog.text and "held-out: 6 of the 24 images" in caplog.text
    config = json.loads((tmp_path / "var" / "config.json").read_text())
    assert config["transformer"]["scale_sides"] == [1, 2, 4, 8, 16] and config["transformer"]["num_classes"] == 6


def test_typed_resolution_replaces_the_run_files_scale_sides(tmp_path):
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"args": {"scale-sides": "1,2,4", "preset": "tiny"}}))
    parser = build_parser()
    args = parser.parse_args(["train-tokenizer", "--config", str(run_file), "--resolution", "32"])
    apply_run_file(args, importlib.import_module("nextscale.cli.train_tokenizer").RUN_FILE_SOURCES)
    assert args.scale_sides is None and args.resolution == 32 and args.preset == "tiny"
    args = parser.parse_args(["train-tokenizer", "--config", str(run_file)])
    apply_run_file(args, importlib.import_module("nextscale.cli.train_tokenizer").RUN_FILE_SOURCES)
    assert args.scale_sides == (1, 2, 4)


def test_verbose_does_not_log_pillow_chunks(shapes, tokenizer_run, tmp_path, caplog):
    run_dir, _ = tokenizer_run
    caplog.set_level(logging.DEBUG)
    argv = f"-v tokenize --tokenizer {run_dir} --data {shapes} --split val --out {tmp_path / 'v'} --no-progress"
    assert main(argv.split()) == 0
    assert logging.getLogger("PIL").level == logging.WARNING
    assert not [record for record in caplog.records if record.name.startswith("PIL")]
    assert "data: 6 val images" in caplog.text


@pytest.mark.parametrize(
    ("command", "run_file"),
    [("train-tokenizer", "own_images_tokenizer.json"), ("train", "own_images_transformer.json")],
)
def test_own_images_run_files_hold_only_known_flags(command, run_file):
    module = importlib.import_module(f"nextscale.cli.{command.replace('-', '_')}")
    args = build_parser().parse_args([command, "--config", str(REPO / "configs" / run_file)])
    apply_run_file(args, module.RUN_FILE_SOURCES)  # raises on an unknown flag
    assert args.preset == "tiny" and args.steps > 0
    if command == "train-tokenizer":
        assert args.resolution == 32 and args.data == "data/shapes" and args.in_channels is None


def test_eval_data_folder_is_held_out_as_a_whole(shapes):
    from nextscale.cli.train import eval_dataset

    assert len(eval_dataset(str(shapes), 32, 3)) == 24  # all of it, not the 5 % carved for training runs


def test_captioned_shapes_tokenize_both_splits_with_every_caption(tokenizer_run, tmp_path):
    from nextscale.data.token_dataset import TokenShardDataset

    spec = importlib.util.spec_from_file_location("make_shapes", REPO / "scripts" / "make_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path / "shapes-captions"
    module.write_captioned_shapes(root, per_class=3, size=32)
    run_dir, _ = tokenizer_run
    for split, count in (("train", 12), ("val", 6)):
        out = tmp_path / f"tokens-{split}"
        argv = f"tokenize --tokenizer {run_dir} --data captions:{root} --split {split} --out {out} --no-progress"
        assert main(argv.split()) == 0
        tokens = TokenShardDataset(out)
        assert len(tokens) == count
        captions = tokens.captions_of(0)
        assert len(captions) == 2 and captions[0].startswith("a blue circle in the ")
