"""Sweep bookkeeping: parameters and training compute of each run, its held-out losses, points.csv/json.

A sweep is one folder::

    sweeps/NAME/runs/d{depth}/   one ordinary transformer training run per depth (config.json, metrics.jsonl,
                                 checkpoints/): re-running resumes it, a finished run is left alone
    sweeps/NAME/runs/d{depth}-seed{S}/  the run of that depth with another seed S (``scaling run --seeds``);
                                 runs/d{depth} is the run of the sweep's base seed, the one the `nextscale train`
                                 flags give (0 unless they set --seed), as in sweeps made before seeds
    sweeps/NAME/sweep.json       the settings of `nextscale scaling run` (provenance), its depths and seeds
    sweeps/NAME/points.csv       one row per run: its depth and seed, its size, its compute, its last held-out
                                 metrics, whether it finished (reached its planned steps), the data it trained and
                                 was evaluated on and its vocabulary size; fits and plots count finished runs only
    sweeps/NAME/points.json      the same rows, plus every held-out evaluation of every run (the curves)

Accounting (stated once, used everywhere):
    N  parameters: every parameter of the transformer, embeddings included, as the VAR paper counts them
       (var-d16 = 310.3M); ``params_non_embedding`` leaves out the class, word, position and level embeddings
       (Kaplan et al.'s N) for those who want it.
    D  tokens seen after s optimizer steps: s x batch_size x L, with L the tokens of one image (all scales), or
       the --keep-tokens a text run with token dropping trains on; progressive training (VAR pg) would see fewer,
       and is not accounted for.
    C  training compute: C = 6 (N_token D + N_image I) FLOPs, 2 for the forward and 4 for the backward
       multiply-add of a parameter on each input it multiplies (Kaplan et al.'s 6 N D, with N split by what a
       parameter acts on in the forward pass). N_token (``params_per_token``): the Linear layers every image token
       passes through (attention, MLP, word embedding, logits head; a text model's text projection and
       cross-attention keys/values act on the caption tokens and are counted per image token too, an overcount
       when captions are shorter than L). N_image (``params_per_image``): the AdaLN modulation Linears, which act
       once per image on the (B, C) condition vector, not per token; I = s x batch_size images. Tables that are
       looked up or added (class, position and level embeddings, start token, AdaLN offsets), norms and attention
       biases do no multiply-adds and are not counted; nor are attention scores or the frozen tokenizer. Points
       written before this count (C = 6 N D, every parameter per token) overstate C by N / N_token: 1.4-1.5x at
       the sweep sizes of docs/REPRODUCTION.md, where AdaLN is 20-33 % of N. The VAR paper plots loss against
       "training compute" without stating its count; N on the loss law's x axis stays every parameter, as the
       paper counts its model sizes.

Held-out metrics come from the run's metrics.jsonl "eval" lines (written by the trainer's ``eval_step``):
``loss`` is L_avg (mean cross-entropy over all tokens), ``loss_last`` L_last, ``error`` Err_avg and
``error_last`` Err_last (``evaluation.held_out.summarize``). They measure the raw (trained) weights, over the first
``--eval-samples`` sequences of the held-out tokens (train's default 512), as official VAR (no EMA) does; a run
that keeps an EMA also logs its EMA weights' metrics (split "eval_ema", the weights ``export``, ``scaling samples``
and ``evaluate --model RUN_DIR`` use), which ``read_run(..., weights="ema")`` and ``scaling fit/plot --weights ema``
read instead. points.csv says which (``weights``, ``eval_samples``).

Which data (``train_data``, ``eval_data``): the token folders the run trained and was evaluated on, absolute, as its
config.json records them (``--tokens`` resolved against the sweep's working directory, as sweep.json's paths are
compared; ``--eval-tokens`` resolved by training). With ``vocab_size`` (the codebook size) they let a table joined
from several sweeps' points.csv be refused when the data differ, and runs at chance loss ln(vocab_size) be noted.
Files written before these columns lack them and are read as before.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from nextscale.evaluation.held_out import summarize
from nextscale.pretrained import atomic_write_text, config_from_dict
from nextscale.training.checkpoint import checkpoint_step, latest_checkpoint
from nextscale.training.export import read_run_config
from nextscale.training.metrics import METRICS_FILE, read_metrics_records
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
POINTS_CSV = "points.csv"
POINTS_JSON = "points.json"
SWEEP_FILE = "sweep.json"
FRONTIER_METRICS = ("loss", "loss_last", "error", "error_last")  # EvalPoint fields measured on held-out data
FLOPS_PER_PARAMETER_TOKEN = 6  # forward 2 + backward 4 (Kaplan et al. 2020, section 2.1)
WEIGHT_SPLITS = {"raw": "eval", "ema": "eval_ema"}  # whose held-out losses a point is: metrics.jsonl split
EVAL_TOKENS_RECORD = "--eval-tokens "  # how a run's config.json "held_out" names a held-out token folder
# Columns of points.csv, in order.
COLUMNS = (
    "run",
    "depth",
    "seed",
    "embed_dim",
    "num_heads",
    "params",
    "params_non_embedding",
    "params_per_token",
    "params_per_image",
    "tokens_per_sample",
    "batch_size",
    "step",
    "total_steps",
    "tokens_seen",
    "compute",
    "loss",
    "loss_last",
    "error",
    "error_last",
    "weights",
    "eval_samples",
    "finished",
    # Added later, so at the end: readers of older files (and of the columns by position) keep working.
    "train_data",
    "eval_data",
    "vocab_size",
)
_MODELS = {
    ScaleTransformer.__name__: (ScaleTransformer, TransformerConfig),
    TextScaleTransformer.__name__: (TextScaleTransformer, TextTransformerConfig),
}


def run_name(depth: int, seed: int, base_seed: int) -> str:
    """The run folder of one depth and seed: d{depth} for the sweep's base seed, d{depth}-seed{seed} otherwise."""
    return f"d{depth}" if seed == base_seed else f"d{depth}-seed{seed}"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, parameters outside the embeddings).

    Embeddings are the top-level parameters and modules whose name holds "embed" or "pos" (class/text-free
    condition table, word embedding, position table, level embedding, start position).
    """
    total = embedding = 0
    for name, parameter in model.named_parameters():
        total += parameter.numel()
        top = name.split(".")[0]
        if "embed" in top or "pos" in top:
            embedding += parameter.numel()
    return total, total - embedding


@dataclass(frozen=True)
class ComputeParameters:
    """The parameters that do multiply-adds in the forward pass: per image token, and once per image."""

    per_token: int
    per_image: int


def compute_parameters(model: nn.Module) -> ComputeParameters:
    """Split the Linear layers' parameters by what they multiply: the AdaLN modulations (any module with
    "adaln" in its name) take the (B, C) condition once per image; every other Linear takes every token.
    Lookup tables, added parameters and norms do no multiply-adds and are in neither count."""
    per_token = per_image = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        count = sum(parameter.numel() for parameter in module.parameters(recurse=False))
        if "adaln" in name:
            per_image += count
        else:
            per_token += count
    return ComputeParameters(per_token, per_image)


def _meta_model(config: TransformerConfig | TextTransformerConfig) -> nn.Module:
    """The model a config builds, on the meta device (no memory, no init cost)."""
    model_cls = TextScaleTransformer if isinstance(config, TextTransformerConfig) else ScaleTransformer
    with torch.device("meta"):
        return model_cls(config)


def transformer_parameters(config: TransformerConfig | TextTransformerConfig) -> tuple[int, int]:
    """``count_parameters`` of the model a config builds."""
    return count_parameters(_meta_model(config))


def transformer_compute_parameters(config: TransformerConfig | TextTransformerConfig) -> ComputeParameters:
    """``compute_parameters`` of the model a config builds."""
    return compute_parameters(_meta_model(config))


def tokens_per_sample(total_tokens: int, keep_tokens: int | None) -> int:
    """L of D = s x batch x L: the tokens of one image (all scales), or the ``keep_tokens`` of a run with token
    dropping (`nextscale train --keep-tokens`), whose forward and backward passes see only those."""
    return total_tokens if keep_tokens is None else min(total_tokens, int(keep_tokens))


def training_compute(use: ComputeParameters, tokens: int, images: int) -> float:
    """C = 6 (N_token D + N_image I) FLOPs: ``tokens`` D and ``images`` I seen in training (see the module)."""
    return float(FLOPS_PER_PARAMETER_TOKEN) * (use.per_token * tokens + use.per_image * images)


@dataclass(frozen=True)
class EvalPoint:
    """One held-out evaluation of a run: where it was taken and the paper's four numbers."""

    step: int
    tokens_seen: int
    compute: float
    loss: float
    loss_last: float
    error: float
    error_last: float


