"""`scaling run` checks the held-out tokens before it writes sweep.json (a bad folder must not lock the sweep to
it), refuses the training tokens as the held-out set (`train` warns), warns for a train-split held-out folder, and
notes runs whose held-out loss is the uniform guess ln(V)."""

import json
import math
import shutil
from types import SimpleNamespace

from nextscale.cli import main
from nextscale.scaling.chance import chance_notes
from nextscale.training.chance import at_chance


def _with_eval_tokens(argv: list[str], eval_tokens) -> list[str]:
    argv = list(argv)
    argv[argv.index("--eval-tokens") + 1] = str(eval_tokens)
    return argv


def _copy_tokens(token_data, tmp_path, name, **manifest_changes):
    folder = tmp_path / name
    shutil.copytree(token_data[2], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **manifest_changes}))
    return folder


def test_bad_held_out_tokens_leave_nothing_and_the_fixed_rerun_trains(token_data, sweep_argv, tmp_path, capsys):
    out = tmp_path / "sweep"
    other_schedule = _copy_tokens(token_data, tmp_path, "other-schedule", scale_sides=[1, 2], total_tokens=5)
    assert main(_with_eval_tokens(sweep_argv(out, [1]), other_schedule)) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err and "scales" in err, err
    assert not out.exists()  # no sweep.json recording the bad folder
    # held-out tokens whose class list differs from the training tokens' (another dataset's labels)
    named = _copy_tokens(token_data, tmp_path, "named-train", class_names=[f"class{i}" for i in range(10)])
    other_classes = _copy_tokens(token_data, tmp_path, "other-classes", class_names=[f"shape{i}" for i in range(10)])
    argv = _with_eval_tokens(sweep_argv(out, [1]), other_classes)
    argv[argv.index("--tokens") + 1] = str(named)
    assert main(argv) == 2
    assert "numbers its labels differently" in capsys.readouterr().err and not out.exists()
    assert main(_with_eval_tokens(sweep_argv(out, [1]), tmp_path / "missing")) == 2
    assert "--eval-tokens" in capsys.readouterr().err and not out.exists()
    # the corrected command is not "a sweep made with other settings": it trains
    assert main(sweep_argv(out, [1])) == 0
    assert (out / "runs" / "d1" / "config.json").is_file()


def test_the_training_tokens_are_refused_as_the_held_out_set(token_data, sweep_argv, tmp_path, capsys, caplog):
    tokenizer, tokens, _ = token_data
    out = tmp_path / "sweep"
    assert main(_with_eval_tokens(sweep_argv(out, [1]), tokens)) == 2
    err = capsys.readouterr().err.strip()
    assert "--tokens and --eval-tokens both name" in err and "--split test" in err and len(err.splitlines()) == 1
    assert not out.exists()
    argv = ["train", "--tokenizer", str(tokenizer), "--tokens", str(tokens), "--eval-tokens", str(tokens)]
    argv += ["--run-dir", str(tmp_path / "run"), "--preset", "tiny", "--steps", "1", "--batch-size", "8"]
    assert main([*argv, "--eval-samples", "8", "--preview-every", "none", "--no-progress"]) == 0  # `train` warns
    assert "--tokens and --eval-tokens both name" in caplog.text


def test_a_train_split_held_out_folder_is_warned_about(token_data, sweep_argv, tmp_path, capsys):
    train_split = _copy_tokens(token_data, tmp_path, "train-split", split="train")
    assert main(_with_eval_tokens(sweep_argv(tmp_path / "sweep", [1]), train_split)) == 0
    err = capsys.readouterr().err
    assert f"warning: --eval-tokens {train_split} was tokenized from a train split" in err


def _run(loss: float, vocab_size: int = 512):
    point = SimpleNamespace(loss=loss, step=30)
    return SimpleNamespace(run="d1", evals=(point,), vocab_size=vocab_size)


def test_runs_at_the_uniform_guess_get_a_note():
    assert at_chance(6.2359, 512) and at_chance(7.0, 512) and not at_chance(5.0, 512)
    (note,) = chance_notes([_run(6.2359), _run(4.6), _run(6.3, vocab_size=None)])
    assert f"ln(512) = {math.log(512):.4f}" in note and "--lr" in note and "6.2359" in note
