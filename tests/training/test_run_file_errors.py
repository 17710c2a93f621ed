"""A --config run file that is broken is refused in one line naming the file, the key and the fix; parsing only."""

import json

import pytest

from nextscale.cli import build_parser, main
from nextscale.cli.train_tokenizer import RUN_FILE_SOURCES
from nextscale.training.options import apply_run_file


def run_file(tmp_path, content) -> str:
    path = tmp_path / "run.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def apply(path: str, command: str = "train-tokenizer", typed: tuple[str, ...] = ()):
    args = build_parser().parse_args([command, "--config", path, *typed])
    return apply_run_file(args, RUN_FILE_SOURCES)


# (case id, file content, words the error must contain after "PATH")
BAD_FILES = [
    ("no-args", {"preset": "tiny", "steps": 2}, 'holds its flags under "args"', '(top-level keys: "preset", "steps")'),
    ("flag-on-top", {"args": {}, "steps": 2}, 'move "steps" into "args"'),
    ("top-level-list", [1, 2], 'a run file is a JSON object like {"args": {"steps": 2}}, got a list'),
    ("args-list", {"args": [1]}, '"args" must be an object of flag names and values, got a list'),
    ("float-type-word", {"args": {"lr": "fast"}}, '"lr" must be a number or "none" (as --lr takes), got "fast"'),
    ("int-word", {"args": {"steps": "three"}}, '"steps" must be a whole number >= 1 (as --steps takes), got "three"'),
    ("int-zero", {"args": {"steps": 0}}, '"steps" must be a whole number >= 1 (as --steps takes), got 0'),
    ("interval", {"args": {"eval-every": -2}}, '"eval-every" must be a whole number >= 1 or "none"'),
    (
        "int-fraction",
        {"args": {"batch-size": 4.5}},
        '"batch-size" must be a whole number >= 1 (as --batch-size takes), got 4.5',
    ),
    ("int-as-float", {"args": {"steps": 4.0}}, '"steps" must be a whole number >= 1 (as --steps takes), got 4.0'),
    ("int-bool", {"args": {"seed": True}}, '"seed" must be an integer (as --seed takes), got true'),
    ("int-null", {"args": {"batch-size": None}}, '"batch-size" must be a whole number >= 1 (as --batch-size takes)'),
    ("schedule", {"args": {"lr-schedule": "fast"}}, '"lr-schedule" must be one of "lin0", "cos", "constant" or'),
    ("choice", {"args": {"precision": "fp8"}}, '"precision" must be one of "auto", "fp32", "bf16", "fp16"'),
    ("switch", {"args": {"compile": "yes"}}, '"compile" must be true or false (as --compile takes), got "yes"'),
    ("nargs-count", {"args": {"betas": [0.9]}}, '"betas" must be a list of 2 values, each a number'),
    (
        "comma-list",
        {"args": {"scale-sides": [1, 2.5]}},
        '"scale-sides" must be whole numbers >= 1 like [1, 2, 4] or "1,2,4"',
    ),
    ("unknown", {"args": {"foo": 1}}, "unknown flag 'foo' in 'args' (see `nextscale train-tokenizer --help`"),
    ("typo", {"args": {"batch_sise": 4}}, "unknown flag 'batch_sise'", "did you mean 'batch-size'?"),
    (
        "other-command",
        {"command": "nextscale train --config run.json", "args": {"tokens": "t"}},
        "unknown flag 'tokens' in 'args'",
        "the file's 'command' runs it with `nextscale train`",
    ),
    ("not-json", '{"args": {', "is not valid JSON (Expecting property name"),
]


@pytest.mark.parametrize(("content", "expected"), [(c, e) for _, c, *e in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_run_file_is_refused_naming_file_key_and_fix(tmp_path, content, expected):
    path = run_file(tmp_path, content)
    with pytest.raises(ValueError) as err:
        apply(path)
    assert str(err.value).startswith(path)
    for words in expected:
        assert words in str(err.value)


def test_bad_value_is_refused_also_when_the_command_line_overrides_it(tmp_path):
    with pytest.raises(ValueError, match='"steps" must be a whole number >= 1'):
        apply(run_file(tmp_path, {"args": {"steps": "three"}}), typed=("--steps", "1"))


def test_missing_run_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="run file .*missing.json not found"):
        apply(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="is not a file; --config takes a JSON file"):
        apply(str(tmp_path))


# (command, run-file args, dest, value): JSON values read as the flag reads typed text
GOOD_VALUES = [
    ("train-tokenizer", {"steps": "3"}, "steps", 3),
    ("train-tokenizer", {"lr": 1}, "lr", 1.0),
    ("train-tokenizer", {"lr": None}, "lr", None),
    ("train-tokenizer", {"lr": "none"}, "lr", None),
    ("train-tokenizer", {"betas": [0.9, "0.95"]}, "betas", [0.9, 0.95]),
    ("train-tokenizer", {"channel-multipliers": [1, 2]}, "channel_multipliers", (1, 2)),
    ("train-tokenizer", {"precision": "bf16"}, "precision", "bf16"),
    ("train", {"preview-prompts": "a bag"}, "preview_prompts", ["a bag"]),
    ("train", {"raster": False}, "raster", False),
    ("train", {"keep-checkpoints": 0}, "keep_checkpoints", 0),  # 0 keeps every checkpoint
]


@pytest.mark.parametrize(("command", "file_args", "dest", "expected"), GOOD_VALUES)
def test_good_values_parse_like_the_flag(tmp_path, command, file_args, dest, expected):
    args = apply(run_file(tmp_path, {"args": file_args}), command)
    assert getattr(args, dest) == expected
    assert type(getattr(args, dest)) is type(expected)


@pytest.mark.parametrize("content", [{"steps": 2}, [1, 2], {"args": {"lr": "fast"}}, '{"args": {'])
def test_cli_prints_one_line_and_exits_2(tmp_path, capsys, content):
    path = run_file(tmp_path, content)
    # A data folder that does not exist: were the file ignored, the run still stops before any training.
    argv = ["train-tokenizer", "--config", path, "--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nextscale train-tokenizer: error: {path}")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("command", "flags", "expected"),
    [
        ("train", ["--steps", "-5"], "argument --steps: must be >= 1, got -5"),
        ("train", ["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        ("train-tokenizer", ["--eval-every", "0"], "argument --eval-every: must be >= 1, got 0"),
        ("train-tokenizer", ["--max-steps", "two"], "argument --max-steps: expected a whole number >= 1, got 'two'"),
    ],
)
def test_counts_below_one_are_refused_while_parsing(tmp_path, capsys, command, flags, expected):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit, before the command runs
        main([command, *flags, "--run-dir", str(run_dir)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not run_dir.exists()  # refused before the run folder (or its lock) is made
