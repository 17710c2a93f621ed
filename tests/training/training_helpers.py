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


def tiny_raster_parts():
    """A tiny tokenizer moved to its finest map alone, and the raster baseline's config on the tiny blocks."""
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.training.export import with_scale_sides
    from nextscale.transformer.raster_config import RasterConfig

    tokenizer_config, transformer_config = tiny_configs()
    side = tokenizer_config.scale_sides[-1]
    tokenizer = with_scale_sides(MultiScaleVQVAE(tokenizer_config), (side,))  # one map: the raster tokens
    config = RasterConfig.from_depth(
        transformer_config.depth,
        embed_dim=transformer_config.embed_dim,
        num_heads=transformer_config.num_heads,
        num_classes=transformer_config.num_classes,
        vocab_size=transformer_config.vocab_size,
        side=side,
    )
    return tokenizer, config


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


def state_differences(a, b, atol: float = 0.0, rtol: float = 0.0, prefix: str = "") -> list[str]:
    """Where two checkpoint states differ: tensors beyond ``atol + rtol * |b|`` (both 0: bit-exact), other
    values by ``==``. Returns readable "key: detail" lines, empty when the states agree."""
    import torch

    if torch.is_tensor(a):
        if not torch.is_tensor(b) or a.dtype != b.dtype or a.shape != b.shape:
            return [f"{prefix}: {getattr(a, 'shape', a)} vs {getattr(b, 'shape', b)}"]
        if atol == 0.0 and rtol == 0.0 or not a.is_floating_point():
            return [] if torch.equal(a, b) else [f"{prefix}: not bit-identical"]
        excess = ((a - b).abs() - rtol * b.abs()).max().item() if a.numel() else 0.0
        return [] if excess <= atol else [f"{prefix}: differs by {excess:.3g} beyond rtol {rtol}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{prefix}: keys {sorted(map(str, set(a) ^ set(b)))} in only one"]
        return [line for key in a for line in state_differences(a[key], b[key], atol, rtol, f"{prefix}.{key}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [
            line for i, (x, y) in enumerate(zip(a, b)) for line in state_differences(x, y, atol, rtol, f"{prefix}[{i}]")
        ]
    return [] if a == b else [f"{prefix}: {a!r} vs {b!r}"]


def train_tokenizer_error(tmp_path, capsys, file_args: dict, typed: str) -> tuple[str, Path]:
    """Run `train-tokenizer` with a run file holding ``file_args`` (its data missing) and the flags ``typed``; the
    command must fail in one line (a refused option, or else the missing data). Returns (that line, the run dir)."""
    import shlex

    from nextscale.cli import main

    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"args": {"data": "fashion-mnist:missing", **file_args}}))
    run_dir = tmp_path / "run"
    argv = ["train-tokenizer", "--config", str(run_file), "--run-dir", str(run_dir), *shlex.split(typed)]
    assert main(argv) == 2  # refused before any data is read; otherwise the missing data is the error
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err, run_dir
