"""Scaling laws at small scale: train a sweep of depths, fit L = (β·X)^α, draw the VAR paper's Fig. 5/6.

Examples (Fashion-MNIST tokens of the demo tokenizer; `nextscale tokenize ... --split test` for the held-out set):
    nextscale scaling run --out sweeps/fm --depths 2 3 4 5 6 --tokens tokens/fm-train --eval-tokens tokens/fm-test \\
        --tokenizer runs/fm-tokenizer --width-base 32 --steps 2000 -- --preset fashion-mnist --lr 6e-4 --no-progress
    nextscale scaling run --out sweeps/fm ... --depths 7          # extends the sweep; finished runs are kept
    nextscale scaling fit --sweep sweeps/fm                       # L_avg vs parameters
    nextscale scaling fit --csv sweeps/fm/points.csv --x compute --y loss_last --json
    nextscale scaling fit --sweep sweeps/fm --frontier            # L_avg on the compute Pareto frontier
    nextscale scaling fit --sweep sweeps/fm --irreducible         # L_avg = L_inf + (beta N)^alpha
    nextscale scaling plot --sweep sweeps/fm --out sweeps/fm/scaling.png
    nextscale scaling samples --sweep sweeps/fm --class 0 5 7 9 --seed 0  # same seeds, one row per model (Fig. 7)

`run` trains one ordinary `nextscale train` run per depth in OUT/runs/d{depth} (in this process; re-running
resumes unfinished runs and leaves finished ones alone; Ctrl-C stops it, and the same command resumes) with the
shape rule of TransformerConfig.from_depth: width = WIDTH_BASE x d (64 d in VAR), d heads, drop-path 0.1 d / 24.
The length of every run is --steps, or follows from a budget: --token-budget T gives T / (batch x L) steps (L
tokens per image), --compute-budget C gives C / (6 N batch L) steps (iso-FLOP: smaller models see more tokens;
N is that of the model training builds, with the data's class count). Flags after `--` go to `nextscale train`
unchanged (optimiser, preset, --config run file, ...); the sweep sets --run-dir, --depth, --embed-dim,
--num-heads, --drop-path-rate, the run length, --batch-size, --eval-every and the data itself, and refuses them
after `--`. OUT/sweep.json records the settings; re-running or extending the sweep with other settings (width
base, batch, budget, --eval-every, data, flags after `--`) is refused, and nothing is written before every check
has passed.

After every run OUT/points.csv and points.json are rewritten, one row per run: depth, width, parameters N (all
of them, as VAR counts; also without embeddings), tokens seen D = steps x batch x L, compute C = 6 N D FLOPs,
the last held-out evaluation: loss (L_avg), loss_last (L_last), error (Err_avg), error_last (Err_last), and
whether the run finished (reached its planned steps and checkpointed them).

`fit` and `plot` count finished runs only (from --sweep, or the rows of a table whose "finished" column says so)
and name each run they leave out on stderr. `fit` takes logs (log L = α log β + α log X), fits a line by least
squares and reports α, β and the Pearson r of (log X, log L); with --json it prints exactly {"alpha": ...,
"beta": ..., "pearson_r": ...}. A fit so flat that β leaves floating-point range is refused. --frontier fits the
compute Pareto frontier instead, over every held-out evaluation of every finished run (the figure's dashed
line). `plot` needs matplotlib (the eval extra) and at least 2 points. The test's sweep
(tests/scaling/test_scaling_cli.py: depths 1-3 at width 16, 3 steps of batch 8 on tokens of the 200 test-asset
images, then fit and plot) takes about 6 s on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from nextscale.cli.scaling_samples import add_samples_parser

# `nextscale train` flags the sweep sets itself (a value after `--` would contradict it): dest -> what to do instead.
_RUN_LENGTH = "use `scaling run --steps`, --token-budget or --compute-budget (every run trains its planned steps)"
SWEEP_OWNED = {
    "run_dir": "each run lives in OUT/runs/dDEPTH: choose OUT with `scaling run --out`",
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
# sweep.json keys that must match for a re-run to resume or extend the sweep, and the flag of each plain value.
SWEEP_SETTINGS = {
    "tokens": "--tokens",
    "eval_tokens": "--eval-tokens",
    "tokenizer": "--tokenizer",
    "width_base": "--width-base",
    "batch_size": "--batch-size",
    "budget": None,  # --steps, --token-budget or --compute-budget
    "eval_every": "--eval-every",
    "train_args": None,  # the flags after --
}
BUDGET_FLAGS = {"steps": "--steps", "tokens": "--token-budget", "flops": "--compute-budget"}


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
    fit.add_argument(
        "--x", default=None, help="column of X (default: params, or compute with --frontier; also tokens_seen)"
    )
    fit.add_argument("--y", default="loss", help="column of L (default: loss = L_avg; also loss_last, error, ...)")
    fit.add_argument(
        "--frontier",
        action="store_true",
        help="fit L = (beta C)^alpha to the compute Pareto frontier (the plot's dashed line): with --sweep over "
        "every held-out evaluation of every finished run, with --csv over the table's rows",
    )
    fit.add_argument(
        "--irreducible",
        action="store_true",
        help="fit L = L_inf + (beta X)^alpha instead: a law that levels off (at the data's entropy, or where too "
        "little training leaves the largest models); reports L_inf and how far the points lie from both laws",
    )
    fit.add_argument(
        "--json",
        action="store_true",
        help='print only {"alpha": ..., "beta": ..., "pearson_r": ...} (with --irreducible: alpha, beta, '
        "irreducible, rms_log_residual)",
    )

    plot = sub.add_parser("plot", help="log-log loss/error vs N and loss vs compute with its Pareto frontier")
    _add_source_arguments(plot)
    plot.add_argument("--out", type=Path, default=None, help="PNG to write (default: SWEEP/scaling.png)")
    plot.add_argument("--title", default=None, help="figure title")
    plot.add_argument(
        "--irreducible",
        action="store_true",
        help="also draw the losses' laws above a floor, L = L_inf + (beta N)^alpha (dotted; see fit --irreducible)",
    )
    add_samples_parser(sub)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", type=Path, help="a sweep folder of `nextscale scaling run` (reads its runs)")
    source.add_argument("--csv", type=Path, help="any CSV table with a header line (e.g. a sweep's points.csv)")


def run(args: argparse.Namespace) -> int:
    from nextscale.cli.scaling_samples import run_samples

    actions = {"run": run_sweep, "fit": run_fit, "plot": run_plot, "samples": run_samples}
    return actions[args.scaling_command](args)


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


def parse_train_flags(args: argparse.Namespace, depth: int, extra: list[str]) -> tuple[list[str], argparse.Namespace]:
    """The argv the sweep gives `nextscale train` for one depth (less the run length), and what it parses to
    after the --config run file (as `nextscale train` reads it)."""
    from nextscale.cli.train import RUN_FILE_SOURCES
    from nextscale.scaling.sweep import RUNS_DIR, run_name
    from nextscale.training.options import apply_run_file

    common = [
        "--tokenizer", str(args.tokenizer),
        "--tokens", str(args.tokens),
        "--eval-tokens", str(args.eval_tokens),
        "--run-dir", str(args.out / RUNS_DIR / run_name(depth)),
        "--depth", str(depth),
        "--embed-dim", str(args.width_base * depth),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    parser = _train_parser()
    planned = apply_run_file(parser.parse_args([*common, *extra]), RUN_FILE_SOURCES)
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
    from nextscale.cli.data_report import scale_sides_for
    from nextscale.cli.train import fit_num_classes, load_text_encoder_option
    from nextscale.data.token_dataset import TokenShardDataset
    from nextscale.training.export import load_tokenizer, with_scale_sides

    tokenizer = load_tokenizer(planned.tokenizer, planned.scale_sides)
    sides = scale_sides_for(planned.resolution, planned.scale_sides, tokenizer.config.downsample_factor)
    if sides is not None and sides != tuple(tokenizer.config.scale_sides):
        tokenizer = with_scale_sides(tokenizer, sides)
    if planned.text_encoder:
        return ModelInputs(tokenizer.config, None, load_text_encoder_option(planned.text_encoder).width)
    train_set = TokenShardDataset(planned.tokens, tokenizer, seed=planned.seed)
    return ModelInputs(tokenizer.config, fit_num_classes(planned.num_classes, train_set, planned.tokens), None)


def plan_run(args: argparse.Namespace, depth: int, extra: list[str], inputs: ModelInputs) -> tuple[list[str], int, int]:
    """The `nextscale train` argv of one depth, with its step count and parameter count (of the model that
    training will build: same flags, class count and schedule)."""
    from nextscale.cli.train import build_transformer_config
    from nextscale.scaling.sweep import transformer_parameters

    if depth < 1:
        raise ValueError(f"depths must be >= 1, got {depth}")
    common, planned = parse_train_flags(args, depth, extra)
    if inputs.text_dim is None:
        planned.num_classes = inputs.num_classes
    config = build_transformer_config(planned, inputs.tokenizer_config, inputs.text_dim)
    params, _ = transformer_parameters(config)
    steps = steps_for_budget(args, params, planned.batch_size * config.schedule.total_tokens)
    eval_every = args.eval_every or max(1, math.ceil(steps / EVALS_PER_RUN))
    return [*common, "--steps", str(steps), "--eval-every", str(eval_every), *extra], steps, params


def sweep_settings(args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    """The sweep.json settings every run of the sweep shares (depths apart)."""
    if args.steps is not None:
        budget = {"steps": args.steps}
    elif args.token_budget is not None:
        budget = {"tokens": args.token_budget}
    else:
        budget = {"flops": args.compute_budget}
    return {
        "tokens": str(args.tokens),
        "eval_tokens": str(args.eval_tokens),
        "tokenizer": str(args.tokenizer),
        "width_base": args.width_base,
        "batch_size": args.batch_size,
        "budget": budget,
        "eval_every": args.eval_every,
        "train_args": extra,
    }


def setting_differences(recorded: dict, settings: dict) -> list[str]:
    """'FLAG NOW (recorded: THEN)' for every setting that differs from the sweep's record; keys an older
    sweep.json lacks are not compared."""
    return [
        f"{_setting_text(key, settings[key])} (recorded: {_setting_text(key, recorded[key])})"
        for key in SWEEP_SETTINGS
        if key in recorded and not _same_setting(key, recorded[key], settings[key])
    ]


def _same_setting(key: str, recorded: object, now: object) -> bool:
    if recorded == now:
        return True
    if key in ("tokens", "eval_tokens", "tokenizer"):  # one folder named two ways (relative, absolute)
        return Path(str(recorded)).resolve() == Path(str(now)).resolve()
    return False


def _setting_text(key: str, value) -> str:
    """A setting as the flags that give it: '--width-base 16', '--steps 60', '-- --lr 2e-3'."""
    if key == "budget":
        kind, amount = next(iter(value.items()))
        return f"{BUDGET_FLAGS.get(kind, kind)} {amount:g}"
    if key == "train_args":
        return f"-- {' '.join(value)}" if value else "no flags after --"
    if value is None:
        return f"no {SWEEP_SETTINGS[key]}"
    return f"{SWEEP_SETTINGS[key]} {value}"


def run_sweep(args: argparse.Namespace) -> int:
    from nextscale.cli import CommandError, main
    from nextscale.pretrained import atomic_write_text
    from nextscale.scaling.sweep import RUNS_DIR, SWEEP_FILE, collect_sweep, read_run, run_name, write_points

    extra = list(args.train_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    # Everything is checked before the first file is written: a refused call leaves the sweep as it was.
    check_train_flags(extra)
    if args.width_base < 1 or args.batch_size < 1:
        raise ValueError("--width-base and --batch-size must be >= 1")
    if args.eval_every is not None and args.eval_every < 1:
        raise ValueError(f"--eval-every must be >= 1, got {args.eval_every}")
    depths = sorted(set(args.depths))
    if depths[0] < 1:
        raise ValueError(f"depths must be >= 1, got {depths[0]}")
    inputs = model_inputs(parse_train_flags(args, depths[0], extra)[1])
    plans = {depth: plan_run(args, depth, extra, inputs) for depth in depths}
    settings_path = args.out / SWEEP_FILE
    recorded = _recorded_settings(settings_path)
    settings = sweep_settings(args, extra)
    differences = setting_differences(recorded, settings)
    if differences:
        raise ValueError(
            f"{args.out} is a sweep made with other settings, and its runs must share them: "
            + "; ".join(differences)
            + f". Re-run with the recorded settings (see {settings_path}) to resume or extend it, or use a new --out"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    # The depths that have a run (an older sweep.json may list refused ones) and those about to train.
    trained = {depth for depth in recorded.get("depths", []) if (args.out / RUNS_DIR / run_name(depth)).is_dir()}
    all_depths = sorted(trained | set(depths))
    atomic_write_text(settings_path, json.dumps({"depths": all_depths, **settings}, indent=2) + "\n")
    for depth, (argv, steps, params) in plans.items():
        run_dir = args.out / RUNS_DIR / run_name(depth)
        if (run_dir / "config.json").is_file():
            done = read_run(run_dir)
            if done.finished and done.total_steps == steps:
                print(f"d{depth}: finished ({steps} steps), kept", flush=True)
                continue
        print(f"d{depth}: N = {params:,} parameters, {steps} steps", flush=True)
        print("$ nextscale train " + " ".join(argv), flush=True)
        status = main(["train", *argv])
        if status == INTERRUPTED:  # `nextscale train` has said where it saved
            raise KeyboardInterrupt(
                f"the sweep was interrupted in the run of depth {depth}; re-run the same `nextscale scaling run` "
                "command to resume it (finished runs are kept)"
            )
        if status != 0:
            raise CommandError(f"the run of depth {depth} failed; fix the problem above and re-run to resume")
        write_points(args.out, collect_sweep(args.out))
    runs = collect_sweep(args.out)
    csv_path, _ = write_points(args.out, runs)
    _print_table(runs)
    print(f"points: {csv_path}")
    return 0


def _recorded_settings(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or use a new --out") from err
    if not isinstance(recorded, dict):
        raise ValueError(f"{path} is not a sweep's settings (a JSON object); restore it or use a new --out")
    return recorded


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
def _finished_runs(sweep: Path) -> list:
    """The runs of a sweep that reached their planned steps; a line on stderr for each run left out."""
    from nextscale.scaling.sweep import collect_sweep, finished_runs

    runs, notes = finished_runs(collect_sweep(sweep))
    for note in notes:
        print(note, file=sys.stderr)
    if not runs:
        raise ValueError(
            f"no run of {sweep} has finished yet; re-run `nextscale scaling run` with the sweep's settings to finish"
        )
    return runs


def _table_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV table, less those a sweep's points.csv marks unfinished (a line on stderr each)."""
    from nextscale.scaling.sweep import finished_rows, read_table

    rows, notes = finished_rows(read_table(path), str(path))
    for note in notes:
        print(note, file=sys.stderr)
    return rows


