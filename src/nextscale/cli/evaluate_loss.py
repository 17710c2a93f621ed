"""``nextscale evaluate --loss``: held-out test loss and token error per scale (the VAR paper's L_last, L_avg,
Err_last, Err_avg, §5.2) of a class or text model, teacher-forced on a token folder made with its tokenizer.

A raster-scan model's loss is next-token cross-entropy over the tokens of one map that quantises the whole latent
at once; a next-scale model's last scale codes what its coarser scales left over. Both are reported under the
VAR paper's names (L_last, L_avg, ...), but they are losses over different codes of the same grid (on Fashion-MNIST's
test images 3.9 % of the raster tokens equal the next-scale last-scale token at the same position), so the report
names the kind and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

from nextscale.cli import evaluate
from nextscale.cli.common import SAMPLING_FLAGS, Default
from nextscale.cli.evaluate_edit import EDIT_FLAGS
from nextscale.cli.evaluate_source import ModelFacts
from nextscale.cli.train import check_same_classes

HELD_OUT = "held-out test loss"
TRAINING_LOSS = "training-split loss"  # --tokens that training read (a warning says so and how to fix it)

# Flags of sample evaluation that --loss (which samples nothing) refuses.
NOT_FOR_LOSS = (
    *evaluate.CLASS_ONLY,
    *EDIT_FLAGS,
    ("save_samples", "--save-samples"),
    ("reference", "--reference"),
    ("reference_cache", "--reference-cache"),
    ("inception", "--inception"),
    ("seed", "--seed"),
    ("smooth", "--smooth"),
    ("cuda_graphs", "--cuda-graphs"),
    ("fused_kernels", "--fused-kernels"),
)


def open_tokens(args: argparse.Namespace, facts: ModelFacts):
    """``--loss``: the held-out token folder, checked against the model's kind and tokenizer config (no weights)."""
    from nextscale.data.token_dataset import TokenShardDataset
    from nextscale.data.token_manifest import config_hash

    if not (args.loss and args.tokens is not None):
        raise ValueError("--loss measures held-out tokens: give both --loss and --tokens DIR")
    evaluate.refuse_flags(args, NOT_FOR_LOSS, "is for sample evaluation, not for --loss")
    given = [name for name in SAMPLING_FLAGS if not isinstance(getattr(args, name), Default)]
    if given:  # teacher forcing draws nothing: a sampling setting would be silently ignored
        flag = f"--{given[0].replace('_', '-')}"
        raise ValueError(f"{flag} is a sampling setting; --loss teacher-forces held-out tokens and samples nothing")
    if args.num is not None and args.num < 1:
        raise ValueError("--num must be at least 1")
    dataset = TokenShardDataset(args.tokens)  # the manifest and every shard it lists exist
    if dataset.is_captioned != facts.text:
        made, model = ("captioned", "class") if dataset.is_captioned else ("labelled", "text")
        raise ValueError(
            f"--tokens {args.tokens} holds {made} tokens but the model is {model}-conditional; tokenize held-out "
            f"{'labelled images' if model == 'class' else 'captioned images (--data captions:PATH)'} instead"
        )
    dataset.check_schedule(facts.tokenizer_config, "this model")
    if dataset.manifest["tokenizer"]["config_hash"] != config_hash(facts.tokenizer_config):
        raise ValueError(
            f"the tokens in {args.tokens} were made by a different tokenizer (its config differs from this model's); "
            "re-run `nextscale tokenize --tokenizer MODEL_DIR` with this model's folder"
        )
    if facts.text and not facts.has_text_encoder:
        raise ValueError(
            "this text pipeline has no text encoder, and the held-out loss encodes each caption: convert it again "
            "with --text-encoder DIR"
        )
    return dataset


def run_loss(args: argparse.Namespace, dataset, pipe, started: float, source: dict) -> int:
    """``--loss``: held-out test loss and token error per scale on a token folder (class or captioned tokens), with
    the model's kind and token schedule (a raster model's loss is over other tokens than a next-scale model's)."""
    import torch

    from nextscale.evaluation.held_out import collate_held_out, evaluate_held_out

    dataset.check_tokenizer(pipe.tokenizer)  # the weights, now that they are loaded
    check_same_classes(ModelClasses(getattr(pipe, "class_names", None)), dataset)  # as train checks --eval-tokens
    measured, split_warnings = what_is_measured(args, dataset, pipe)
    count = len(dataset) if args.num is None else min(args.num, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(count))
    loader = torch.utils.data.DataLoader(subset, batch_size=args.batch_size, collate_fn=collate_held_out)
    text_encoder = pipe.text_encoder if pipe.is_text_conditional else None

    @contextlib.contextmanager
    def precision():  # the transformer runs as it samples: --dtype bf16 casts its linear weights
        with pipe.precision.autocast(pipe.device), pipe.precision.linear_products():
            yield

    held_out = evaluate_held_out(
        pipe.transformer,
        pipe.tokenizer,
        loader,
        text_encoder=text_encoder,
        transformer_context=precision,
        progress=not args.no_progress,
    )
    kind = loss_kind_entries(pipe.transformer)
    report = {
        "model": str(args.model or "bundled"),
        **source,
        "measured": measured,
        "model_kind": held_out.model_kind,
        "token_schedule": kind["token_schedule"],
        "conditioning": "text" if pipe.is_text_conditional else "class",
        "tokens": str(args.tokens),
        "dtype": pipe.precision.name,
        **dataclasses.asdict(held_out),
        "warnings": split_warnings + kind["warnings"],
    }
    return evaluate.finish(args, report, started, summary=loss_summary)


