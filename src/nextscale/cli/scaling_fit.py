"""`nextscale scaling fit` and `nextscale scaling plot`: the power law of a sweep (or any CSV table) with the
uncertainty of its exponent, and the VAR paper's Fig. 5/6 at small scale.

Both count finished runs only (from --sweep, or the rows of a table whose "finished" column says so) and name each
run they leave out on stderr. `fit` reports alpha with its standard error and 95 % confidence interval: ordinary
least squares in log-log space, Student's t with n - 2 degrees of freedom (none from 2 points; none for
--irreducible, a nonlinear fit of three parameters from at least 4 sizes, which is judged against the plain law
by an F-test with n - 3 degrees of freedom and AIC instead; for --frontier conditional on which points are on it). With
several seeds per depth every seed's run is one point of the fit, and the output also gives the mean ± std of the
metric across the seeds of each depth (grouped by a table's "depth" column, else by equal X). Tables without a
"seed" column (points.csv of sweeps made before seeds) are read as before. A --csv table joined from several
sweeps is refused when its rows differ in data (train_data, eval_data, vocab_size), budget, held-out sequences or
weights (columns a table lacks, as points.csv written before them, are not compared); with a vocab_size column,
rows whose loss is the uniform guess ln(vocab_size) get a note, as runs of a --sweep do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = __doc__.split("\n\n", 1)[1]
# Columns `plot` draws (the rest of a table is not read): see ``scaling.plot.plot_scaling``.
PLOTTED_COLUMNS = ("params", "compute", "loss", "loss_last", "error", "error_last", "depth")
# `fit --json` keys of the plain power law (and of --frontier), in order.
FIT_JSON_KEYS = ("alpha", "beta", "pearson_r", "alpha_stderr", "alpha_ci95", "num_points", "num_seeds", "per_depth")
# What was fitted, in every `fit --json` object: the columns, whose weights, held-out sequences per point, the source.
FITTED_KEYS = ("x", "y", "weights", "eval_samples", "source")
FIT_JSON_KEYS += FITTED_KEYS


def add_fit_and_plot_parsers(sub) -> None:
    fit = sub.add_parser(
        "fit",
        help="fit L = (beta X)^alpha to a sweep or a CSV table, with the standard error and 95 %% interval of alpha",
        description=DESCRIPTION,
    )
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
        "little training leaves the largest models); reports L_inf, how far the points lie from both laws "
        "and whether the floor is supported: an F-test of the two nested least-squares fits, F(1, n - 3), and "
        "AIC (the floored law's raw residual is never the larger). Needs 4 distinct sizes: three parameters pass "
        "through any three points. Least squares in log L over all three parameters; no standard error: a "
        "linearised one would be unreliable for three parameters from a few points",
    )
    fit.add_argument(
        "--json",
        action="store_true",
        help="print only one JSON object: alpha, beta, pearson_r, alpha_stderr and alpha_ci95 ([low, high]; null "
        "for 2 points), num_points, num_seeds (null without a seed column) and per_depth ([{depth, x, "
        "num_points, mean, std}] of the Y metric across seeds), and what was fitted: x, y (the columns), weights "
        "(raw or ema), eval_samples (held-out sequences per point; null when not recorded) and source (the sweep or "
        "table); with --irreducible: alpha, beta, irreducible, "
        "rms_log_residual (and _plain), num_points, degrees_of_freedom (n - 3), f_statistic, p_value, aic, "
        "aic_plain, floor_supported (p < 0.05) and the same x, y, weights, eval_samples and source",
    )

    plot = sub.add_parser(
        "plot",
        help="log-log loss/error vs N and loss vs compute with its Pareto frontier; several seeds per depth: "
        "every run faint, the per-depth mean ± std, and alpha ± its standard error in the legend",
        description=DESCRIPTION,
    )
    _add_source_arguments(plot)
    plot.add_argument("--out", type=Path, default=None, help="PNG to write (default: SWEEP/scaling.png)")
    plot.add_argument("--title", default=None, help="figure title")
    plot.add_argument(
        "--irreducible",
        action="store_true",
        help="also draw the losses' laws above a floor, L = L_inf + (beta N)^alpha (dotted; see fit --irreducible)",
    )


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sweep", type=Path, help="a sweep folder of `nextscale scaling run` (reads its runs)")
    source.add_argument("--csv", type=Path, help="any CSV table with a header line (e.g. a sweep's points.csv)")
    parser.add_argument(
        "--weights",
        choices=("raw", "ema"),
        default="raw",
        help="with --sweep, whose held-out losses: raw (default: the trained weights, metrics split 'eval', as "
        "points.csv and official VAR, which keeps no EMA) or ema (split 'eval_ema': the weights export, `scaling "
        "samples` and `evaluate --model RUN_DIR` use; logged only by runs that keep an EMA)",
    )


def _finished_runs(sweep: Path, weights: str = "raw", verb: str = "fit") -> list:
    """The runs of a sweep that reached their planned steps (their ``weights``' evaluations); a line on stderr for
    each run left out, which for a run training now says so (re-running the sweep then would be refused as busy)."""
    from nextscale.scaling.chance import chance_notes
    from nextscale.scaling.sweep import RUNS_DIR, collect_sweep
    from nextscale.training.run_lock import training_process

    runs = collect_sweep(sweep, weights)
    if weights == "ema" and runs and not any(run.evals for run in runs):
        raise ValueError(
            f"no run of {sweep} logged EMA held-out losses (split 'eval_ema'; its runs kept no EMA): drop --weights ema"
        )
    live = {}  # run name -> the process training it now
    for run in runs:
        if run.finished:
            continue
        pid = training_process(sweep / RUNS_DIR / run.run)
        if pid is not None:
            live[run.run] = pid
        print(run.left_out_note() if pid is None else live_run_note(run, pid), file=sys.stderr)
    runs = [run for run in runs if run.finished]
    if not runs:
        fix = (
            f"{len(live)} of its runs {'is training now: ' if len(live) == 1 else 'are training now: '}{verb} again "
            f"when {'it finishes' if len(live) == 1 else 'they finish'}"
            if live
            else "re-run `nextscale scaling run` with the sweep's settings to finish"
        )
        raise ValueError(f"no run of {sweep} has finished yet; {fix}")
    for note in chance_notes(runs):
        print(note, file=sys.stderr)
    return runs


def live_run_note(run, pid: int) -> str:
    """Why a run of the sweep that is training now is not a point yet: the fit or figure is partial."""
    return (
        f"left out {run.run}: still training (process {pid}, step {run.saved_step} of {run.total_steps} saved); this "
        "is a partial sweep: its point joins when the run finishes, so fit or plot again then"
    )


def _table_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV table, less those a sweep's points.csv marks unfinished (a line on stderr each), after
    checking they come from one sweep; a note on stderr for each row at chance loss (a table with vocab_size)."""
    from nextscale.scaling.budgets import check_one_budget
    from nextscale.scaling.chance import table_chance_notes
    from nextscale.scaling.sweep import finished_rows, read_table

    rows, notes = finished_rows(read_table(path), str(path))
    for note in notes:
        print(note, file=sys.stderr)
    check_one_budget(rows, str(path))
    for note in table_chance_notes(rows):
        print(note, file=sys.stderr)
    return rows


def _rows(args: argparse.Namespace) -> tuple[list[dict], str]:
    """Rows of the table (--csv) or of the sweep's finished runs (--sweep), and a name for messages."""
    if args.csv is not None:
        return _table_rows(args.csv), str(args.csv)
    if args.weights != "raw":
        return [run.row() for run in _finished_runs(args.sweep, args.weights)], f"{args.sweep} ({args.weights} weights)"
    return [run.row() for run in _finished_runs(args.sweep)], str(args.sweep)


def fitted(args: argparse.Namespace, rows: list[dict], x_name: str) -> dict[str, object]:
    """What a fit was made of (FITTED_KEYS): the columns, whose weights, the held-out sequences per point (one
    number; None when the rows do not record it) and the sweep or table it read."""

    def shared(name: str, default: object) -> object:
        values = {str(row[name]) for row in rows if row.get(name) not in (None, "")}
        return values.pop() if len(values) == 1 else default

    samples = shared("eval_samples", None)
    return {
        "x": x_name,
        "y": args.y,
        "weights": shared("weights", args.weights),
        "eval_samples": None if samples is None else int(float(samples)),
        "source": str(args.csv if args.csv is not None else args.sweep),
    }


def fitted_text(what: dict[str, object]) -> str:
    """The fit line's account of the points: "raw weights, 200 held-out sequences each"."""
    samples = what["eval_samples"]
    return f"{what['weights']} weights" + ("" if samples is None else f", {samples} held-out sequences each")


def seed_report(rows: list[dict], x_name: str, y_name: str, source: str) -> dict[str, object]:
    """num_seeds (None when the rows have no seed column) and per_depth: the mean ± std of ``y_name`` over the
    rows of each depth (of each X value when there is no depth column), as `fit --json` prints them."""
    from nextscale.scaling.sweep import column
    from nextscale.scaling.uncertainty import spread_by_group

    x, y = column(rows, x_name, source), column(rows, y_name, source)
    by_depth = "depth" in rows[0]
    groups = spread_by_group(column(rows, "depth", source) if by_depth else x, x, y)
    per_depth = [
        {
            "depth": int(group.key) if by_depth else None,
            "x": group.x,
            "num_points": group.num_points,
            "mean": group.mean,
            "std": group.std,
        }
        for group in groups
    ]
    num_seeds = len(set(column(rows, "seed", source))) if "seed" in rows[0] else None
    return {"num_seeds": num_seeds, "per_depth": per_depth}


def run_fit(args: argparse.Namespace) -> int:
    from nextscale.scaling.power_law import fit_pareto_frontier, fit_power_law
    from nextscale.scaling.sweep import column, loss_curves

    x_name = args.x or ("compute" if args.frontier else "params")
    if args.irreducible and args.frontier:
        raise ValueError("--irreducible fits the final points of the runs; leave out --frontier")
    if args.frontier and x_name != "compute":
        raise ValueError(f"--frontier fits loss vs training compute; drop --x {args.x} (or give --x compute)")
    if args.csv is not None and args.weights != "raw":
        raise ValueError("--weights chooses the runs' evaluations of a --sweep; a --csv table has its own losses")
    if args.frontier and args.sweep is not None:  # every evaluation, as the figure's loss-vs-compute panel
        runs = _finished_runs(args.sweep, args.weights)
        curves = loss_curves(runs, args.y)
        points = [point for curve in curves.values() for point in curve]
        source = f"{len(points)} evaluations of {len(curves)} runs of {args.sweep}"
        fit = fit_pareto_frontier([compute for compute, _ in points], [value for _, value in points])
        rows = [run.row() for run in runs]
    else:
        rows, source = _rows(args)
        x, y = column(rows, x_name, source, positive=True), column(rows, args.y, source, positive=True)
        if args.irreducible:
            return report_saturating_fit(args, x_name, x, y, source, fitted(args, rows, x_name))
        fit = fit_pareto_frontier(x, y) if args.frontier else fit_power_law(x, y)
    seeds = seed_report(rows, x_name, args.y, source)
    interval = fit.alpha_interval()
    result = {
        "alpha": fit.alpha,
        "beta": fit.beta,
        "pearson_r": fit.pearson_r,
        "alpha_stderr": fit.alpha_stderr,
        "alpha_ci95": None if interval is None else list(interval),
        "num_points": fit.num_points,
        **seeds,
        **fitted(args, rows, x_name),
    }
    if args.json:
        # allow_nan=False: Infinity / NaN are not JSON; fit_power_law refuses such fits, this keeps it so.
        print(json.dumps({key: result[key] for key in FIT_JSON_KEYS}, allow_nan=False))
        return 0
    where = "on the compute Pareto frontier of" if args.frontier else "from"
    print(f"{fit.formula(x_name, args.y)}  (alpha = {fit.alpha:.6g}, beta = {fit.beta:.6g}, ", end="")
    print(f"Pearson r of logs = {fit.pearson_r:.4f}, {fit.num_points} points {where} {source}; {fitted_text(result)})")
    if interval is None:
        print(f"alpha has no standard error: {fit.num_points} points leave no degrees of freedom (fit 3 or more)")
    else:
        print(
            f"alpha = {fit.alpha:.4g} ± {fit.alpha_stderr:.2g} (standard error); 95 % confidence interval "
            f"[{interval[0]:.4g}, {interval[1]:.4g}] (t distribution, {fit.degrees_of_freedom} degrees of freedom)"
        )
    print_seed_spread(rows, seeds, args.y)
    return 0


def print_seed_spread(rows: list[dict], seeds: dict, y_name: str) -> None:
    """With several runs per depth: how many runs, depths and seeds, and the mean ± std of Y at each depth."""
    per_depth = seeds["per_depth"]
    if all(group["num_points"] == 1 for group in per_depth):
        return
    each = "depth" if per_depth[0]["depth"] is not None else "size"
    counted = f", {seeds['num_seeds']} seeds" if seeds["num_seeds"] is not None else ""
    print(f"{len(rows)} runs: {len(per_depth)} {each}s{counted}; {y_name} per {each} across its runs (mean ± std):")
    for group in per_depth:
        name = f"d{group['depth']}" if group["depth"] is not None else f"x = {group['x']:.4g}"
        spread = f" ± {group['std']:.3g}" if group["std"] is not None else ""
        print(f"  {name}: {group['mean']:.4g}{spread} ({group['num_points']} runs)")


def report_saturating_fit(
    args: argparse.Namespace, x_name: str, x: list, y: list, source: str, what: dict[str, object]
) -> int:
    """``fit --irreducible``: L = L_inf + (beta X)^alpha, and whether its floor is supported against the plain
    power law (F-test for nested least-squares fits and AIC; the raw residuals always favour the floor)."""
    from nextscale.scaling.power_law import compare_nested_fits, fit_power_law, fit_saturating_power_law

    fit = fit_saturating_power_law(x, y)
    plain = fit_power_law(x, y)
    test = compare_nested_fits(x, y, plain, fit)
    if args.json:
        rms_plain = (test.rss_plain / test.num_points) ** 0.5
        result = {
            "alpha": fit.alpha,
            "beta": fit.beta,
            "irreducible": fit.irreducible,
            "rms_log_residual": fit.rms_log_residual,
            "rms_log_residual_plain": rms_plain,
            "num_points": test.num_points,
            "degrees_of_freedom": test.degrees_of_freedom,
            # an exact fit of 4 or more points has F = inf, which JSON cannot hold: null, with p = 0
            "f_statistic": test.f_statistic if test.f_statistic != float("inf") else None,
            "p_value": test.p_value,
            "aic": test.aic_floor,
            "aic_plain": test.aic_plain,
            "floor_supported": test.floor_supported,
            **what,
        }
        print(json.dumps(result, allow_nan=False))
        return 0
    print(f"{fit.formula(x_name, args.y)}  (alpha = {fit.alpha:.6g}, beta = {fit.beta:.6g}, ", end="")
    print(f"L_inf = {fit.irreducible:.6g}, {fit.num_points} points from {source}; {fitted_text(what)})")
    rms_plain = (test.rss_plain / test.num_points) ** 0.5
    print(
        f"rms residual of log {args.y}: {fit.rms_log_residual:.4g} with L_inf (3 parameters, {test.degrees_of_freedom} "
        f"degrees of freedom), {rms_plain:.4g} as a plain power law (2 parameters, {test.num_points - 2})"
    )
    print(f"the floor against the plain law: {test.text()}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from nextscale.scaling.plot import plot_scaling
    from nextscale.scaling.sweep import column, loss_curves

    if args.csv is not None and args.weights != "raw":
        raise ValueError("--weights chooses the runs' evaluations of a --sweep; a --csv table has its own losses")
    if args.csv is not None:
        if args.out is None:
            raise ValueError("--out is required with --csv")
        check_png_output(args.out)
        table, source = _table_rows(args.csv), str(args.csv)
        curves, out = None, args.out
    else:
        out = args.out or args.sweep / "scaling.png"
        check_png_output(out)
        runs = _finished_runs(args.sweep, args.weights, verb="plot")
        table, source, curves = [run.row() for run in runs], str(args.sweep), loss_curves(runs)
    # The drawn columns: a NaN or empty value is refused naming its row (a diverged run), not drawn as a gap or
    # skipped as a text column; sizes, compute and losses must be positive too (log axes, fitted laws).
    numeric = {
        name: column(table, name, source, positive=name in ("params", "compute", "loss"))
        for name in PLOTTED_COLUMNS
        if name in table[0]
    }
    rows = [{name: values[index] for name, values in numeric.items()} for index in range(len(table))]
    try:
        path = plot_scaling(rows, out, curves=curves, title=args.title, irreducible=args.irreducible)
    except ImportError as err:
        raise ValueError(str(err)) from err
    print(f"figure: {path}")
    return 0


def check_png_output(path: Path) -> None:
    """--out, before anything is read or drawn: a PNG file name (the figure is always a PNG, whatever the name
    says) in a folder that can take it, not a folder."""
    from nextscale.cli.common import check_output_file

    if path.suffix.lower() != ".png" and not path.is_dir():
        raise ValueError(f"--out {path}: the figure is a PNG; end the name with .png (e.g. {path.with_suffix('.png')})")
    check_output_file(path, "--out", example="scaling.png")
