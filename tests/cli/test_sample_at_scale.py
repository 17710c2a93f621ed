"""`nextscale sample` at scale: batches, streamed PNGs that resume, grid limits, class names on grids."""

import pytest
import torch
from safetensors.torch import load_file

from nextscale.cli import main
from nextscale.sampling.pipeline import Pipeline


def sample(model, *flags) -> int:
    return main(["sample", "--model", str(model), "--no-progress", *map(str, flags)])


def test_out_dir_streams_one_png_per_image_and_a_rerun_resumes(tiny_pipeline_dir, tmp_path, capsys):
    folder = tmp_path / "each"
    args = ["--class", "1", "Sneaker", "--num", "3", "--batch-size", "2", "--seed", "5", "--out-dir", folder]
    assert sample(tiny_pipeline_dir, *args) == 0
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == [f"{i:04d}_class{c}.png" for i, c in enumerate([1, 1, 1, 7, 7, 7])]
    assert sorted(p.name for p in folder.iterdir()) == [*names, "sample-settings.json"]
    assert not (tmp_path / "samples.png").exists()  # --out-dir alone writes no grid
    first = {name: (folder / name).read_bytes() for name in names}
    (folder / names[2]).unlink()
    (folder / names[5]).unlink()
    capsys.readouterr()
    assert sample(tiny_pipeline_dir, *args) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 PNGs" in printed and "skipped 4 already there" in printed
    # each batch has its own seed, so a resumed run makes the very same images
    assert {name: (folder / name).read_bytes() for name in names} == first


def test_rerun_reports_skipped_files(tiny_pipeline_dir, tmp_path, capsys):
    args = ["--num", "3", "--batch-size", "2", "--seed", "1", "--out-dir", tmp_path / "drawn"]
    assert sample(tiny_pipeline_dir, *args) == 0  # labels drawn from the seed: names known after sampling
    capsys.readouterr()
    assert sample(tiny_pipeline_dir, *args) == 0
    assert "skipped 3 already there" in capsys.readouterr().out
    assert len(list((tmp_path / "drawn").glob("000[0-2]_class*.png"))) == 3


def test_batch_zero_is_the_single_call_and_later_batches_have_their_own_seed(tiny_pipeline_dir, tmp_path, monkeypatch):
    from nextscale.cli.sample_plan import batch_seed

    monkeypatch.chdir(tmp_path)  # the default grid samples.png lands here
    pipe = Pipeline.from_pretrained(tiny_pipeline_dir)
    expected = pipe(class_labels=[2, 4], num_images_per_prompt=2, seed=3, cfg=1.5).tokens
    tokens = tmp_path / "tokens.safetensors"
    assert sample(tiny_pipeline_dir, "--class", 2, 4, "--num", 2, "--seed", 3, "--save-tokens", tokens) == 0
    assert torch.equal(load_file(tokens)["tokens"], expected)  # one batch: the official single call
    assert not (tmp_path / "samples.png").exists()  # only tokens were asked for
    batched = tmp_path / "batched.safetensors"
    assert (
        sample(tiny_pipeline_dir, "--class", 2, 4, "--num", 2, "--seed", 3, "--batch-size", 3, "--save-tokens", batched)
        == 0
    )
    first = pipe(class_labels=[2, 2, 4], seed=3).tokens
    second = pipe(class_labels=[4], seed=batch_seed(3, 1)).tokens
    assert torch.equal(load_file(batched)["tokens"], torch.cat([first, second]))
    assert batch_seed(3, 1) not in (3, 4) and batch_seed(3, 2) != batch_seed(3, 1)


def test_grid_tiles_are_labelled_with_class_names(tiny_pipeline_dir, tmp_path, monkeypatch):
    import nextscale.data.grids as grids

    drawn = {}
    real_make_grid = grids.make_grid

    def spy(batch, nrow=8, padding=2, labels=None):
        drawn["labels"], drawn["nrow"] = labels, nrow
        return real_make_grid(batch, nrow=nrow, padding=padding, labels=labels)

    monkeypatch.setattr(grids, "make_grid", spy)
    assert (
        sample(tiny_pipeline_dir, "--class", "ankle boot", 0, "--num", 2, "--seed", 0, "--out", tmp_path / "g.png") == 0
    )
    assert drawn["labels"] == ["Ankle boot", "Ankle boot", "T-shirt/top", "T-shirt/top"] and drawn["nrow"] == 2
    assert (tmp_path / "g.png").is_file()


def test_a_huge_grid_is_refused_before_sampling_and_names_out_dir(tiny_pipeline_dir, tmp_path, capsys):
    assert sample(tiny_pipeline_dir, "--class", 3, "--num", 100000, "--out", tmp_path / "g.png") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out-dir" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["bundled:fashion-mnist", "bundled:scenes"])