@dataclass(frozen=True)
class RunSummary:
    """A training run of a sweep: its shape, size and every held-out evaluation, oldest first."""

    run: str
    depth: int
    seed: int
    embed_dim: int
    num_heads: int
    params: int
    params_non_embedding: int
    params_per_token: int
    params_per_image: int
    tokens_per_sample: int
    batch_size: int
    total_steps: int
    saved_step: int
    evals: tuple[EvalPoint, ...]
    weights: str = "raw"
    eval_samples: int | None = None
    vocab_size: int | None = None  # the codebook size: ln(vocab_size) is the loss of the uniform guess
    train_data: str | None = None  # the token folder (or data spec) it trained on, absolute; None if not recorded
    eval_data: str | None = None  # the held-out token folder (or what `train` recorded instead); None if not recorded

    @property
    def finished(self) -> bool:
        """Trained to its planned steps, checkpointed there and evaluated there.

        The checkpoint matters: a run killed after an evaluation but before its checkpoint resumes from the
        older checkpoint and drops the later metrics lines, so they do not count yet.
        """
        return self.saved_step >= self.total_steps and bool(self.evals) and self.evals[-1].step >= self.total_steps

    def row(self) -> dict[str, object]:
        """The points.csv row: the run and its last evaluation (the run must have one)."""
        if not self.evals:
            raise ValueError(f"run {self.run} has no held-out evaluation yet")
        final = asdict(self.evals[-1])
        values = {**asdict(self), **final, "finished": self.finished}
        return {column: values[column] for column in COLUMNS}

    def left_out_note(self) -> str:
        """Why an unfinished run is not a point of a fit or plot, and how to finish it (one line)."""
        if self.saved_step >= self.total_steps:
            why = f"no held-out evaluation at its last step {self.total_steps}"
        else:
            why = f"unfinished ({self.saved_step} of {self.total_steps} steps)"
        return f"left out {self.run}: {why}; re-run `nextscale scaling run` with the sweep's settings to finish it"


