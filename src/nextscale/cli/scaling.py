"""Scaling laws at small scale: train a sweep of depths (and seeds), fit L = (β·X)^α with the uncertainty of α,
draw the VAR paper's Fig. 5/6.

Examples (Fashion-MNIST tokens of the demo tokenizer; `nextscale tokenize ... --split test` for the held-out set):
    nextscale scaling run --out sweeps/fm --depths 2 3 4 5 6 --tokens tokens/fm-train --eval-tokens tokens/fm-test \\
        --tokenizer runs/fm-tokenizer --width-base 32 --steps 2000 -- --preset fashion-mnist --lr 6e-4 --no-progress
    nextscale scaling run --out sweeps/fm ... --depths 7          # extends the sweep; finished runs are kept
    nextscale scaling run --out sweeps/fm ... --seeds 0 1 2       # adds seeds 1 and 2 to every depth given
    nextscale scaling fit --sweep sweeps/fm                       # L_avg vs parameters, alpha ± its error
    nextscale scaling fit --csv sweeps/fm/points.csv --x compute --y loss_last --json
    nextscale scaling fit --sweep sweeps/fm --frontier            # L_avg on the compute Pareto frontier
    nextscale scaling fit --sweep sweeps/fm --irreducible         # L_avg = L_inf + (beta N)^alpha
    nextscale scaling plot --sweep sweeps/fm --out sweeps/fm/scaling.png
    nextscale scaling samples --sweep sweeps/fm --class 0 5 7 9 --seed 0  # same seeds, one row per model (Fig. 7)

`run` trains one ordinary `nextscale train` run per depth in OUT/runs/d{depth} (in this process; re-running
resumes unfinished runs and leaves finished ones alone; Ctrl-C stops it, and the same command resumes) with the
shape rule of TransformerConfig.from_depth: width = WIDTH_BASE x d (64 d in VAR), d heads, drop-path 0.1 d / 24.
The length of every run is --steps, or follows from a budget: --token-budget T gives T / (batch x L) steps (L
tokens per image, or the --keep-tokens of token dropping), --compute-budget C gives
C / (6 (N_token batch L + N_image batch)) steps (iso-FLOP: smaller models see more tokens; N_token are the
parameters every token passes through, N_image the AdaLN ones that act once per image on the condition, of the
model training builds, with the data's class count; see "compute" below).
Flags after `--` go to `nextscale train` unchanged (optimiser, preset, --config run file, ...); the sweep sets
--run-dir, --depth, --embed-dim, --num-heads, --drop-path-rate, the run length, --batch-size, --eval-every and the
data itself, and refuses them after `--`. OUT/sweep.json records the settings; re-running or extending the sweep
with other settings (width base, batch, budget, --eval-every, data, flags after `--`) is refused, and nothing is
written before every check has passed.

Seeds: --seeds S ... trains every given depth once per seed. The base seed, the one the flags after `--` give
(their --seed, else train's default 0), runs in OUT/runs/d{depth} as before; another seed S in
OUT/runs/d{depth}-seed{S}. Every run's command line ends in --seed S, which seeds `nextscale train`'s initial
weights, data order and dropout. Depths and seeds are the sweep's axes, not settings: a re-run may add seeds as it
adds depths (finished runs are kept), sweep.json lists both, and without --seeds a re-run trains the seeds the
sweep records (so `--depths 7` alone extends every seed).

After every run OUT/points.csv and points.json are rewritten, one row per run: depth, seed, width, parameters N
(all of them, as VAR counts; also without embeddings, and the per-token and per-image parts below), tokens seen
D = steps x batch x L, compute C = 6 (N_token D + N_image I) FLOPs with I = steps x batch images (the AdaLN
layers, 20-33 % of N at small sizes, run once per image, not per token; lookup tables, norms and attention scores
are not counted; points.csv files written before this column used C = 6 N D, 1.4-1.5x more), the last held-out
evaluation: loss (L_avg), loss_last (L_last), error (Err_avg), error_last (Err_last), whose weights they measure
(weights: raw, the trained weights, as official VAR, which keeps no EMA; `fit`/`plot --weights ema` read the EMA
weights' losses where the runs logged them) and on how many held-out sequences (eval_samples: the first ones of
--eval-tokens), whether the run finished (reached its planned steps and checkpointed them), the data it trained
and was evaluated on (train_data, eval_data: the --tokens and --eval-tokens folders, absolute) and the codebook
size (vocab_size); `fit --csv` refuses a table joining rows of other data and notes rows at the uniform guess's
loss ln(vocab_size), as it does for a --sweep's runs (points.csv files without these last columns are read as
before). To check a point:
`nextscale export --raw --run RUN_DIR --out F` then `nextscale evaluate --loss --model F --tokens EVAL_TOKENS
--num EVAL_SAMPLES` (`evaluate --model RUN_DIR` itself measures the EMA weights).

`fit` and `plot` count finished runs only (from --sweep, or the rows of a table whose "finished" column says so)
and name each run they leave out on stderr. `fit` takes logs (log L = α log β + α log X), fits a line by least
squares and reports α, β, the Pearson r of (log X, log L), the standard error of α and its 95 % confidence
interval (t distribution, n - 2 degrees of freedom; none from 2 points); every seed's run is one point, and with
several seeds per depth it adds the mean ± std of L across each depth's seeds. --json prints the same as one
object (see `scaling fit --help`). A fit so flat that β leaves floating-point range is refused. --frontier fits
the compute Pareto frontier instead, over every held-out evaluation of every finished run (the figure's dashed
line). `plot` needs matplotlib (the eval extra) and at least 2 points; with several seeds it draws every run
faintly and each depth's mean ± std. The test's sweep (tests/scaling/test_scaling_cli.py: depths 1-3 at width 16,
3 steps of batch 8 on tokens of the 200 test-asset images, then fit and plot) takes about 6 s on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from nextscale.cli.scaling_fit import add_fit_and_plot_parsers
from nextscale.cli.scaling_samples import add_samples_parser

# `nextscale train` flags the sweep sets itself (a value after `--` would contradict it): dest -> what to do instead.
_RUN_LENGTH = "use `scaling run --steps`, --token-budget or --compute-budget (every run trains its planned steps)"
SWEEP_OWNED = {
    "run_dir": "each run lives in OUT/runs/dDEPTH (or dDEPTH-seedS): choose OUT with `scaling run --out`",
    "depth": "use `scaling run --depths`",
    "embed_dim": "width = WIDTH_BASE x depth: use `scaling run --width-base`",
    "num_heads": "the depth rule gives depth heads; it cannot be set",
    "drop_path_rate": "the depth rule gives 0.1 depth / 24; it cannot be set",
    "steps": _RUN_LENGTH,
    "epochs": _RUN_LENGTH,
    "max_steps": _RUN_LENGTH,
    "batch_size": "use `scaling run --batch-size`",
    "eval_every": "use `scaling run --eval-every` (before the --)",
    "tokens": "use `scaling run --tokens`",
    "eval_tokens": "use `scaling run --eval-tokens`",
    "tokenizer": "use `scaling run --tokenizer`",
    "data": "a sweep trains on token folders: use `scaling run --tokens`",
    "eval_data": "the held-out set is `scaling run --eval-tokens`",
    "init_from": "every depth starts from fresh weights; it cannot be set",
    "raster": "a sweep measures next-scale transformers; it cannot be set",
}
# The owned flags the sweep types on every run's command line (see plan_run).
SWEEP_TYPED = (
    "tokenizer",
    "tokens",
    "eval_tokens",
    "run_dir",
    "depth",
    "embed_dim",
    "batch_size",
    "steps",
    "eval_every",
)
EVALS_PER_RUN = 10
INTERRUPTED = 130  # exit status of a command stopped by Ctrl-C (128 + SIGINT), as `nextscale` returns it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="scaling_command", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="train one transformer per depth into a sweep folder; re-run to resume/extend")
    run.add_argument("--out", type=Path, required=True, help="sweep folder (runs/, points.csv, points.json)")
    run.add_argument("--depths", type=int, nargs="+", required=True, help="transformer depths, e.g. 2 3 4 5 6")
    run.add_argument("--tokens", required=True, help="training token folder from `nextscale tokenize`")
    run.add_argument("--eval-tokens", required=True, help="held-out token folder (`nextscale tokenize --split test`)")
    run.add_argument("--tokenizer", required=True, help="the tokenizer that made the tokens (folder, run or .pth)")
    run.add_argument(
        "--width-base", type=int, default=64, help="width = WIDTH_BASE x depth (default 64, VAR's; smaller for tiny)"
    )
    run.add_argument("--batch-size", type=int, default=64, help="global batch of every run (default 64)")
    budget = run.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps of every run")
    budget.add_argument("--token-budget", type=float, help="tokens seen by every run: steps = T / (batch x L)")
    budget.add_argument(
        "--compute-budget",
        type=float,
        help="FLOPs of every run: steps = C / (6 (N_token batch L + N_image batch)), N_image the per-image AdaLN",
    )
    run.add_argument(
        "--eval-every", type=int, default=None, help=f"steps between held-out evals (default: steps / {EVALS_PER_RUN})"
    )
    run.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="train every depth once per seed (>= 0), e.g. 0 1 2: seed S runs in OUT/runs/dDEPTH-seedS, the base "
        "seed (the `nextscale train` flags' --seed, else its default) in OUT/runs/dDEPTH; re-running with more "
        "seeds adds their runs (default: the seeds the sweep records, for a new sweep the base seed alone)",
    )
    run.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then further `nextscale train` flags")

    add_fit_and_plot_parsers(sub)
    add_samples_parser(sub)


def run(args: argparse.Namespace) -> int:
    from nextscale.cli.scaling_fit import run_fit, run_plot
    from nextscale.cli.scaling_samples import run_samples

    actions = {"run": run_sweep, "fit": run_fit, "plot": run_plot, "samples": run_samples}
    return actions[args.scaling_command](args)


# ------------------------------------------------------------------------------------------------ run
def steps_for_budget(
    args: argparse.Namespace, use, batch_size: int, tokens_per_step: int, params: int | None = None
) -> int:
    """Optimizer steps of one run from --steps, --token-budget or --compute-budget (at least 1); ``use`` is the
    run's ``ComputeParameters`` (a step costs 6 (N_token x tokens_per_step + N_image x batch_size) FLOPs). A sweep
    recorded before that count (``args.old_compute_count``) keeps its own, 6 x ``params`` x tokens_per_step: its
    finished runs were planned with it."""
    from nextscale.scaling.sweep import FLOPS_PER_PARAMETER_TOKEN, training_compute

    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        return args.steps
    if args.token_budget is not None:
        budget, per_step = args.token_budget, tokens_per_step
    else:
        budget, per_step = args.compute_budget, training_compute(use, tokens_per_step, batch_size)
        if getattr(args, "old_compute_count", False) and params is not None:
            per_step = float(FLOPS_PER_PARAMETER_TOKEN) * params * tokens_per_step
    if not budget > 0:
        raise ValueError("the budget must be positive")
    return max(1, round(budget / per_step))


class _TrainFlagsParser(argparse.ArgumentParser):
    """The `nextscale train` parser for the flags after `--`: a bad flag is a ValueError (one line), not an exit."""

    def error(self, message: str):
        raise ValueError(f"the `nextscale train` flags after --: {message}")


def _train_parser() -> argparse.ArgumentParser:
    from nextscale.cli import train

    parser = _TrainFlagsParser(prog="nextscale train")
    train.add_arguments(parser)
    return parser


def check_train_flags(extra: list[str]) -> None:
    """Refuse flags after `--` that the sweep sets itself, naming what to use instead."""
    from nextscale.training.options import given_options

    owned = [dest for dest in SWEEP_OWNED if dest in given_options(_train_parser().parse_args(extra))]
    if owned:
        raise ValueError(
            "; ".join(f"--{dest.replace('_', '-')} is set by the sweep itself: {SWEEP_OWNED[dest]}" for dest in owned)
        )


def base_seed(extra: list[str]) -> int:
    """The seed `nextscale train` takes from the flags after `--` (their --seed, else the --config file's, else
    its default): the sweep's base seed, whose runs keep the folder names OUT/runs/dDEPTH of sweeps made before
    --seeds existed (changing it changes the flags after `--`, which a re-run refuses)."""
    from nextscale.cli.train import RUN_FILE_SOURCES
    from nextscale.training.options import apply_run_file

    return apply_run_file(_train_parser().parse_args(extra), RUN_FILE_SOURCES).seed


def parse_train_flags(
    args: argparse.Namespace, depth: int, extra: list[str], seed: int | None = None
) -> tuple[list[str], argparse.Namespace]:
    """The argv the sweep gives `nextscale train` for the run of one depth and seed, less the run length, the
    flags after `--` and the closing ``--seed SEED``; and what the whole argv parses to after the --config run file
    (as `nextscale train` reads it). ``seed`` None is the base seed (``base_seed``).

    The seed is typed last, after the flags after `--`, so that it wins over a --seed there: `nextscale train`
    seeds the initial weights, the data order and dropout with it (``seed_everything``, the trainer's sampler).
    """
    from nextscale.cli.train import RUN_FILE_SOURCES
    from nextscale.scaling.sweep import RUNS_DIR, run_name
    from nextscale.training.options import apply_run_file

    base = base_seed(extra)
    seed = base if seed is None else seed
    common = [
        "--tokenizer", str(args.tokenizer),
        "--tokens", str(args.tokens),
        "--eval-tokens", str(args.eval_tokens),
        "--run-dir", str(args.out / RUNS_DIR / run_name(depth, seed, base)),
        "--depth", str(depth),
        "--embed-dim", str(args.width_base * depth),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    parser = _train_parser()
    planned = apply_run_file(parser.parse_args([*common, *extra, "--seed", str(seed)]), RUN_FILE_SOURCES)
    # The typed flags win over a --config file; the owned flags the sweep does not type must keep their defaults.
    from_file = [dest for dest in SWEEP_OWNED if dest not in SWEEP_TYPED]
    from_file = [dest for dest in from_file if getattr(planned, dest, None) != parser.get_default(dest)]
    if from_file:
        names = ", ".join(dest.replace("_", "-") for dest in from_file)
        raise ValueError(
            f"--config {planned.config} sets {names}, which the sweep sets itself; remove it from the file"
        )
    return common, planned


@dataclass(frozen=True)
class ModelInputs:
    """What `nextscale train` fits a transformer to besides its flags: the tokenizer's schedule, the class count
    of the training data and the text encoder's width (None for a class model)."""

    tokenizer_config: object
    num_classes: int | None
    text_dim: int | None


def model_inputs(planned: argparse.Namespace) -> ModelInputs:
    """The tokenizer schedule, class count and text width `nextscale train` will use for these flags.

    This follows `nextscale train`'s own steps (cli/train.py ``_train``): --scale-sides / --resolution reshape the
    tokenizer, the class count comes from the training tokens unless --num-classes is given, a text model takes
    its encoder's width. A plan from the preset's class count would count the wrong N (1000 classes of var-d16
    instead of the data's 10: 990 x width parameters too many) and give the runs unequal compute.
    """
    from nextscale.cli.common import load_text_encoder_option
    from nextscale.cli.data_report import scale_sides_for
    from nextscale.cli.train import check_same_classes, fit_num_classes
    from nextscale.data.token_dataset import TokenShardDataset
    from nextscale.training.export import load_tokenizer, with_scale_sides

    tokenizer = load_tokenizer(planned.tokenizer, planned.scale_sides)
    sides = scale_sides_for(planned.resolution, planned.scale_sides, tokenizer.config.downsample_factor)
    if sides is not None and sides != tuple(tokenizer.config.scale_sides):
        tokenizer = with_scale_sides(tokenizer, sides)
    # The held-out tokens are opened here too, as `nextscale train` will: a schedule or class list that does not
    # fit is refused before sweep.json is written, not by the first run after it (which would lock the sweep to them).
    train_set = TokenShardDataset(planned.tokens, tokenizer, seed=planned.seed)
    check_same_classes(train_set, TokenShardDataset(planned.eval_tokens, tokenizer))
    if planned.text_encoder:
        return ModelInputs(tokenizer.config, None, load_text_encoder_option(planned.text_encoder).width)
    return ModelInputs(tokenizer.config, fit_num_classes(planned.num_classes, train_set, planned.tokens), None)


def plan_run(
    args: argparse.Namespace, depth: int, extra: list[str], inputs: ModelInputs, seed: int | None = None
) -> tuple[list[str], int, int]:
    """The `nextscale train` argv of one depth and seed (None: the base seed), with its step count and parameter
    count (of the model that training will build: same flags, class count and schedule; the seed changes
    neither)."""
    from nextscale.cli.train_model import build_transformer_config
    from nextscale.scaling.sweep import tokens_per_sample, transformer_compute_parameters, transformer_parameters

    if depth < 1:
        raise ValueError(f"depths must be >= 1, got {depth}")
    common, planned = parse_train_flags(args, depth, extra, seed)
    if inputs.text_dim is None:
        planned.num_classes = inputs.num_classes
    config = build_transformer_config(planned, inputs.tokenizer_config, inputs.text_dim)
    params, _ = transformer_parameters(config)
    per_sample = tokens_per_sample(config.schedule.total_tokens, planned.keep_tokens)
    use = transformer_compute_parameters(config)
    steps = steps_for_budget(args, use, planned.batch_size, planned.batch_size * per_sample, params)
    eval_every = args.eval_every or derived_eval_every(steps)
    run_length = ["--steps", str(steps), "--eval-every", str(eval_every)]
    return [*common, *run_length, *extra, "--seed", str(planned.seed)], steps, params


def derived_eval_every(steps: int) -> int:
    """The --eval-every of a run of ``steps`` steps when none is typed: about EVALS_PER_RUN evaluations."""
    return max(1, math.ceil(steps / EVALS_PER_RUN))


def derived_eval_every_of_sweep(
    args: argparse.Namespace, extra: list[str], inputs: ModelInputs, plans: dict, trained_depths: list[int]
) -> frozenset[int]:
    """The --eval-every each run of the sweep (planned, or trained before at ``trained_depths``) gets when none is
    typed: one value, unless a --compute-budget gives the depths different step counts. Seeds do not change steps."""
    steps = {depth: planned_steps for (depth, _), (_, planned_steps, _) in plans.items()}
    for depth in set(trained_depths) - steps.keys():
        steps[depth] = plan_run(args, depth, extra, inputs)[1]
    return frozenset(derived_eval_every(planned_steps) for planned_steps in steps.values())


def run_sweep(args: argparse.Namespace) -> int:
    from nextscale.cli import CommandError, main
    from nextscale.cli.scaling_settings import (
        recorded_settings,
        setting_differences,
        sweep_settings,
        uses_old_compute_count,
    )
    from nextscale.cli.train import check_token_folders, held_out_split_warning, same_token_folders
    from nextscale.pretrained import atomic_write_text
    from nextscale.scaling.chance import chance_notes
    from nextscale.scaling.sweep import RUNS_DIR, SWEEP_FILE, collect_sweep, read_run, run_name, write_points
    from nextscale.training.export import check_not_run_checkpoint

    extra = list(args.train_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    # Everything is checked before the first file is written: a refused call leaves the sweep as it was.
    check_train_flags(extra)
    check_not_run_checkpoint("--tokenizer", args.tokenizer)
    if args.width_base < 1 or args.batch_size < 1:
        raise ValueError("--width-base and --batch-size must be >= 1")
    if args.eval_every is not None and args.eval_every < 1:
        raise ValueError(f"--eval-every must be >= 1, got {args.eval_every}")
    if args.seeds is not None and min(args.seeds) < 0:
        raise ValueError(f"--seeds must be >= 0 (they name run folders dDEPTH-seedS), got {min(args.seeds)}")
    depths = sorted(set(args.depths))
    if depths[0] < 1:
        raise ValueError(f"depths must be >= 1, got {depths[0]}")
    settings_path = args.out / SWEEP_FILE
    recorded = recorded_settings(settings_path)
    # A --compute-budget sweep recorded before compute told per-token from per-image parameters planned its steps
    # with 6 x all parameters x tokens: its re-runs keep that count, or finished runs would get new step counts.
    args.old_compute_count = uses_old_compute_count(recorded)
    base = base_seed(extra)
    recorded_seeds = recorded.get("seeds", [base])  # a sweep.json from before --seeds: its runs used the base seed
    seeds = sorted(set(args.seeds if args.seeds is not None else recorded_seeds))
    first_run = parse_train_flags(args, depths[0], extra)[1]
    check_token_folders(first_run)  # a typo leaves nothing behind
    same_folder = same_token_folders(args.tokens, args.eval_tokens)
    if same_folder:  # points.csv would publish training loss as the sweep's held-out loss
        raise ValueError(same_folder)
    inputs = model_inputs(first_run)
    # Seed by seed, every depth: the first seed's sweep is complete before the next seed starts.
    plans = {(depth, seed): plan_run(args, depth, extra, inputs, seed) for seed in seeds for depth in depths}
    # The depths and seeds that have a run (an older sweep.json may list refused ones) and those about to train.
    trained = [
        (depth, seed)
        for depth in recorded.get("depths", [])
        for seed in recorded_seeds
        if (args.out / RUNS_DIR / run_name(depth, seed, base)).is_dir()
    ]
    settings = sweep_settings(args, extra)
    derived = derived_eval_every_of_sweep(args, extra, inputs, plans, [depth for depth, _ in trained])
    differences = setting_differences(recorded, settings, derived)
    if differences:
        raise ValueError(
            f"{args.out} is a sweep made with other settings, and its runs must share them: "
            + "; ".join(differences)
            + f". Re-run with the recorded settings (see {settings_path}) to resume or extend it, or use a new --out"
        )
    split_warning = held_out_split_warning(args.eval_tokens)
    if split_warning:
        print(f"warning: {split_warning}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    all_depths = sorted({depth for depth, _ in trained} | set(depths))
    all_seeds = sorted({seed for _, seed in trained} | set(seeds))
    record = {"depths": all_depths, "seeds": all_seeds, **settings}
    atomic_write_text(settings_path, json.dumps(record, indent=2) + "\n")
    for (depth, seed), (argv, steps, params) in plans.items():
        name = run_name(depth, seed, base)
        run_dir = args.out / RUNS_DIR / name
        if (run_dir / "config.json").is_file():
            done = read_run(run_dir)
            if done.finished and done.total_steps == steps:
                print(f"{name}: finished ({steps} steps), kept", flush=True)
                continue
        print(f"{name}: N = {params:,} parameters, {steps} steps, seed {seed}", flush=True)
        print("$ nextscale train " + " ".join(argv), flush=True)
        status = main(["train", *argv])
        if status == INTERRUPTED:  # `nextscale train` has said where it saved
            raise KeyboardInterrupt(
                f"the sweep was interrupted in the run of depth {depth}, seed {seed}; re-run the same "
                "`nextscale scaling run` command to resume it (finished runs are kept)"
            )
        if status != 0:
            raise CommandError(
                f"the run of depth {depth}, seed {seed} failed; fix the problem above and re-run to resume"
            )
        write_points(args.out, collect_sweep(args.out))
    runs = collect_sweep(args.out)
    csv_path, _ = write_points(args.out, runs)
    _print_table(runs)
    print(f"points: {csv_path}")
    for note in chance_notes(runs):
        print(note, file=sys.stderr)
    return 0


def _print_table(runs) -> None:
    print(f"{'run':>10} {'params':>12} {'steps':>7} {'compute':>10} {'L_avg':>8} {'L_last':>8} {'Err_avg':>8}")
    for run in runs:
        if run.evals:
            point = run.evals[-1]
            print(
                f"{run.run:>10} {run.params:>12,} {point.step:>7} {point.compute:>10.3g} "
                f"{point.loss:>8.4f} {point.loss_last:>8.4f} {point.error:>8.4f}"
            )
