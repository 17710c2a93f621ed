"""The recipes of the bundled models, run by ``nextscale demo --train`` (class) and ``--train text``.

The same flags are recorded in ``configs/fashion_mnist_tokenizer.json``,
``configs/fashion_mnist_transformer.json`` and ``configs/fashion_scenes_transformer.json`` (a test keeps
them equal). Every stage is an ordinary CLI command with its own run directory, so an interrupted
``--train`` resumes where it stopped.
"""

from __future__ import annotations

import shlex
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


# The scene model's transformer (STAR depth 4 on 64 px Fashion-MNIST scenes). It reuses the bundled scene
# tokenizer instead of re-running its 150-step fine-tune. 3,900 x 256 scenes: 5.6 min on one H200, about
# 16 h on a 2-core CPU (16-19 scenes/s).
TEXT_TRANSFORMER_ARGS: dict[str, object] = {
    "text-encoder": "default",
    "preset": "fashion-scenes",
    "steps": 3900,
    "batch-size": 256,
    "lr": 0.001,
    "lr-schedule": "lin0",
    "warmup": 0.02,
    "end-lr-factor": 0.1,
    "weight-decay": 0.05,
    "grad-clip": 2.0,
    "ema-decay": 0.998,
    "precision": "bf16",
    "preview-cfg": 3.0,
    "preview-prompts": [
        "a bag in the top left and a sneaker in the bottom right",
        "a dress in the top right",
        "a t-shirt in the top left and a trouser in the top right",
        "an ankle boot in the bottom left",
    ],
    "eval-every": 975,
    "eval-samples": 2000,
    "preview-every": 1950,
    "checkpoint-every": 487,
    "log-every": 50,
}

# Scenes built for --train text: (split, count, seed), as in the recorded run.
TEXT_SCENES = (("train", 40000, 0), ("test", 2000, 1))

# The sampling settings the bundled scene folder recommends (its MODEL_CARD: ``.recommend(cfg=3.0, top_k=10)``);
# the retrained export records them too, so `demo` and `sample` use them for the flags left out.
TEXT_RECOMMENDED_SAMPLING: dict[str, object] = {"cfg": 3.0, "top_k": 10}


def as_flags(args: dict[str, object]) -> list[str]:
    flags = []
    for name, value in args.items():
        flags += [f"--{name}", *(str(item) for item in value)] if isinstance(value, list) else [f"--{name}", str(value)]
    return flags


def retrain(run_dir: Path, data: Path | None) -> Path:
    """Train tokenizer -> tokenize -> train transformer -> export; returns the exported pipeline folder."""
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
    _run_stages(stages)
    return run_dir / "pipeline"


def retrain_text(run_dir: Path, data: Path | None, tokenizer: Path) -> Path:
    """Scenes -> tokens (with ``tokenizer``) -> STAR transformer -> export; returns the pipeline folder."""
    source = [] if data is None else ["--data", str(data)]
    stages = []
    for split, count, seed in TEXT_SCENES:
        scenes, tokens = run_dir / f"scenes-{split}", run_dir / f"tokens-{split}"
        stages += [
            [
                "make-scenes",
                *source,
                "--split",
                split,
                "--count",
                str(count),
                "--seed",
                str(seed),
                "--out",
                str(scenes),
            ],
            # every scene of each folder: the test folder is the held-out set, so nothing is carved from either
            ["tokenize", "--tokenizer", str(tokenizer), "--data", f"captions:{scenes}", "--split", "all"]
            + ["--out", str(tokens)],
        ]
    stages += [
        [
            "train",
            "--tokenizer",
            str(tokenizer),
            "--tokens",
            str(run_dir / "tokens-train"),
            "--eval-tokens",
            str(run_dir / "tokens-test"),
            "--run-dir",
            str(run_dir / "transformer"),
            *as_flags(TEXT_TRANSFORMER_ARGS),
        ],
        [
            "export",
            "--run",
            str(run_dir / "transformer"),
            "--out",
            str(run_dir / "pipeline"),
            "--recommend",
            *(f"{key}={value}" for key, value in TEXT_RECOMMENDED_SAMPLING.items()),
        ],
    ]
    _run_stages(stages)
    return run_dir / "pipeline"


def _run_stages(stages: list[list[str]]) -> None:
    from nextscale.cli import CommandError, main

    for stage in stages:
        out = Path(stage[stage.index("--out") + 1]) if "--out" in stage else None
        if stage[0] == "tokenize" and out is not None and (out / "manifest.json").is_file():
            continue  # tokenizing is deterministic; a finished token folder is reused on resume
        if stage[0] == "tokenize" and out is not None and out.is_dir() and any(out.iterdir()):
            stage = [*stage, "--overwrite"]  # an interrupted tokenization starts again (tokenize cannot resume one)
        print("$ " + shlex.join(["nextscale", *stage]), flush=True)  # quoted: the line can be pasted into a shell
        if main(stage) != 0:
            raise CommandError(f"stage `{stage[0]}` failed; fix the problem above and re-run to resume")