def finished_runs(runs: list[RunSummary]) -> tuple[list[RunSummary], list[str]]:
    """The runs that reached their planned steps, and a ``left_out_note`` for every other run."""
    return [run for run in runs if run.finished], [run.left_out_note() for run in runs if not run.finished]


def one_run_per_depth(runs: list[RunSummary]) -> list[RunSummary]:
    """Per depth the run of the sweep's base seed (folder d{depth}), else the one of its lowest seed."""
    chosen: dict[int, RunSummary] = {}
    for run in sorted(runs, key=lambda run: (run.run != f"d{run.depth}", run.seed)):
        chosen.setdefault(run.depth, run)
    return sorted(chosen.values(), key=lambda run: (run.params, run.run))


def finished_rows(rows: list[dict[str, str]], source: str) -> tuple[list[dict[str, str]], list[str]]:
    """The rows of a table (``read_table``) that a points.csv "finished" column does not mark unfinished, and
    a note for each row left out. A table without the column keeps every row."""
    if "finished" not in rows[0]:
        return rows, []
    kept, notes = [], []
    for index, row in enumerate(rows):
        if (row["finished"] or "").strip().lower() in ("true", "1", "yes"):  # None: a row shorter than the header
            kept.append(row)
            continue
        progress = (
            f" ({row['step']} of {row['total_steps']} steps)" if row.get("step") and row.get("total_steps") else ""
        )
        name = row.get("run") or f"row {index + 1}"
        notes.append(
            f"left out {name}: unfinished{progress}, as {source} records; finish it with `nextscale scaling run`"
        )
    if not kept:
        raise ValueError(f"every row of {source} is an unfinished run; finish them with `nextscale scaling run`")
    return kept, notes


def loss_curves(runs: list[RunSummary], metric: str = "loss") -> dict[str, list[tuple[float, float]]]:
    """{run: [(compute, metric), ...]} of every held-out evaluation with compute and metric > 0 (logs are
    taken): the points of the compute Pareto frontier, in the figure and in ``scaling fit --frontier`` alike."""
    if metric not in FRONTIER_METRICS:
        raise ValueError(f"the frontier is of a held-out metric ({', '.join(FRONTIER_METRICS)}), not {metric!r}")
    curves = {}
    for run in runs:
        pairs = [(point.compute, getattr(point, metric)) for point in run.evals]
        curves[run.run] = [(compute, value) for compute, value in pairs if compute > 0 and value > 0]
    return curves


