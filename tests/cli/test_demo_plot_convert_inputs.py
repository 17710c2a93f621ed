"""demo --model / --text-model / --out-dir, plot --out, convert inputs: the right model, or one clear line."""

import pytest
import torch

from nextscale.cli import main
from nextscale.pretrained import load_weights_only


def one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_demo_text_model_takes_a_bundled_name(tiny_pipeline_dir, tmp_path, capsys):
    argv = ["demo", "--model", str(tiny_pipeline_dir), "--text-model", "bundled:scenes", "--seeds", "1"]
    assert main([*argv, "--class", "0", "--out-dir", str(tmp_path)]) == 0
    assert "prompts:" in capsys.readouterr().out
    assert (tmp_path / "prompts.png").is_file() and (tmp_path / "text_edit.png").is_file()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--text-model", "{tmp}/nope"], "--text-model {tmp}/nope not found"),
        (["--text-model", "{tmp}"], "--text-model {tmp} is not a pipeline folder"),
        (["--text-model", "bundled:nope"], "--text-model: unknown bundled model 'nope'"),
        (["--text-model", "{model}"], "is a class-conditional model, but --text-model takes a text-to-image one"),
        (["--model", "bundled:scenes", "--no-text"], "give it as --text-model bundled:scenes instead"),
        (["--out-dir", "{tmp}/file.pth"], "--out-dir {tmp}/file.pth is a file, not a folder"),
        (["--no-text", "--text-model", "bundled:scenes"], "give one of them, not both"),
    ],
)
def test_demo_refuses_wrong_models_and_outputs_before_any_work(flags, expected, tiny_pipeline_dir, tmp_path, capsys):
    (tmp_path / "file.pth").write_text("not a folder")
    names = {"tmp": tmp_path, "model": tiny_pipeline_dir}
    argv = ["demo", *[flag.format(**names) for flag in flags]]
    if "--out-dir" not in flags:
        argv += ["--out-dir", str(tmp_path / "out")]
    assert expected.format(**names) in one_line_error(argv, capsys)
    assert not (tmp_path / "out" / "samples.png").exists()


def test_plot_out_must_be_a_writable_png_path(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file")
    run = ["plot", "--run", str(tmp_path / "run")]
    err = one_line_error([*run, "--out", str(tmp_path)], capsys)
    assert f"--out {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'curves.png'}" in err
    err = one_line_error([*run, "--out", str(tmp_path / "notes.txt" / "c.png")], capsys)
    assert "notes.txt is a file, not a folder" in err


def test_convert_tells_a_non_checkpoint_from_an_unsafe_one(tmp_path, capsys):
    text_file = tmp_path / "garbage.pth"
    text_file.write_text("garbage\n")
    junk_pickle = tmp_path / "junk.pth"
    junk_pickle.write_bytes(b"\x80\x05not a checkpoint")  # a pickle header, then bytes no pickler writes
    for path in (text_file, junk_pickle):
        with pytest.raises(ValueError, match=r"is not a PyTorch checkpoint \(corrupt, truncated, or another kind"):
            load_weights_only(path)
    err = one_line_error(
        ["convert", "--vae", str(text_file), "--var", str(text_file), "--out", str(tmp_path / "o")], capsys
    )
    assert "garbage.pth is not a PyTorch checkpoint" in err and "could run code" not in err
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"weight": torch.zeros(1), "extra": ValueError("an object, not a tensor")}, unsafe)
    with pytest.raises(ValueError, match="not a plain state dict / weights-only checkpoint .* could run code"):
        load_weights_only(unsafe)


def test_convert_names_a_folder_given_for_a_file(tmp_path, capsys):
    argv = ["convert", "--vae", str(tmp_path), "--var", str(tmp_path / "var.pth"), "--out", str(tmp_path / "o")]
    err = one_line_error(argv, capsys)
    assert f"--vae {tmp_path} is a folder; give the checkpoint file itself" in err
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_weights_only(tmp_path)


def _raster_model(tmp_path):
    """A tiny random raster-scan baseline pipeline folder."""
    from nextscale.presets import tiny
    from nextscale.sampling.raster_pipeline import RasterPipeline
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.training.export import with_scale_sides
    from nextscale.transformer.raster_config import RasterConfig
    from nextscale.transformer.raster_model import RasterTransformer

    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    side = tokenizer_config.scale_sides[-1]
    config = RasterConfig.from_depth(
        transformer_config.depth,
        embed_dim=transformer_config.embed_dim,
        num_heads=transformer_config.num_heads,
        num_classes=10,
        vocab_size=transformer_config.vocab_size,
        side=side,
    )
    model = tmp_path / "raster"
    RasterPipeline(
        with_scale_sides(MultiScaleVQVAE(tokenizer_config), (side,)), RasterTransformer(config)
    ).save_pretrained(model)
    return model


