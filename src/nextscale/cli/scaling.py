"""Scaling laws at small scale: train a sweep of depths, fit L = (β·X)^α, draw the VAR paper's Fig. 5/6.

Examples (Fashion-MNIST tokens of the demo tokenizer; `nextscale tokenize ... --split test` for the held-out set):
    nextscale scaling run --out sweeps/fm --depths 2 3 4 5 6 --tokens tokens/fm-train --eval-tokens tokens/fm-test \\
        --tokenizer runs/fm-tokenizer --width-base 32 --steps 2000 -- --preset fashion-mnist --lr 6e-4 --no-progress
    nextscale scaling run --out sweeps/fm ... --depths 7          # extends the sweep; finished runs are kept
    nextscale scaling fit --sweep sweeps/fm                       # L_avg vs parameters
    nextscale scaling fit --csv sweeps/fm/points.csv --x compute --y loss_last --json
    nextscale scaling plot --sweep sweeps/fm --out sweeps/fm/scaling.png

`run` trains one ordinary `nextscale train` run per depth in OUT/runs/d{depth} (in this process; re-running
resumes unfinished runs and leaves finished ones alone) with the shape rule of TransformerConfig.from_depth:
width = WIDTH_BASE x d (64 d in VAR), d heads, drop-path 0.1 d / 24. The length of every run is --steps, or
follows from a budget: --token-budget T gives T / (batch x L) steps (L tokens per image), --compute-budget C
gives C / (6 N batch L) steps (iso-FLOP: smaller models see more tokens). Flags after `--` go to `nextscale
train` unchanged (optimiser, preset for the class count, --config run file, ...); the sweep sets --run-dir,
--depth, --embed-dim, --steps, --batch-size and the data itself.

After every run OUT/points.csv and points.json are rewritten, one row per run: depth, width, parameters N (all
of them, as VAR counts; also without embeddings), tokens seen D = steps x batch x L, compute C = 6 N D FLOPs,
and the last held-out evaluation: loss (L_avg), loss_last (L_last), error (Err_avg), error_last (Err_last).

`fit` takes logs (log L = α log β + α log X), fits a line by least squares and reports α, β and the Pearson r
of (log X, log L); with --json it prints exactly {"alpha": ..., "beta": ..., "pearson_r": ...}. `plot` needs
matplotlib (the eval extra). The test's sweep (tests/scaling/test_scaling_cli.py: depths 1-3 at width 16, 3 steps of
batch 8 on tokens of the 200 test-asset images, then fit and plot) takes about 6 s on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# `nextscale train` flags the sweep sets itself (a value after `--` would contradict it).
SWEEP_OWNED = (
    "--run-dir",
    "--depth",
    "--embed-dim",
    "--num-heads",
    "--drop-path-rate",
    "--steps",
    "--epochs",
    "--max-steps",
    "--batch-size",
    "--tokens",
    "--tokenizer",
    "--eval-tokens",
    "--data",
)
EVALS_PER_RUN = 10


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
    budget.add_argument("--compute-budget", type=float, help="FLOPs of every run: steps = C / (6 N batch L)")
    run.add_argument(
        "--eval-every", type=int, default=None, help=f"steps between held-out evals (default: steps / {EVALS_PER_RUN})"
    )
    run.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then further `nextscale train` flags")

    fit = sub.add_parser("fit", help="fit L = (beta X)^alpha to a sweep or a CSV table")
    _add_source_arguments(fit)
    fit.add_argument("--x", default="params", help="column of X (default: params; also compute, tokens_seen)")
    fit.add_argument("--y", default="loss", help="column of L (default: loss = L_avg; also loss_last, error, ...)")
    fit.add_argument("--json", action="store_true", help='print only {"alpha": ..., "beta": ..., "pearson_r": ...}')

    plot = sub.add_parser("plot", help="log-log loss/error vs N and loss vs compute with its Pareto frontier")
    _add_source_arguments(plot)
    plot.add_argument("--out", type=Path, default=None, help="PNG to write (default: SWEEP/scaling.png)")
    plot.add_argument("--title", default=None, help="figure title")


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", type=Path, help="a sweep folder of `nextscale scaling run` (reads its runs)")
    source.add_argument("--csv", type=Path, help="any CSV table with a header line (e.g. a sweep's points.csv)")


def run(args: argparse.Namespace) -> int:
    return {"run": run_sweep, "fit": run_fit, "plot": run_plot}[args.scaling_command](args)


# ------------------------------------------------------------------------------------------------ run
def steps_for_budget(args: argparse.Namespace, params: int, tokens_per_step: int) -> int:
    """Optimizer steps of one run from --steps, --token-budget or --compute-budget (at least 1)."""
    from nextscale.scaling.sweep import FLOPS_PER_PARAMETER_TOKEN

    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        return args.steps
    if args.token_budget is not None:
        budget, per_step = args.token_budget, tokens_per_step
    else:
        budget, per_step = args.compute_budget, FLOPS_PER_PARAMETER_TOKEN * params * tokens_per_step
    if not budget > 0:
        raise ValueError("the budget must be positive")
    return max(1, round(budget / per_step))


def _train_parser() -> argparse.ArgumentParser:
    from nextscale.cli import train

    parser = argparse.ArgumentParser(prog="nextscale train")
    train.add_arguments(parser)
    return parser


def plan_run(args: argparse.Namespace, depth: int, extra: list[str], tokenizer) -> tuple[list[str], int, int]:
    """The `nextscale train` argv of one depth, with its step count and parameter count."""
    from nextscale.cli.train import build_transformer_config
    from nextscale.scaling.sweep import RUNS_DIR, run_name, transformer_parameters
    from nextscale.training.options import apply_run_file

    if depth < 1:
        raise ValueError(f"depths must be >= 1, got {depth}")
    common = [
        "--tokenizer", str(args.tokenizer),
        "--tokens", str(args.tokens),
        "--eval-tokens", str(args.eval_tokens),
        "--run-dir", str(args.out / RUNS_DIR / run_name(depth)),
        "--depth", str(depth),
        "--embed-dim", str(args.width_base * depth),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    planned = apply_run_file(_train_parser().parse_args([*common, *extra]))
    config = build_transformer_config(planned, tokenizer.config)
    params, _ = transformer_parameters(config)
    steps = steps_for_budget(args, params, planned.batch_size * config.schedule.total_tokens)
    eval_every = args.eval_every or max(1, math.ceil(steps / EVALS_PER_RUN))
    return [*common, "--steps", str(steps), "--eval-every", str(eval_every), *extra], steps, params


def run_sweep(args: argparse.Namespace) -> int:
    from nextscale.cli import CommandError, main
    from nextscale.pretrained import atomic_write_text
    from nextscale.scaling.sweep import RUNS_DIR, SWEEP_FILE, collect_sweep, read_run, run_name, write_points
    from nextscale.training.export import load_tokenizer

    extra = list(args.train_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    owned = [flag for flag in extra if flag.split("=")[0] in SWEEP_OWNED]
    if owned:
        raise ValueError(f"{', '.join(owned)} is set by the sweep itself; use the `scaling run` flags instead")
    if args.width_base < 1 or args.batch_size < 1:
        raise ValueError("--width-base and --batch-size must be >= 1")
    planned_scale_sides = _train_parser().parse_args(extra).scale_sides
    tokenizer = load_tokenizer(args.tokenizer, planned_scale_sides)
    args.out.mkdir(parents=True, exist_ok=True)
    settings_path = args.out / SWEEP_FILE
    previous = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    depths = sorted(set(args.depths))
    settings = {
        "depths": sorted(set(previous.get("depths", [])) | set(depths)),
        "tokens": str(args.tokens),
        "eval_tokens": str(args.eval_tokens),
        "tokenizer": str(args.tokenizer),
        "width_base": args.width_base,
        "batch_size": args.batch_size,
        "budget": _budget(args),
        "train_args": extra,
    }
    atomic_write_text(settings_path, json.dumps(settings, indent=2) + "\n")
    for depth in depths:
        argv, steps, params = plan_run(args, depth, extra, tokenizer)
        run_dir = args.out / RUNS_DIR / run_name(depth)
        if (run_dir / "config.json").is_file():
            done = read_run(run_dir)
            if done.finished and done.total_steps == steps:
                print(f"d{depth}: finished ({steps} steps), kept", flush=True)
                continue
        print(f"d{depth}: N = {params:,} parameters, {steps} steps", flush=True)
        print("$ nextscale train " + " ".join(argv), flush=True)
        if main(["train", *argv]) != 0:
            raise CommandError(f"the run of depth {depth} failed; fix the problem above and re-run to resume")
        write_points(args.out, collect_sweep(args.out))
    runs = collect_sweep(args.out)
    csv_path, _ = write_points(args.out, runs)
    _print_table(runs)
    print(f"points: {csv_path}")
    return 0


def _budget(args: argparse.Namespace) -> dict[str, float]:
    if args.steps is not None:
        return {"steps": args.steps}
    if args.token_budget is not None:
        return {"tokens": args.token_budget}
    return {"flops": args.compute_budget}


def _print_table(runs) -> None:
    print(f"{'run':>6} {'params':>12} {'steps':>7} {'compute':>10} {'L_avg':>8} {'L_last':>8} {'Err_avg':>8}")
    for run in runs:
        if run.evals:
            point = run.evals[-1]
            print(
                f"{run.run:>6} {run.params:>12,} {point.step:>7} {point.compute:>10.3g} "
                f"{point.loss:>8.4f} {point.loss_last:>8.4f} {point.error:>8.4f}"
            )


# ------------------------------------------------------------------------------------------- fit, plot
def _rows(args: argparse.Namespace) -> tuple[list[dict], str]:
    """Rows of the table (--csv) or of the sweep's runs (--sweep), and a name for messages."""
    from nextscale.scaling.sweep import collect_sweep, read_table

    if args.csv is not None:
        return read_table(args.csv), str(args.csv)
    rows = [run.row() for run in collect_sweep(args.sweep) if run.evals]
    if not rows:
        raise ValueError(f"no run of {args.sweep} has a held-out evaluation yet")
    return rows, str(args.sweep)


