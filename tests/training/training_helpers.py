"""Tiny models and data for the training tests (CPU, seconds); imported by the tests and their worker processes."""

import dataclasses
import json
from pathlib import Path

from nextscale.data.fashion_mnist import FashionMNIST
from nextscale.presets import tiny
from nextscale.training.config import TrainConfig

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


def tiny_configs(deterministic: bool = False):
    """The tiny preset with 1-channel 16 px images (the IDX assets); optionally without any randomness."""
    tokenizer, transformer = tiny()
    tokenizer = dataclasses.replace(tokenizer, in_channels=1)
    if deterministic:
        transformer = dataclasses.replace(transformer, drop_path_rate=0.0, cond_drop_rate=0.0)
    return tokenizer, transformer


def tiny_data():
    return FashionMNIST(ASSETS, "train", 16, 1), FashionMNIST(ASSETS, "test", 16, 1)


def train_config(**overrides) -> TrainConfig:
    values = dict(
        total_steps=6,
        batch_size=8,
        lr=2e-3,
        warmup=1,
        log_every=1,
        checkpoint_every=None,
        eval_samples=16,
        progress=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def read_metrics(run_dir, split="train"):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["split"] == split]
