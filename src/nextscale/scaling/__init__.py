"""Scaling laws at small scale: power-law fits with the uncertainty of their exponent, compute accounting, sweeps
of transformer runs (one per depth and seed), their figure.

``nextscale scaling run`` trains one transformer per depth (the shape rule of ``TransformerConfig.from_depth``)
and seed, ``nextscale scaling fit`` fits L = (β·X)^α and gives the standard error and 95 % interval of α,
``nextscale scaling plot`` draws the VAR paper's Fig. 5/6 at small scale. See ``sweep`` for the accounting of N, D
and C, and ``uncertainty`` for what the interval assumes.
"""

from nextscale.scaling.power_law import PowerLawFit, fit_pareto_frontier, fit_power_law, pareto_frontier
from nextscale.scaling.sweep import (
    ComputeParameters,
    EvalPoint,
    RunSummary,
    collect_sweep,
    compute_parameters,
    count_parameters,
    finished_runs,
    loss_curves,
    one_run_per_depth,
    read_run,
    training_compute,
    transformer_compute_parameters,
    transformer_parameters,
    write_points,
)
from nextscale.scaling.uncertainty import GroupSpread, spread_by_group, student_t_quantile

__all__ = [
    "ComputeParameters",
    "EvalPoint",
    "GroupSpread",
    "PowerLawFit",
    "RunSummary",
    "collect_sweep",
    "compute_parameters",
    "count_parameters",
    "finished_runs",
    "fit_pareto_frontier",
    "fit_power_law",
    "loss_curves",
    "one_run_per_depth",
    "pareto_frontier",
    "read_run",
    "spread_by_group",
    "student_t_quantile",
    "training_compute",
    "transformer_compute_parameters",
    "transformer_parameters",
    "write_points",
]
