"""The run files in configs/ record exactly the recipe that `nextscale demo --train` runs."""

import json
from pathlib import Path

from nextscale.cli.demo_recipe import TOKENIZER_ARGS, TRANSFORMER_ARGS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _recipe_args(name: str) -> dict:
    args = json.loads((CONFIGS / name).read_text())["args"]
    # data locations differ between the run file (repository paths) and demo --train (its run directory)
    return {key: value for key, value in args.items() if key not in ("data", "tokens", "eval-tokens")}


def test_tokenizer_run_file_equals_the_demo_recipe():
    assert _recipe_args("fashion_mnist_tokenizer.json") == TOKENIZER_ARGS


def test_transformer_run_file_equals_the_demo_recipe():
    assert _recipe_args("fashion_mnist_transformer.json") == TRANSFORMER_ARGS