def loss_summary(report: dict) -> str:
    """The --loss report as a few lines: what was measured on which weights, one row per scale, the summaries.

    held-out test loss of models/star2 (checkpoint step 150, ema weights) on 20 sequences of tokens/test
    next-scale model, text-conditioned, fp32
     scale  side    loss  token error
         1     1   2.975        0.500
       ...
    L_avg 4.760, L_last 4.977 (nats per token); Err_avg 0.916, Err_last 0.923
    """
    step, weights = report.get("checkpoint_step"), report.get("weights")  # absent for a converted official model
    which = [f"checkpoint step {step}"] if step is not None else []
    which += [f"{weights} weights"] if weights else []
    which = f" ({', '.join(which)})" if which else ""
    lines = [
        f"{report['measured']} of {report['model']}{which} on {report['num_samples']} sequences of {report['tokens']}",
        f"{report['model_kind']} model, {report['conditioning']}-conditioned, {report['dtype']}",
        f"{'scale':>6}  {'side':>4}  {'loss':>6}  {'token error':>11}",
    ]
    rows = zip(report["scale_sides"], report["scale_loss"], report["token_error"], strict=True)
    lines += [
        f"{number:>6}  {side:>4}  {loss:>6.3f}  {error:>11.3f}" for number, (side, loss, error) in enumerate(rows, 1)
    ]
    lines.append(
        f"L_avg {report['L_avg']:.3f}, L_last {report['L_last']:.3f} (nats per token); "
        f"Err_avg {report['Err_avg']:.3f}, Err_last {report['Err_last']:.3f}"
    )
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ModelClasses:
    """The class names a model was trained with, in the shape ``check_same_classes`` reads (``classes``)."""

    classes: tuple[str, ...] | None


def what_is_measured(args: argparse.Namespace, dataset, pipe) -> tuple[str, list[str]]:
    """The report's ``measured`` entry and its warning: held-out test loss, unless ``--tokens`` is a training split
    (its manifest records split "train") or the very token folder the run trained on (its config.json "tokens")."""
    from nextscale.data.token_manifest import is_training_split

    trained_on = trained_tokens(args.model) if pipe.trained_weights is not None else None
    same = trained_on is not None and trained_on == Path(args.tokens).resolve()
    if not (same or is_training_split(dataset.manifest)):
        return HELD_OUT, []
    split = dataset.manifest.get("split")
    what = f'its manifest.json records "split": "{split}"' if split else "it is the --tokens this run trained on"
    if same and split:
        what += ", the tokens this run trained on"
    return TRAINING_LOSS, [
        f"{args.tokens} is not held-out data ({what}): this is training loss, not held-out test loss; tokenize "
        "held-out images (`nextscale tokenize --split test`, or --split val) and pass that folder to --tokens"
    ]


def trained_tokens(run_dir) -> Path | None:
    """The token folder a training run trained on (config.json "tokens", resolved from here), or None."""
    from nextscale.training.export import read_run_config

    tokens = read_run_config(run_dir).get("tokens")
    return Path(tokens).resolve() if isinstance(tokens, str) and tokens else None


def loss_kind_entries(transformer) -> dict:
    """``--loss`` report entries beside ``HeldOutReport.model_kind``: ``token_schedule`` and ``warnings`` (for a
    raster model, that its loss is not comparable with a next-scale model's)."""
    from nextscale.transformer.raster_model import RasterTransformer

    schedule = transformer.config.schedule
    if isinstance(transformer, RasterTransformer):
        side = schedule.sides[-1]
        return {
            "token_schedule": f"one {side}x{side} map, {schedule.total_tokens} tokens in raster order",
            "warnings": [
                f"a raster model's L_last/L_avg is next-token loss over the tokens of one {side}x{side} map that "
                "quantises the whole latent; a next-scale model's last scale codes what its coarser scales left, "
                "other codes on the same grid: the two losses are not comparable (compare the models by "
                "FID/precision/recall of their samples)"
            ],
        }
    sides = ", ".join(str(side) for side in schedule.sides)
    return {
        "token_schedule": f"scales {sides}: {schedule.total_tokens} tokens, each scale after the coarser ones",
        "warnings": [],
    }
