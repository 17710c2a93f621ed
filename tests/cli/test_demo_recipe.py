"""The run files in configs/ record exactly the recipe that `nextscale demo --train` runs."""

import json
import shlex
from pathlib import Path

import pytest

from nextscale.cli.demo_recipe import TEXT_TRANSFORMER_ARGS, TOKENIZER_ARGS, TRANSFORMER_ARGS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _recipe_args(name: str) -> dict:
    args = json.loads((CONFIGS / name).read_text())["args"]
    # data locations differ between the run file (repository paths) and demo --train (its run directory)
    return {key: value for key, value in args.items() if key not in ("data", "tokens", "eval-tokens")}


def train_line_args(run_dir: Path, tokenizer: Path) -> list[str]:
    from nextscale.cli import demo_recipe

    tokens = ["--tokens", str(run_dir / "tokens-train"), "--eval-tokens", str(run_dir / "tokens-test")]
    return [
        "--tokenizer",
        str(tokenizer),
        *tokens,
        "--run-dir",
        str(run_dir / "transformer"),
        *demo_recipe.as_flags(demo_recipe.TEXT_TRANSFORMER_ARGS),
    ]


def test_tokenizer_run_file_equals_the_demo_recipe():
    assert _recipe_args("fashion_mnist_tokenizer.json") == TOKENIZER_ARGS


def test_transformer_run_file_equals_the_demo_recipe():
    assert _recipe_args("fashion_mnist_transformer.json") == TRANSFORMER_ARGS


def test_scene_transformer_run_file_equals_the_text_demo_recipe():
    assert _recipe_args("fashion_scenes_transformer.json") == TEXT_TRANSFORMER_ARGS


def test_text_recipe_runs_end_to_end_and_resumes(tmp_path, monkeypatch, capsys):
    # The real recipe, shrunk: 24 training and 8 held-out scenes from the test-asset IDX files, 4 steps.
    from nextscale.cli import demo_recipe
    from nextscale.sampling.pipeline import Pipeline

    assets = Path(__file__).resolve().parents[1] / "assets"
    monkeypatch.setattr(demo_recipe, "TEXT_SCENES", (("train", 24, 0), ("test", 8, 1)))
    tiny = dict(TEXT_TRANSFORMER_ARGS, steps=4, **{"batch-size": 4, "eval-every": 4, "eval-samples": 8})
    tiny.update({"preview-every": "none", "checkpoint-every": 2, "log-every": 2, "precision": "fp32"})
    monkeypatch.setattr(demo_recipe, "TEXT_TRANSFORMER_ARGS", tiny)
    tokenizer = Path(demo_recipe.__file__).resolve().parents[1] / "assets" / "scenes" / "tokenizer"
    folder = demo_recipe.retrain_text(tmp_path, assets / "fashion_mnist", tokenizer)
    pipe = Pipeline.from_pretrained(folder)
    assert type(pipe).__name__ == "TextPipeline" and pipe.image_size == 64
    # the retrained model recommends what the bundled one does (its card: .recommend(cfg=3.0, top_k=10))
    bundled = json.loads((tokenizer.parent / "pipeline.json").read_text())["recommended_sampling"]
    assert pipe.recommended_sampling == bundled == demo_recipe.TEXT_RECOMMENDED_SAMPLING
    # the printed stage lines are quoted, so they can be pasted into a shell as they are
    train_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("$ nextscale train "))
    assert shlex.split(train_line)[1:] == ["nextscale", "train", *train_line_args(tmp_path, tokenizer)]
    assert len(json.loads((tmp_path / "tokens-train" / "manifest.json").read_text())["shards"]) >= 1
    capsys.readouterr()
    demo_recipe.retrain_text(tmp_path, assets / "fashion_mnist", tokenizer)  # finished stages are reused
    assert "$ nextscale tokenize" not in capsys.readouterr().out


def test_demo_train_text_samples_from_the_retrained_text_model(tmp_path, monkeypatch):
    from nextscale.cli import demo_recipe, main
    from nextscale.cli.demo_text import BUNDLED_TEXT_MODEL

    calls = []

    def fake_retrain_text(run_dir, data, tokenizer):
        calls.append((run_dir, tokenizer))
        return BUNDLED_TEXT_MODEL  # stands in for the freshly exported pipeline

    monkeypatch.setattr(demo_recipe, "retrain_text", fake_retrain_text)
    args = ["demo", "--train", "text", "--run-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    assert main([*args, "--class", "0", "--seeds", "1"]) == 0
    assert calls == [(tmp_path / "runs", BUNDLED_TEXT_MODEL / "tokenizer")]
    assert (tmp_path / "out" / "prompts.png").is_file()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--train", "--top-k", "0"], "--top-k must be an integer >= 1"),
        (["--train", "--temperature", "0"], "--temperature must be a finite number > 0"),
        (["--train", "--class", "42"], "class 42 is out of range"),
        (["--train", "--class", "sock"], "unknown class name 'sock'"),
        (["--train", "--device", "nonsense"], "--device 'nonsense' is not a torch device"),
        (["--train", "text", "--masked-sampling"], "--masked-sampling is for the text half"),
        (["--masked-sampling", "--no-text"], "--masked-sampling is for the text half"),
        (["--data", "{tmp}"], "--data and --run-dir are for --train"),
        (["--run-dir", "{tmp}/runs"], "--data and --run-dir are for --train"),
    ],
)
def test_demo_refuses_bad_flags_before_any_training(flags, expected, tmp_path, monkeypatch, capsys):
    # A flag that sampling would refuse must not wait for the end of a --train run (hours) to be refused.
    from nextscale.cli import demo_recipe, main

    calls = []
    monkeypatch.setattr(demo_recipe, "retrain", lambda *args: calls.append(args))
    monkeypatch.setattr(demo_recipe, "retrain_text", lambda *args: calls.append(args))
    argv = ["demo", "--no-text", *[flag.format(tmp=tmp_path) for flag in flags], "--out-dir", str(tmp_path / "out")]
    if flags[:2] == ["--train", "text"]:
        argv.remove("--no-text")  # the text half is what --train text retrains
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert calls == [] and not (tmp_path / "out" / "samples.png").exists()


def test_demo_train_text_with_no_text_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    # --train text retrains the text model (hours on a CPU) that --no-text would then never sample from.
    from nextscale.cli import demo_recipe, main

    calls = []
    monkeypatch.setattr(demo_recipe, "retrain_text", lambda *args: calls.append(args))
    assert main(["demo", "--train", "text", "--no-text", "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-text skips the text half that --train text retrains" in err, err
    assert calls == [] and not (tmp_path / "out").exists()


def test_an_interrupted_tokenize_stage_is_redone_when_the_recipe_resumes(tmp_path, capsys):
    # tokenize refuses a folder of unfinished shards without --overwrite: a --train interrupted while tokenizing
    # failed at every re-run ("fix the problem above and re-run to resume") instead of resuming.
    from nextscale.cli.demo_recipe import _run_stages
    from nextscale.data.token_dataset import TokenShardDataset

    assets = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"
    out = tmp_path / "tokens"
    stage = ["tokenize", "--tokenizer", "bundled:fashion-mnist", "--data", f"fashion-mnist:{assets}", "--out", str(out)]
    _run_stages([[*stage, "--split", "test", "--no-progress"]])
    (out / "manifest.json").unlink()  # killed before the manifest: the shards stay, unfinished
    _run_stages([[*stage, "--split", "test", "--no-progress"]])
    assert "--overwrite" in capsys.readouterr().out
    assert len(TokenShardDataset(out)) > 0
