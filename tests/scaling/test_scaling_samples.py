"""`nextscale scaling samples`: one row per model of a sweep, every row drawn with the same seed and settings."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.cli.scaling_samples import format_count
from nextscale.data.grids import make_grid
from nextscale.sampling.pipeline import Pipeline
from nextscale.scaling.sweep import collect_sweep
from nextscale.training.checkpoint import checkpoint_path
from nextscale.training.export import export_run

SETTINGS = ["--seed", "5", "--cfg", "2", "--top-k", "8", "--zoom", "1"]


def test_each_row_is_what_the_exported_model_draws_with_the_seed(finished_sweep, tmp_path, capsys):
    out = tmp_path / "fig7.png"
    argv = ["scaling", "samples", "--sweep", str(finished_sweep), "--class", "0", "3", "--num", "2", "--out", str(out)]
    assert main([*argv, *SETTINGS]) == 0
    assert "2 rows x 4 images, seed 5" in capsys.readouterr().out
    tiles, labels = [], []
    for run in collect_sweep(finished_sweep):  # d1, d2: smallest first
        pipe = Pipeline.from_pretrained(export_run(finished_sweep / "runs" / run.run, tmp_path / run.run))
        images = pipe(class_labels=[0, 0, 3, 3], seed=5, cfg=2.0, top_k=8, output_type="pt").images * 2 - 1
        tiles += [-torch.ones_like(images[:1]), images]  # a black tile carries the row's name
        names = pipe.class_names or ("0", "1", "2", "3")
        labels += [f"{run.run} {format_count(run.params)} s3", names[0], names[0], names[3], names[3]]
    expected = np.asarray(make_grid(torch.cat(tiles), nrow=5, labels=labels))
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), expected)


def test_every_checkpoint_gives_a_row_per_checkpoint_and_runs_without_one_are_named(finished_sweep, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep)
    newest = checkpoint_path(sweep / "runs" / "d1", 3)
    shutil.copy(newest, checkpoint_path(sweep / "runs" / "d1", 1))  # an older checkpoint kept beside it
    shutil.copy(
        newest.with_name(newest.name + ".json"), checkpoint_path(sweep / "runs" / "d1", 1).with_suffix(".pt.json")
    )
    shutil.rmtree(sweep / "runs" / "d2" / "checkpoints")
    assert main(["scaling", "samples", "--sweep", str(sweep), "--class", "1", "--every-checkpoint", *SETTINGS]) == 0
    captured = capsys.readouterr()
    assert "d2: no checkpoint yet, left out" in captured.err
    assert "2 rows x 1 images" in captured.out and "d1 " in captured.out and " s1:" in captured.out
    assert (sweep / "samples.png").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prompt", "a bag"], "class-conditional sweep: name the columns with --class, not --prompt"),
        (["--class", "99"], "99"),
        (["--top-p", "0"], "--top-p"),
        (["--out", "grid.txt"], "end the name with .png"),
    ],
)
def test_bad_requests_are_one_line_errors(finished_sweep, tmp_path, capsys, flags, message):
    argv = ["scaling", "samples", "--sweep", str(finished_sweep), "--out", str(tmp_path / "g.png"), *flags]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