def read_run(run_dir: str | os.PathLike, weights: str = "raw") -> RunSummary:
    """Summarise a transformer training run from its config.json and metrics.jsonl.

    Args:
        run_dir: the run folder.
        weights: whose held-out metrics: "raw" (split "eval", the trained weights) or "ema" (split "eval_ema",
            logged only when the run keeps an EMA; a run without any has no evaluations then).
    """
    if weights not in WEIGHT_SPLITS:
        raise ValueError(f"weights must be one of {sorted(WEIGHT_SPLITS)}, got {weights!r}")
    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    if run_config["kind"] != "transformer":
        raise ValueError(f"{run_dir} is a {run_config['kind']} run; a scaling sweep measures transformer runs")
    model_class = run_config.get("model_class", ScaleTransformer.__name__)
    if model_class not in _MODELS:
        raise ValueError(f"{run_dir} trains a {model_class}; a scaling sweep measures VAR or STAR transformers")
    _, config_cls = _MODELS[model_class]
    config = config_from_dict(config_cls, run_config["transformer"])
    model = _meta_model(config)
    (params, non_embedding), use = count_parameters(model), compute_parameters(model)
    batch_size, total_steps = int(run_config["train"]["batch_size"]), int(run_config["train"]["total_steps"])
    schedule = config.schedule
    per_sample = tokens_per_sample(schedule.total_tokens, (run_config.get("objective") or {}).get("keep_tokens"))
    per_step = batch_size * per_sample
    evals = []
    metrics_path = run_dir / METRICS_FILE
    records = read_metrics_records(metrics_path) if metrics_path.is_file() else []  # a run may still be writing
    newest = latest_checkpoint(run_dir)
    for _, record in records:
        if record.get("split") != WEIGHT_SPLITS[weights] or "loss" not in record:
            continue
        scale_loss = [record[f"scale_loss/scale{k}"] for k in range(schedule.num_scales)]
        token_error = [record[f"token_error/scale{k}"] for k in range(schedule.num_scales)]
        paper = summarize(scale_loss, token_error, schedule)
        step = int(record["step"])
        evals.append(
            EvalPoint(
                step=step,
                tokens_seen=step * per_step,
                compute=training_compute(use, step * per_step, step * batch_size),
                loss=float(record["loss"]),
                loss_last=paper["L_last"],
                error=paper["Err_avg"],
                error_last=paper["Err_last"],
            )
        )
    return RunSummary(
        run=run_dir.name,
        depth=config.depth,
        seed=int(run_config["train"]["seed"]),
        embed_dim=config.embed_dim,
        num_heads=config.num_heads,
        params=params,
        params_non_embedding=non_embedding,
        params_per_token=use.per_token,
        params_per_image=use.per_image,
        tokens_per_sample=per_sample,
        batch_size=batch_size,
        total_steps=total_steps,
        saved_step=0 if newest is None else checkpoint_step(newest),
        evals=tuple(sorted(evals, key=lambda point: point.step)),
        weights=weights,
        eval_samples=_eval_samples(run_config),
        vocab_size=config.vocab_size,
        train_data=_train_data(run_config),
        eval_data=_eval_data(run_config),
    )


def _train_data(run_config: dict) -> str | None:
    """The data a run trained on: its --tokens folder, resolved (the run config keeps it as typed; the sweep
    compares such paths resolved against its working directory), else its --data spec as recorded."""
    if run_config.get("tokens"):
        return str(Path(run_config["tokens"]).resolve())
    return run_config.get("data")


def _eval_data(run_config: dict) -> str | None:
    """The data a run's held-out metrics measure: the run config's "held_out" record, which training writes as
    "--eval-tokens FOLDER" (resolved) for a token folder (``cli.train.held_out_source``): the folder alone then."""
    held_out = run_config.get("held_out")
    if not held_out:
        return None
    return str(held_out).removeprefix(EVAL_TOKENS_RECORD)


def _eval_samples(run_config: dict) -> int | None:
    """The held-out sequences each evaluation of a run measured: its --eval-samples (None when not recorded)."""
    value = (run_config.get("train") or {}).get("eval_samples")
    return None if value is None else int(value)


def collect_sweep(sweep_dir: str | os.PathLike, weights: str = "raw") -> list[RunSummary]:
    """Every run under ``sweep_dir/runs`` (folders holding a config.json), smallest model first; ``weights`` as
    ``read_run``."""
    runs_dir = Path(sweep_dir) / RUNS_DIR
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir} does not exist: {sweep_dir} is not a sweep (run `nextscale scaling run`)")
    runs = [read_run(path, weights) for path in sorted(runs_dir.iterdir()) if (path / "config.json").is_file()]
    return sorted(runs, key=lambda run: (run.params, run.run))


