"""`nextscale evaluate --edit inpaint|outpaint`: zero-shot edits of real images scored beside the inputs and their
reconstructions, and the flags' refusals."""

import json
from pathlib import Path

import pytest

from nextscale.cli import main

FASHION_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"
REFERENCE = ["--reference", f"fashion-mnist:{FASHION_ASSETS}", "--features", "classifier"]


def evaluate(tmp_path, *flags) -> dict:
    argv = ["evaluate", "--num", "20", "--batch-size", "10", "--seed", "0", *REFERENCE, *map(str, flags)]
    assert main([*argv, "--out", str(tmp_path / "report.json")]) == 0
    return json.loads((tmp_path / "report.json").read_text())


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_class_edits_of_the_bundled_model_are_judged_against_their_target(tmp_path, capsys):
    report = evaluate(tmp_path, "--edit", "inpaint", "--edit-target", "next", "--cfg", "3", "--top-k", "10")
    assert report["measured"] == "inpaint edits of real images"
    assert report["edit"] == {
        "mode": "inpaint",
        "box": [0.25, 0.25, 0.75, 0.75],
        "target": "next",
        "kept_fraction": 0.75,
    }
    inputs, reconstructions = report["edit_baselines"]["inputs"], report["edit_baselines"]["reconstructions"]
    assert inputs["class_consistency"] >= 0.8  # the judge on the real test images, against their own classes
    assert inputs["fid"] < reconstructions["fid"] < report["fid"]  # an edit decodes tokens, and changes the centre
    # judged against the next class; the original class survives in the rest
    assert 0 <= report["class_consistency"] <= 1 and 0 <= report["original_class_rate"] <= 1
    assert report["class_consistency"] + report["original_class_rate"] <= 1
    assert "original_class_rate" not in inputs


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_outpainting_keeps_the_box_and_a_sweep_gives_one_row_per_cfg(tmp_path, capsys):
    report = evaluate(tmp_path, "--edit", "outpaint", "--box", "0", "0", "1", "0.5", "--cfg", "1", "3")
    assert report["edit"]["kept_fraction"] == 0.5 and report["edit"]["target"] == "own"
    assert [row["cfg"] for row in report["results"]] == [1.0, 3.0]
    assert all("original_class_rate" not in row for row in report["results"])  # only class edits have one


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--box", "0", "0", "1", "1"], "--box belongs to --edit inpaint|outpaint"),
        (["--edit-target", "next"], "--edit-target belongs to --edit"),
        (["--edit", "inpaint", "--reconstructions"], "--edit reports the inputs and their reconstructions itself"),
        (["--edit", "inpaint", "--model", "bundled:scenes"], "a text model is compared with captioned images"),
        (["--edit", "inpaint", "--loss", "--tokens", "x"], "--edit is for sample evaluation, not for --loss"),
        (["--edit", "inpaint", "--box", "0.5", "0.5", "0.5", "0.9"], "box"),
    ],
)
def test_edit_flags_out_of_place_are_refused_in_one_line(tmp_path, capsys, flags, message):
    argv = ["evaluate", *REFERENCE, "--num", "8", *flags, "--out", str(tmp_path / "r.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_samples_on_disk_refuse_edit(tmp_path, capsys):
    argv = ["evaluate", "--samples", str(tmp_path / "none.npz"), *REFERENCE, "--edit", "inpaint"]
    assert main(argv) == 2
    assert "--edit is for evaluating a model" in capsys.readouterr().err


def test_the_cli_names_the_edit_targets_the_generator_knows():
    from nextscale.cli.evaluate_edit import EDIT_TARGETS as CLI_TARGETS
    from nextscale.evaluation.generate import EDIT_TARGETS

    assert CLI_TARGETS == EDIT_TARGETS


def test_wrong_edits_are_refused_before_the_reference_goes_through_the_features(tmp_path, capsys):
    import dataclasses

    import numpy as np
    from PIL import Image

    from nextscale.presets import tiny
    from nextscale.sampling.raster_pipeline import RasterPipeline
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.raster_config import RasterConfig
    from nextscale.transformer.raster_model import RasterTransformer

    tokenizer_config, _ = tiny()
    side = tokenizer_config.scale_sides[-1]
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, scale_sides=(side,)))
    config = RasterConfig.from_depth(1, embed_dim=32, num_heads=1, num_classes=10, vocab_size=64, side=side)
    RasterPipeline(tokenizer, RasterTransformer(config)).save_pretrained(tmp_path / "raster")
    argv = ["evaluate", "--model", str(tmp_path / "raster"), *REFERENCE, "--edit", "inpaint"]
    assert main(argv) == 2
    assert "the raster-scan baseline cannot do" in capsys.readouterr().err

    assert main(["evaluate", *REFERENCE, "--edit", "inpaint", "--num", "200"]) == 2  # the assets hold 100
    assert "--num 200: --edit takes real images of --reference" in capsys.readouterr().err

    for index in range(11):  # eleven classes for a ten-class model
        (tmp_path / "eleven" / f"class{index:02d}").mkdir(parents=True)
        Image.fromarray(np.full((32, 32), 20 * index, np.uint8)).save(
            tmp_path / "eleven" / f"class{index:02d}" / "a.png"
        )
    flags = ["--reference", str(tmp_path / "eleven"), "--features", "classifier", "--edit", "inpaint", "--num", "11"]
    assert main(["evaluate", *flags]) == 2
    assert "has 11 classes and the model 10" in capsys.readouterr().err