def _rows(args: argparse.Namespace) -> tuple[list[dict], str]:
    """Rows of the table (--csv) or of the sweep's finished runs (--sweep), and a name for messages."""
    if args.csv is not None:
        return _table_rows(args.csv), str(args.csv)
    return [run.row() for run in _finished_runs(args.sweep)], str(args.sweep)


def run_fit(args: argparse.Namespace) -> int:
    from nextscale.scaling.power_law import fit_pareto_frontier, fit_power_law
    from nextscale.scaling.sweep import column, loss_curves

    x_name = args.x or ("compute" if args.frontier else "params")
    if args.irreducible and args.frontier:
        raise ValueError("--irreducible fits the final points of the runs; leave out --frontier")
    if args.frontier and x_name != "compute":
        raise ValueError(f"--frontier fits loss vs training compute; drop --x {args.x} (or give --x compute)")
    if args.frontier and args.sweep is not None:  # every evaluation, as the figure's loss-vs-compute panel
        curves = loss_curves(_finished_runs(args.sweep), args.y)
        points = [point for curve in curves.values() for point in curve]
        source = f"{len(points)} evaluations of {len(curves)} runs of {args.sweep}"
        fit = fit_pareto_frontier([compute for compute, _ in points], [value for _, value in points])
    else:
        rows, source = _rows(args)
        x, y = column(rows, x_name, source), column(rows, args.y, source)
        if args.irreducible:
            return report_saturating_fit(args, x_name, x, y, source)
        fit = fit_pareto_frontier(x, y) if args.frontier else fit_power_law(x, y)
    # allow_nan=False: Infinity / NaN are not JSON; fit_power_law refuses such fits, this keeps it so.
    result = json.dumps({"alpha": fit.alpha, "beta": fit.beta, "pearson_r": fit.pearson_r}, allow_nan=False)
    if args.json:
        print(result)
        return 0
    where = "on the compute Pareto frontier of" if args.frontier else "from"
    print(f"{fit.formula(x_name, args.y)}  (alpha = {fit.alpha:.6g}, beta = {fit.beta:.6g}, ", end="")
    print(f"Pearson r of logs = {fit.pearson_r:.4f}, {fit.num_points} points {where} {source})")
    return 0