def write_points(sweep_dir: str | os.PathLike, runs: list[RunSummary]) -> tuple[Path, Path]:
    """points.csv (runs with an evaluation) and points.json (rows + every evaluation) in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for run in runs:
        if run.evals:
            rows.append(run.row())
        else:
            log.warning("run %s has no held-out evaluation yet; it is left out of %s", run.run, POINTS_CSV)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")  # quotes a value holding a comma (a data path may)
    writer.writerow(COLUMNS)
    writer.writerows([_csv_value(row[column]) for column in COLUMNS] for row in rows)
    csv_path, json_path = sweep_dir / POINTS_CSV, sweep_dir / POINTS_JSON
    atomic_write_text(csv_path, table.getvalue())
    document = {
        "accounting": {
            "params": "all transformer parameters (VAR counts); params_non_embedding without the embeddings",
            "params_per_token": "the Linear layers every token passes through (attention, MLP, word embedding, "
            "head; a text model's text-side projections counted per image token too)",
            "params_per_image": "the AdaLN modulation Linears, run once per image on the condition vector",
            "tokens_seen": "steps x batch_size x tokens_per_sample",
            "compute": "6 x (params_per_token x tokens_seen + params_per_image x steps x batch_size) FLOPs; "
            "lookup tables, norms, attention scores and the tokenizer are not counted (points.csv files without "
            "params_per_token used 6 x params x tokens_seen, 1.4-1.5x more at small sizes)",
            "weights": "whose held-out losses: raw (the trained weights, metrics split 'eval') or ema (split "
            "'eval_ema', the weights export, `scaling samples` and `evaluate --model RUN_DIR` use)",
            "eval_samples": "held-out sequences per evaluation: the first ones of --eval-tokens (train's "
            "--eval-samples); `nextscale evaluate --loss --model RUN_DIR --tokens EVAL_TOKENS --num EVAL_SAMPLES` "
            "measures the EMA weights, or the raw ones of a folder from `nextscale export --raw`",
            "loss": "L_avg, held-out cross-entropy over all tokens; loss_last: L_last (last scale)",
            "error": "Err_avg, held-out token error over all tokens; error_last: Err_last (last scale)",
            "train_data": "the token folder the run trained on (--tokens), absolute; eval_data: the held-out one "
            "(--eval-tokens); rows of one fit must share both",
            "vocab_size": "the tokenizer's codebook size: a held-out loss of ln(vocab_size) is the uniform guess",
        },
        "points": rows,
        "runs": [{**asdict(run), "finished": run.finished} for run in runs],
    }
    atomic_write_text(json_path, json.dumps(document, indent=2) + "\n")
    return csv_path, json_path


def _csv_value(value: object) -> str:
    if value is None:  # e.g. eval_samples of a run config that does not record it
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def read_table(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: the byte-order mark of Excel's "CSV UTF-8"
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} has no data rows (a header line and one row per point are expected)")
    return rows


def column(rows: list[dict[str, str]], name: str, source: str = "the table", positive: bool = False) -> list[float]:
    """A numeric column of ``read_table`` rows; a clear error naming the row when it is missing, not a number, not
    finite or, with ``positive`` (a power law takes logs), not above 0."""
    if name not in rows[0]:
        raise ValueError(f"{source} has no column {name!r}; its columns are {list(rows[0])}")
    values = []
    for index, row in enumerate(rows):
        where = f"{source}, row {index + 1}" + _row_name(row, name)
        try:
            value = float(row[name])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: column {name!r} holds {row[name]!r}, not a number") from err
        if not math.isfinite(value):  # a diverged run's NaN loss would otherwise surface unnamed in a fit
            raise ValueError(
                f"{where}: column {name!r} holds {row[name]!r}, not a finite number (a diverged or broken run); "
                "fix or remove that row"
            )
        if positive and value <= 0:
            raise ValueError(
                f"{where}: column {name!r} holds {row[name]!r}; a power law takes logs, so it must be positive: "
                "fix or remove that row"
            )
        values.append(value)
    return values


def _row_name(row: dict, name: str) -> str:
    """How a person finds a row: " (run d4)", else its first column's value (" (params 1234)"); the row number
    alone can mislead, as unfinished rows are left out before columns are read."""
    if row.get("run"):
        return f" (run {row['run']})"
    first = next(iter(row), None)
    return f" ({first} {row[first]})" if first not in (None, name) and row[first] not in (None, "") else ""
