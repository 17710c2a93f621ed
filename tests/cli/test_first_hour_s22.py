"""Mistakes from a first hour with one's own images (s22): a checkpoint file where a run folder goes, a --run-dir of
the other stage, the own-images config's example --data, an export of an export, a folder of pictures without
class sub-folders, and a class name with a space typed without quotes. Each is one line naming the fix, given before
any model or data is loaded (nothing here trains)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from nextscale.cli import main
from nextscale.data.images import ImageFolderDataset
from tiny_folders import class_folder

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def fake_run(root: Path, kind: str) -> Path:
    """A run folder as `train`/`train-tokenizer` leave it, as far as the path checks look: config.json with its
    kind and one checkpoint file (its content is never read)."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"kind": kind}))
    (root / "checkpoints" / "step-00000030.pt").write_bytes(b"not loaded")
    return root


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["tokenize", "--data", "DATA", "--out", "OUT"], "--tokenizer"),
        (["train", "--tokens", "DATA", "--run-dir", "NEW"], "--tokenizer"),
        (["train", "--tokens", "DATA", "--run-dir", "NEW", "--tokenizer", "TOK"], "--init-from"),
        (["train-tokenizer", "--data", "DATA", "--run-dir", "NEW"], "--init-from"),
    ],
)
def test_a_checkpoint_file_names_its_run_folder(tmp_path, capsys, command, flag):
    kind = "transformer" if command[0] == "train" and flag == "--init-from" else "tokenizer"
    run = fake_run(tmp_path / "runs" / "mine", kind)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "manifest.json").write_text("{}")
    data = class_folder(tmp_path / "data")
    paths = {"DATA": str(tokens if command[0] == "train" else data), "OUT": str(tmp_path / "out")}
    paths |= {"NEW": str(tmp_path / "runs" / "new"), "TOK": str(run)}
    checkpoint = run / "checkpoints" / "step-00000030.pt"
    argv = [paths.get(word, word) for word in command] + [flag, str(checkpoint)]
    assert main(argv) == 2
    line = error_line(capsys)
    assert f"{flag} {checkpoint} is a checkpoint of the training run {run}: pass the run folder ({flag} {run}" in line
    assert f"`nextscale export --run {run} --step 30 --out DIR`" in line
    assert not (tmp_path / "runs" / "new").exists() and not (tmp_path / "out").exists()


def test_a_run_dir_of_the_other_stage_is_named_as_such(tmp_path, capsys):
    tokenizer_run = fake_run(tmp_path / "tok", "tokenizer")
    transformer_run = fake_run(tmp_path / "var", "transformer")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "manifest.json").write_text("{}")
    train = ["train", "--tokenizer", str(tokenizer_run), "--tokens", str(tokens), "--run-dir", str(tokenizer_run)]
    assert main(train) == 2
    line = error_line(capsys)
    assert f"--run-dir {tokenizer_run} is a tokenizer training run" in line
    assert f"--tokenizer {tokenizer_run}" in line and "different config" not in line
    data = class_folder(tmp_path / "data")
    assert main(["train-tokenizer", "--data", str(data), "--run-dir", str(transformer_run)]) == 2
    assert f"--run-dir {transformer_run} is a transformer training run" in error_line(capsys)


def test_the_own_images_config_without_data_says_where_the_folder_came_from(tmp_path, capsys, monkeypatch):
    """The README's own-images recipe run without --data: the config names the shapes example's folder."""
    monkeypatch.chdir(tmp_path)
    config = CONFIGS / "own_images_tokenizer.json"
    assert main(["train-tokenizer", "--config", str(config), "--run-dir", "runs/mine-tokenizer"]) == 2
    line = error_line(capsys)
    assert f"data folder data/shapes (from {config}) does not exist; pass --data DIR" in line
    assert not (tmp_path / "runs").exists()
    # a typed --data keeps the message that names the typed folder alone
    argv = ["train-tokenizer", "--config", str(config), "--data", "nope", "--run-dir", "runs/mine-tokenizer"]
    assert main(argv) == 2
    assert "data folder nope does not exist" in error_line(capsys)


def test_export_of_a_pipeline_folder_points_to_model(tiny_pipeline_dir, tmp_path, capsys):
    assert main(["export", "--run", str(tiny_pipeline_dir), "--out", str(tmp_path / "again")]) == 2
    line = error_line(capsys)
    assert f"--run {tiny_pipeline_dir} is a pipeline folder, exported already" in line
    assert f"--model {tiny_pipeline_dir}" in line
    assert not (tmp_path / "again").exists()


def test_pictures_without_class_folders_are_told_to_move_into_one(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for index in range(3):
        Image.new("RGBA", (20, 16), (index * 80, 0, 0, 128)).save(flat / f"{index}.png")
    assert main(["info", str(flat)]) == 2
    line = error_line(capsys)
    assert f"{flat} holds 3 images but no class sub-folders" in line and f"{flat}/all/" in line
    assert "captions:" not in line  # no captions here: `info captions:DIR` would only fail next
    with pytest.raises(ValueError, match=rf"one sub-folder per class \(pictures without classes: .*{flat}/all/\)"):
        ImageFolderDataset.class_names(flat)


@pytest.mark.parametrize(
    ("target", "quoted"),
    [
        (["--class", "red", "apples"], '--class "red apples"'),
        (["--prompt", "a", "red", "apple"], '--prompt "a red apple"'),
    ],
)
def test_an_unquoted_value_with_spaces_is_told_to_quote_it(tiny_pipeline_dir, tmp_path, capsys, target, quoted):
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    argv = ["edit", "--model", str(tiny_pipeline_dir), "--image", str(image), "--box", "0", "0", "0.5", "0.5"]
    assert main([*argv, *target, "--out", str(tmp_path / "e.png")]) == 2
    line = error_line(capsys)
    assert f"unrecognized arguments: {' '.join(target[2:])}; quote a value with spaces: {quoted}" in line
    assert main([*argv, "--class", "1", "--bogus"]) == 2
    assert "quote" not in error_line(capsys)  # an unknown flag is no split value


def test_sample_out_without_extension_points_to_out_dir(tiny_pipeline_dir, tmp_path, capsys):
    """`--out samples/` (argparse's Path drops the slash) most likely means a folder of images."""
    folder = tmp_path / "samples"
    assert main(["sample", "--model", str(tiny_pipeline_dir), "--class", "1", "--out", f"{folder}/"]) == 2
    line = error_line(capsys)
    assert f"--out {folder} has no image extension" in line and f"--out-dir {folder} writes one PNG" in line
    assert not folder.exists()