def report_saturating_fit(args: argparse.Namespace, x_name: str, x: list, y: list, source: str) -> int:
    """``fit --irreducible``: L = L_inf + (beta X)^alpha, beside the plain power law's residual."""
    from nextscale.scaling.power_law import fit_power_law, fit_saturating_power_law, rms_log_residual

    fit = fit_saturating_power_law(x, y)
    values = {"alpha": fit.alpha, "beta": fit.beta, "irreducible": fit.irreducible}
    if args.json:
        print(json.dumps({**values, "rms_log_residual": fit.rms_log_residual}, allow_nan=False))
        return 0
    plain = rms_log_residual(fit_power_law(x, y), x, y)
    print(f"{fit.formula(x_name, args.y)}  (alpha = {fit.alpha:.6g}, beta = {fit.beta:.6g}, ", end="")
    print(f"L_inf = {fit.irreducible:.6g}, {fit.num_points} points from {source})")
    print(f"rms residual of log {args.y}: {fit.rms_log_residual:.4g} with L_inf, {plain:.4g} as a plain power law")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from nextscale.scaling.plot import plot_scaling
    from nextscale.scaling.sweep import column, loss_curves

    if args.csv is not None:
        if args.out is None:
            raise ValueError("--out is required with --csv")
        table = _table_rows(args.csv)
        names = [name for name in table[0] if name != "run"]
        numeric = {}
        for name in names:
            try:
                numeric[name] = column(table, name, str(args.csv))
            except ValueError:
                continue  # text columns are not drawn
        rows = [{name: values[index] for name, values in numeric.items()} for index in range(len(table))]
        curves, out = None, args.out
    else:
        runs = _finished_runs(args.sweep)
        rows, curves = [run.row() for run in runs], loss_curves(runs)
        out = args.out or args.sweep / "scaling.png"
    try:
        path = plot_scaling(rows, out, curves=curves, title=args.title, irreducible=args.irreducible)
    except ImportError as err:
        raise ValueError(str(err)) from err
    print(f"figure: {path}")
    return 0