def test_bundled_names_resolve_to_the_package_assets(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository root
    pipe = Pipeline.from_pretrained(name)
    assert pipe.is_text_conditional == (name == "bundled:scenes")
    if name == "bundled:fashion-mnist":
        assert (
            pipe.class_names[0] == "T-shirt/top" and pipe.class_names[9] == "Ankle boot" and len(pipe.class_names) == 10
        )


def test_unknown_bundled_name_lists_the_available_ones():
    with pytest.raises(FileNotFoundError, match="bundled:fashion-mnist, bundled:scenes"):
        Pipeline.from_pretrained("bundled:imagenet")


def test_cli_model_flag_takes_a_bundled_name(tmp_path):
    assert sample("bundled:fashion-mnist", "--class", "bag", "--seed", 0, "--out", tmp_path / "bag.png") == 0
    assert (tmp_path / "bag.png").is_file()


def test_fused_kernels_flag_draws_the_exact_paths_images(tiny_pipeline_dir, tmp_path):
    import numpy as np
    from PIL import Image

    drawn = {}
    for name, flags in (("exact", []), ("fused", ["--fused-kernels"])):
        folder = tmp_path / name
        assert sample(tiny_pipeline_dir, "--class", "1", "7", "--seed", "3", "--out-dir", folder, *flags) == 0
        drawn[name] = [np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))]
    assert len(drawn["fused"]) == len(drawn["exact"]) == 2
    for fused, exact in zip(drawn["fused"], drawn["exact"]):  # float32 rounding apart: at most a level here or there
        assert np.mean(np.abs(fused.astype(int) - exact.astype(int)) <= 1) >= 0.99
    assert Pipeline.from_pretrained(tiny_pipeline_dir, fused_kernels=True).transformer.fused_kernels


def test_a_grid_larger_than_its_format_holds_is_refused_before_sampling(
    tiny_pipeline_dir, tmp_path, capsys, monkeypatch
):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before refusing the grid")

    monkeypatch.setattr(Pipeline, "__call__", no_sampling)
    # WebP holds 16383 px a side: 911 tiles of 16 + 2 px in one row (--nrow defaults to --num) do not fit
    grid = tmp_path / "g.webp"
    assert sample(tiny_pipeline_dir, "--class", 0, "--num", 911, "--seed", 0, "--out", grid) == 2
    err = capsys.readouterr().err
    assert "more than WEBP holds (16383 px a side); give --nrow so that rows and columns hold 910" in err, err
    assert sample(tiny_pipeline_dir, "--class", 0, "--num", 911, "--nrow", 1, "--out", grid) == 2  # too tall
    assert not grid.exists()


def test_two_outputs_naming_one_file_are_refused_before_sampling(tiny_pipeline_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the scale view used to replace the grid silently, both reported as written
    assert sample(tiny_pipeline_dir, "--class", 1, "--out", "same.png", "--show-scales", tmp_path / "same.png") == 2
    assert "--out and --show-scales name the same file" in capsys.readouterr().err
    assert sample(tiny_pipeline_dir, "--out", "samples.png", "--save-tokens", "samples.png") == 2
    assert "--out and --save-tokens name the same file" in capsys.readouterr().err
    assert not (tmp_path / "same.png").exists() and not (tmp_path / "samples.png").exists()


def test_a_seedless_resume_refuses_outputs_that_would_not_show_the_folders_images(tiny_pipeline_dir, tmp_path, capsys):
    folder, grid = tmp_path / "each", tmp_path / "grid.png"
    assert sample(tiny_pipeline_dir, "--class", 1, "--out-dir", folder) == 0
    # the resume skips image 0; without a seed the grid would show a new draw, not the file (it did, silently)
    assert sample(tiny_pipeline_dir, "--class", 1, "--out-dir", folder, "--out", grid) == 2
    assert "already holds images of a run without --seed" in capsys.readouterr().err and not grid.exists()
    assert sample(tiny_pipeline_dir, "--class", 1, "--out-dir", folder) == 0  # a plain resume still runs
    seeded = tmp_path / "seeded"
    assert sample(tiny_pipeline_dir, "--class", 1, "--seed", 0, "--out-dir", seeded) == 0
    assert sample(tiny_pipeline_dir, "--class", 1, "--seed", 0, "--out-dir", seeded, "--out", grid) == 0
    assert grid.is_file()  # with a seed the resume redraws the very images of the folder


def test_cfg_schedule_constant_guides_every_step_and_is_recorded_only_when_chosen(tiny_pipeline_dir, tmp_path, capsys):
    # There was no way to choose a constant guidance weight from the CLI: the linear ramp guides a raster model's
    # tokens at half the weight on average, so comparisons at one --cfg favoured the next-scale model.
    pipe = Pipeline.from_pretrained(tiny_pipeline_dir)
    torch.manual_seed(0)
    with torch.no_grad():  # the fixture's zero-initialised AdaLN ignores the class, so guidance would change nothing
        for weight in pipe.transformer.parameters():
            weight.add_(torch.randn_like(weight) * 0.1)
    model = tmp_path / "model"
    pipe.save_pretrained(model)
    expected = pipe(class_labels=[3, 5], seed=2, cfg=4.0, cfg_schedule="constant").tokens
    assert not torch.equal(expected, pipe(class_labels=[3, 5], seed=2, cfg=4.0).tokens)  # the schedule matters
    tokens = tmp_path / "tokens.safetensors"
    flags = ["--class", 3, 5, "--seed", 2, "--cfg", 4, "--save-tokens", tokens]
    assert sample(model, *flags, "--cfg-schedule", "constant") == 0
    assert torch.equal(load_file(tokens)["tokens"], expected)
    folder = tmp_path / "each"
    assert sample(model, "--class", 3, "--seed", 2, "--out-dir", folder) == 0
    assert "--cfg-schedule" not in (folder / "sample-settings.json").read_text()  # older folders still resume
    assert sample(model, "--class", 3, "--seed", 2, "--out-dir", folder, "--cfg-schedule", "constant") == 2
    assert "--cfg-schedule linear, now constant" in capsys.readouterr().err