def run_fit(args: argparse.Namespace) -> int:
    from nextscale.scaling.power_law import fit_power_law
    from nextscale.scaling.sweep import column

    rows, source = _rows(args)
    fit = fit_power_law(column(rows, args.x, source), column(rows, args.y, source))
    if args.json:
        print(json.dumps({"alpha": fit.alpha, "beta": fit.beta, "pearson_r": fit.pearson_r}))
    else:
        print(f"{fit.formula(args.x, args.y)}  (alpha = {fit.alpha:.6g}, beta = {fit.beta:.6g}, ", end="")
        print(f"Pearson r of logs = {fit.pearson_r:.4f}, {fit.num_points} points from {source})")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from nextscale.scaling.plot import plot_scaling
    from nextscale.scaling.sweep import collect_sweep, column, read_table

    if args.csv is not None:
        table = read_table(args.csv)
        names = [name for name in table[0] if name != "run"]
        numeric = {}
        for name in names:
            try:
                numeric[name] = column(table, name, str(args.csv))
            except ValueError:
                continue  # text columns are not drawn
        rows = [{name: values[index] for name, values in numeric.items()} for index in range(len(table))]
        curves, out = None, args.out
        if out is None:
            raise ValueError("--out is required with --csv")
    else:
        runs = [run for run in collect_sweep(args.sweep) if run.evals]
        rows = [run.row() for run in runs]
        curves = {run.run: [(point.compute, point.loss) for point in run.evals] for run in runs}
        out = args.out or args.sweep / "scaling.png"
    try:
        path = plot_scaling(rows, out, curves=curves, title=args.title)
    except ImportError as err:
        raise ValueError(str(err)) from err
    print(f"figure: {path}")
    return 0