def test_a_raster_baseline_has_no_scales_to_show_and_info_says_what_it_is(tmp_path, capsys):
    # --show-scales wrote a one-column "coarse-to-fine" grid of the finished images; info listed "scales 1 (4)".
    model = _raster_model(tmp_path)
    argv = ["sample", "--model", str(model), "--class", "0", "--show-scales", str(tmp_path / "s.png")]
    assert "this model has one scale" in one_line_error(argv, capsys)
    assert main(["info", str(model)]) == 0
    assert "raster-scan baseline, one 4x4 map whose 16 tokens are drawn one at a time" in capsys.readouterr().out


def test_demo_of_a_raster_baseline_samples_and_skips_the_edit(tmp_path, capsys):
    """The raster-scan baseline cannot edit: the demo used to write the grid, then exit 1 at the editing example."""
    model = _raster_model(tmp_path)
    argv = [
        "demo",
        "--model",
        str(model),
        "--no-text",
        "--seeds",
        "1",
        "--class",
        "0",
        "--out-dir",
        str(tmp_path / "d"),
    ]
    assert main(argv) == 0
    assert "editing: skipped (the raster-scan baseline cannot edit" in capsys.readouterr().out
    assert (tmp_path / "d" / "samples.png").is_file()


@pytest.fixture(scope="module")
def class_runs(tmp_path_factory):
    """A tokenizer run and a one-step transformer run on the test-asset Fashion-MNIST (from the repository root)."""
    import os
    from pathlib import Path

    repo, here = Path(__file__).resolve().parents[2], os.getcwd()
    root = tmp_path_factory.mktemp("runs")
    tokenizer, run = root / "tok", root / "var"
    data = "fashion-mnist:tests/assets/fashion_mnist"
    try:
        os.chdir(repo)
        tiny = f"--config configs/tiny_tokenizer.json --data {data} --steps 2 --disc-start 100 --no-progress"
        assert main(["train-tokenizer", *tiny.split(), "--run-dir", str(tokenizer)]) == 0
        tiny = f"--config configs/tiny_transformer.json --data {data} --steps 1 --no-progress"
        assert main(["train", *tiny.split(), "--tokenizer", str(tokenizer), "--run-dir", str(run)]) == 0
    finally:
        os.chdir(here)
    return tokenizer, run


def test_demo_samples_a_training_run_as_sample_does(class_runs, tmp_path, capsys):
    # `sample --model RUN` samples a run's newest checkpoint; demo refused the same folder ("not a pipeline
    # folder"), so trying a fresh run in the demo needed an export first.
    run = class_runs[1]
    capsys.readouterr()
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(run), "--no-text", "--seeds", "1", "--class", "0", "--out-dir", str(out)]) == 0
    assert f"newest checkpoint of run {run}" in capsys.readouterr().err
    assert (out / "samples.png").is_file()
    wrong = one_line_error(["demo", "--text-model", str(run), "--out-dir", str(out)], capsys)
    assert "is a class-conditional model, but --text-model takes a text-to-image one" in wrong


def test_export_records_the_recommended_sampling_settings(class_runs, tmp_path, capsys):
    # A run exported by hand had no way to record the settings its model is meant to be sampled with (the text
    # demo patched them into pipeline.json after its own export).
    from nextscale.sampling.pipeline import Pipeline

    tokenizer, run = class_runs
    out = tmp_path / "model"
    assert main(["export", "--run", str(run), "--out", str(out), "--recommend", "cfg=3", "top_k=10", "top_p=none"]) == 0
    assert Pipeline.from_pretrained(out).recommended_sampling == {"cfg": 3.0, "top_k": 10, "top_p": None}
    for flags, expected in [
        (["--recommend", "guidance=3"], "--recommend takes KEY=VALUE with KEY one of cfg, top_k"),
        (["--recommend", "cfg=high"], "--recommend cfg=high: not a number"),
        (["--recommend", "top_p=2"], "--recommend top_p=2: "),
    ]:
        assert expected in one_line_error(["export", "--run", str(run), "--out", str(tmp_path / "x"), *flags], capsys)
    refused = one_line_error(
        ["export", "--run", str(tokenizer), "--out", str(tmp_path / "t"), "--recommend", "cfg=2"], capsys
    )
    assert "--recommend is for pipelines" in refused
    assert not (tmp_path / "x").exists() and not (tmp_path / "t").exists()
