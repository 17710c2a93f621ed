"""Scaling laws at small scale: power-law fits, compute accounting, sweeps of transformer runs, their figure.

``nextscale scaling run`` trains one transformer per depth (the shape rule of ``TransformerConfig.from_depth``),
``nextscale scaling fit`` fits L = (β·X)^α, ``nextscale scaling plot`` draws the VAR paper's Fig. 5/6 at small
scale. See ``sweep`` for the accounting of N, D and C.
"""

from nextscale.scaling.power_law import PowerLawFit, fit_pareto_frontier, fit_power_law, pareto_frontier
from nextscale.scaling.sweep import (
    EvalPoint,
    RunSummary,
    collect_sweep,
    count_parameters,
    finished_runs,
    loss_curves,
    read_run,
    training_compute,
    transformer_parameters,
    write_points,
)

__all__ = [
    "EvalPoint",
    "PowerLawFit",
    "RunSummary",
    "collect_sweep",
    "count_parameters",
    "finished_runs",
    "fit_pareto_frontier",
    "fit_power_law",
    "loss_curves",
    "pareto_frontier",
    "read_run",
    "training_compute",
    "transformer_parameters",
    "write_points",
]
