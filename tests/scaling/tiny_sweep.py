"""The settings of the tests' tiny sweeps (conftest's ``sweep_argv`` and ``finished_sweep`` use them)."""

# `nextscale train` flags after `--`: the tiny preset, an eval on 32 held-out maps, no previews, no EMA
TRAIN_FLAGS = ("--preset", "tiny", "--lr", "3e-3", "--warmup", "1", "--eval-samples", "32", "--preview-every", "none")
TRAIN_FLAGS += ("--log-every", "1", "--no-progress", "--ema-decay", "none")
# `scaling run` settings: width 16 d, batch 8, 3 steps, a held-out evaluation every step
SWEEP_SETTINGS = ("--width-base", "16", "--batch-size", "8", "--steps", "3", "--eval-every", "1")
