"""The recipe of the bundled Fashion-MNIST model, run by ``nextscale demo --train``.

The same flags are recorded in ``configs/fashion_mnist_tokenizer.json`` and
``configs/fashion_mnist_transformer.json`` (a test keeps them equal). Every stage is an ordinary CLI
command with its own run directory, so an interrupted ``--train`` resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

# 32x32 grayscale, 4x downsampling to an 8x8 latent, scales (1, 2, 3, 4, 6, 8), 512 codes of 16 channels.
TOKENIZER_ARGS: dict[str, object] = {
    "preset": "fashion-mnist",
    "steps": 2500,
    "batch-size": 64,
    "lr": 4e-4,
    "lr-schedule": "cos",
    "warmup": 0.02,
    "ema-decay": 0.999,
    "disc-start": 1250,
    "disc-channels": 32,
    "disc-layers": 2,
    "dead-code-every": 100,
    "dead-code-min-hits": 0.5,
    "eval-every": 500,
    "eval-samples": 1000,
    "preview-every": 500,
    "checkpoint-every": 250,
    "log-every": 50,
}

# Depth 4 (width 256, 4 heads), the official objective and optimiser with a small-model learning rate.
TRANSFORMER_ARGS: dict[str, object] = {
    "preset": "fashion-mnist",
    "steps": 2000,
    "batch-size": 64,
    "lr": 6e-4,
    "lr-schedule": "lin0",
    "warmup": 0.02,
    "end-lr-factor": 0.1,
    "weight-decay": 0.05,
    "grad-clip": 2.0,
    "ema-decay": 0.999,
    "init-adaln-gamma": 1e-3,
    "preview-cfg": 3.0,
    "eval-every": 500,
    "eval-samples": 1000,
    "preview-every": 500,
    "checkpoint-every": 250,
    "log-every": 50,
}


def as_flags(args: dict[str, object]) -> list[str]:
    flags = []
    for name, value in args.items():
        flags += [f"--{name}", str(value)]
    return flags


def retrain(run_dir: Path, data: Path | None) -> Path:
    """Train tokenizer -> tokenize -> train transformer -> export; returns the exported pipeline folder."""
    from nextscale.cli import CommandError, main

    dataset = "fashion-mnist" if data is None else f"fashion-mnist:{data}"
    stages = [
        ["train-tokenizer", "--data", dataset, "--run-dir", str(run_dir / "tokenizer"), *as_flags(TOKENIZER_ARGS)],
        ["tokenize", "--tokenizer", str(run_dir / "tokenizer"), "--data", dataset, "--out", str(run_dir / "tokens")],
        [
            "train",
            "--tokenizer",
            str(run_dir / "tokenizer"),
            "--tokens",
            str(run_dir / "tokens"),
            "--data",
            dataset,
            "--run-dir",
            str(run_dir / "transformer"),
            *as_flags(TRANSFORMER_ARGS),
        ],
        ["export", "--run", str(run_dir / "transformer"), "--out", str(run_dir / "pipeline")],
    ]
    for stage in stages:
        if stage[0] == "tokenize" and (run_dir / "tokens" / "manifest.json").is_file():
            continue  # tokenizing is deterministic; a finished token folder is reused on resume
        print("$ nextscale " + " ".join(stage), flush=True)
        if main(stage) != 0:
            raise CommandError(f"stage `{stage[0]}` failed; fix the problem above and re-run to resume")
    return run_dir / "pipeline"
