"""The run files in configs/ record exactly the recipe that `nextscale demo --train` runs."""

import json
from pathlib import Path

from nextscale.cli.demo_recipe import TEXT_TRANSFORMER_ARGS, TOKENIZER_ARGS, TRANSFORMER_ARGS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _recipe_args(name: str) -> dict:
    args = json.loads((CONFIGS / name).read_text())["args"]
    # data locations differ between the run file (repository paths) and demo --train (its run directory)
    return {key: value for key, value in args.items() if key not in ("data", "tokens", "eval-tokens")}


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
