"""CLI output from a first-hour walkthrough (s20 h10): wrong advice for a training checkpoint, interrupt notes,
`info` on unexpected paths, KID / FID rounding, the --loss table and prompt-grid labels."""

import json
from pathlib import Path

import numpy as np

from nextscale.cli import main

SCENES = Path(__file__).resolve().parents[1] / "assets" / "scenes"


def make_run(folder: Path, kind: str) -> Path:
    """A run folder as `nextscale train` leaves it, reduced to what the path check reads; returns a checkpoint."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": kind}))
    checkpoint = folder / "checkpoints" / "step-00000150.pt"
    checkpoint.write_bytes(b"not read")
    return checkpoint


def test_sample_of_a_training_checkpoint_names_the_run_and_export(tmp_path, capsys):
    checkpoint = make_run(tmp_path / "run", "transformer")
    assert main(["sample", "--model", str(checkpoint), "--prompt", "a bag", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"--model {tmp_path / 'run'}`" in err
    assert f"nextscale export --run {tmp_path / 'run'} --step 150 --out DIR" in err
    assert "convert" not in err


def test_a_tokenizer_checkpoint_or_an_unknown_file_gets_its_own_advice(tmp_path):
    from nextscale.sampling.pipeline_folder import file_given_for_folder

    tokenizer_checkpoint = make_run(tmp_path / "tok", "tokenizer")
    said = file_given_for_folder(tokenizer_checkpoint)
    assert "tokenizer training checkpoint" in said and "--model" not in said and "--step 150" in said
    official = tmp_path / "var_d16.pth"
    official.write_bytes(b"x")
    assert "nextscale convert --vae VAE.pth --var var_d16.pth" in file_given_for_folder(official)


def test_interrupted_sample_says_what_it_wrote_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    import nextscale.cli.sample as sample_command

    calls = []

    def stop_at_second_batch(seed, batch_idx, _real=sample_command.batch_seed):
        calls.append(batch_idx)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _real(seed, batch_idx)

    argv = ["sample", "--class", "0", "--num", "4", "--batch-size", "2", "--seed", "0", "--no-progress"]
    argv += ["--out-dir", str(tmp_path / "many")]
    monkeypatch.setattr(sample_command, "batch_seed", stop_at_second_batch)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted: 2 new PNGs written to" in err and "re-run the same command to resume" in err
    monkeypatch.undo()
    assert main(argv) == 0
    assert "wrote 2 PNGs (one per image)" in capsys.readouterr().out  # and the first two were kept
    assert len(list((tmp_path / "many").glob("*.png"))) == 4


def test_interrupt_notes_without_out_dir_and_without_seed():
    from nextscale.cli.sample_files import interrupted_note

    assert "nothing was written" in interrupted_note(None, 0, 0, 8, resumable=True)
    note = interrupted_note(Path("out"), 3, 2, 8, resumable=False)
    assert "3 new PNGs written to out/ (2 were there before)" in note and "re-run without --out" in note


def test_info_on_a_run_that_stopped_before_saving(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").touch()
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "stopped before it saved anything" in out and f"--run-dir {tmp_path / 'run'}" in out


def test_info_on_an_image_says_it_is_one(tmp_path, capsys):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "grid.png")
    assert main(["info", str(tmp_path / "grid.png")]) == 2
    err = capsys.readouterr().err
    assert "grid.png is an image;" in err and "checkpoint (corrupt" not in err


def test_info_quotes_recorded_prompts_so_they_read_apart():
    from nextscale.cli.info import as_text

    shown = as_text({"what": "x", "settings": {"--prompt": ["a bag in the top left", "a coat"], "--num": 4}})
    assert "--prompt 'a bag in the top left' 'a coat', --num 4" in shown


def test_info_on_captioned_data_reads_it_as_the_text_tokenizer_does(capsys):
    assert main(["info", f"captions:{SCENES / 'train'}"]) == 0
    read_at = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("read at")]
    assert read_at and "64x64 px, grayscale" in read_at[0] and "var-d16" not in read_at[0]


def test_kid_of_whole_sets_has_no_spread_and_tiny_std_prints_as_zero():
    from nextscale.cli.evaluate_scores import format_kid
    from nextscale.evaluation.kid import kernel_inception_distance

    rng = np.random.default_rng(0)
    kid = kernel_inception_distance(rng.normal(size=(20, 8)), rng.normal(size=(20, 8)), num_subsets=5)
    assert kid.std == 0.0
    assert format_kid(25.82, 1.5e-14) == "25.82 ± 0" and format_kid(0.02, 0.003) == "0.02 ± 0.003"


def test_fid_of_a_set_with_itself_is_zero_not_a_rounding_negative():
    from nextscale.evaluation.fid import FeatureStats, frechet_distance

    # singular covariance (50 points in 64 dims): the trace terms round to about -4.6e-5 here
    stats = FeatureStats.from_features(np.random.default_rng(0).normal(size=(50, 64)) * 10)
    assert frechet_distance(stats.mean, stats.cov, stats.mean, stats.cov) == 0.0


def test_loss_summary_is_a_short_table():
    from nextscale.cli.evaluate_loss import loss_summary

    report = {
        "model": "models/star2",
        "checkpoint_step": 150,
        "weights": "ema",
        "measured": "held-out test loss",
        "model_kind": "next-scale",
        "conditioning": "text",
        "tokens": "tokens/test",
        "dtype": "fp32",
        "num_samples": 20,
        "scale_sides": [1, 2],
        "scale_loss": [2.975, 3.486],
        "token_error": [0.5, 0.875],
        "L_last": 3.486,
        "L_avg": 3.384,
        "Err_last": 0.875,
        "Err_avg": 0.8,
    }
    lines = loss_summary(report).splitlines()
    assert (
        lines[0]
        == "held-out test loss of models/star2 (checkpoint step 150, ema weights) on 20 sequences of tokens/test"
    )
    assert lines[3].split() == ["1", "1", "2.975", "0.500"] and len(lines) == 6
    assert lines[-1].startswith("L_avg 3.384, L_last 3.486")


def test_grid_labels_of_prompts_that_cut_alike_show_where_they_differ():
    from nextscale.cli.sample import grid_labels

    first = "a bag in the top left and a sneaker in the bottom right"
    second = "a bag in the top left and a sneaker in the top right"
    labels = grid_labels([first, first, second, "a coat", ""])
    assert labels == ["...bottom right", "...bottom right", "...top right", "a coat", "(empty prompt)"]
