"""--crop-margin R: it reaches the datasets' transforms, is refused outside [1, 2] while parsing, and a run keeps the
margin it recorded (or its data's default, for runs made before the field), refusing another one in one line."""

import argparse
import json

import pytest
from PIL import Image

from nextscale.cli import main
from nextscale.training.checkpoint import checkpoint_path
from nextscale.training.crop_margin import CROP_MARGIN_FIELD, manifest_crop_margin, run_crop_margin
from nextscale.training.data_specs import build_datasets
from tiny_folders import class_folder


def caption_folder(root, count: int = 4):
    root.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (20, 16), (0, index * 40, 0)).save(root / f"{index}.png")
        (root / f"{index}.txt").write_text(f"square {index}")
    return root


def write_run(run_dir, config: dict) -> None:
    """A run directory with config.json and one checkpoint (listed by name only): a run that resumes."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    path = checkpoint_path(run_dir, 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"listed by name only")


def flags(run_dir, data: str | None = None, crop_margin: float | None = None, tokens=None) -> argparse.Namespace:
    return argparse.Namespace(run_dir=run_dir, data=data, crop_margin=crop_margin, tokens=tokens)


def test_the_margin_reaches_every_split_of_folders_and_captions(tmp_path):
    folder = str(class_folder(tmp_path / "classes"))
    captions = f"captions:{caption_folder(tmp_path / 'captions')}"
    train, held_out = build_datasets(folder, 16, 3)
    assert train.transform.resize_side == held_out.transform.resize_side == 18  # VAR's 1.125, today's default
    train, held_out = build_datasets(folder, 16, 3, crop_margin=1.0)
    assert train.transform.resize_side == held_out.transform.resize_side == 16
    assert build_datasets(folder, 16, 3, split="all", crop_margin=1.25)[0].transform.resize_side == 20
    assert build_datasets(captions, 16, 3)[0].transform.resize_side == 16  # captions: no margin by default
    train, held_out = build_datasets(captions, 16, 3, crop_margin=1.125)
    assert train.transform.resize_side == held_out.transform.resize_side == 18
    assert build_datasets(captions, 16, 3, split="all", crop_margin=1.125)[0].transform.resize_side == 18


@pytest.mark.parametrize("value", ["0.9", "2.5", "nan", "wide"])
def test_values_outside_one_to_two_are_refused_in_one_line(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenize", "--tokenizer", "t", "--data", "d", "--out", "o", "--crop-margin", value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--crop-margin" in error and ("from 1" in error or "a number like" in error)


def test_a_new_run_records_its_margin_or_the_datas_default(tmp_path):
    args = flags(tmp_path / "new", data="photos")
    assert run_crop_margin(args) == {CROP_MARGIN_FIELD: 1.125} and args.crop_margin == 1.125
    args = flags(tmp_path / "new", data="captions:photos")
    assert run_crop_margin(args) == {CROP_MARGIN_FIELD: 1.0}
    args = flags(tmp_path / "new", data="photos", crop_margin=1.0)
    assert run_crop_margin(args) == {CROP_MARGIN_FIELD: 1.0}
    args = flags(tmp_path / "new", data="fashion-mnist")
    assert run_crop_margin(args) == {} and args.crop_margin is None  # resized whole: nothing to record
    with pytest.raises(ValueError, match="Fashion-MNIST images are resized whole"):
        run_crop_margin(flags(tmp_path / "new", data="fashion-mnist", crop_margin=1.0))


def test_a_resumed_run_keeps_its_margin_and_refuses_another(tmp_path):
    write_run(tmp_path / "run", {"data": "photos", CROP_MARGIN_FIELD: 1.0})
    args = flags(tmp_path / "run", data="photos")
    assert run_crop_margin(args) == {CROP_MARGIN_FIELD: 1.0} and args.crop_margin == 1.0  # not the default 1.125
    assert run_crop_margin(flags(tmp_path / "run", data="photos", crop_margin=1.0)) == {CROP_MARGIN_FIELD: 1.0}
    with pytest.raises(ValueError, match=r"--crop-margin 1.125, but the run in .* was trained with crop margin 1 "):
        run_crop_margin(flags(tmp_path / "run", data="photos", crop_margin=1.125))


def test_a_run_made_before_the_field_resumes_with_todays_default_and_records_nothing(tmp_path):
    write_run(tmp_path / "old", {"data": "photos"})
    args = flags(tmp_path / "old", data="photos")
    assert run_crop_margin(args) == {} and args.crop_margin == 1.125  # config.json stays as it was
    with pytest.raises(ValueError, match="its data's default, from before the margin was recorded"):
        run_crop_margin(flags(tmp_path / "old", data="photos", crop_margin=1.0))


def write_manifest(folder, **fields) -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "format": 1,
                "count": 1,
                "total_tokens": 1,
                "scale_sides": [1],
                "vocab_size": 4,
                "shards": [],
                "tokenizer": {},
                **fields,
            }
        )
    )


def test_train_on_tokens_takes_the_token_folders_margin_and_refuses_another(tmp_path):
    write_manifest(tmp_path / "tokens", source="photos:train", condition="class", crop_margin=1.0)
    args = flags(tmp_path / "run", data="photos", tokens=tmp_path / "tokens")
    assert run_crop_margin(args) == {CROP_MARGIN_FIELD: 1.0} and args.crop_margin == 1.0  # held-out --data alike
    with pytest.raises(ValueError, match=r"was made with crop margin 1 \(its manifest.json\)"):
        run_crop_margin(flags(tmp_path / "run", data="photos", crop_margin=1.125, tokens=tmp_path / "tokens"))
    # A resumed run whose token folder was remade with another margin is refused too.
    write_run(tmp_path / "resumed", {"data": "photos", CROP_MARGIN_FIELD: 1.125})
    with pytest.raises(ValueError, match="resume it on tokens made with --crop-margin 1.125"):
        run_crop_margin(flags(tmp_path / "resumed", data="photos", tokens=tmp_path / "tokens"))


def test_token_folders_made_before_the_field_mean_their_datas_default():
    assert manifest_crop_margin({"source": "photos:train", "condition": "class"}) == 1.125
    assert manifest_crop_margin({"source": "captions:scenes", "condition": "text"}) == 1.0
    assert manifest_crop_margin({"source": "fashion-mnist:train", "condition": "class"}) is None
    assert manifest_crop_margin({"source": "photos:train", CROP_MARGIN_FIELD: 1.0}) == 1.0
