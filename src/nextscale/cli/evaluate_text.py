"""``nextscale evaluate`` for text pipelines: prompt adherence on Fashion-MNIST scenes, per cfg, plus FID.

Called by ``nextscale.cli.evaluate.run`` when the model is text-conditional (the flags and examples are in
that module's docstring). The report (``--out``) holds the settings, the prompt split and one result per
cfg value::

    {"conditioning": "text", "prompts": "generated", "num_prompts": 200, "prompt_split": {"seen": 100,
     "unseen": 100}, ..., "results": [{"cfg": 1.5, "adherence": {"overall": {...}, "seen": {...},
     "unseen": {...}}, "fid": ..., "kid": ..., "kid_std": ..., "precision": ..., "recall": ...}],
     "reference_adherence": {...}}

``fid``, ``kid``, ``precision``, ``recall`` and ``reference_adherence`` (the judge's scores on the real reference
scenes: the ceiling a model can reach by this measure) are there when --reference is given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nextscale.cli.evaluate import (
    CLASS_ONLY,
    DEFAULT_MAX_ITEMS,
    DEFAULT_NUM_PROMPTS,
    FEATURE_BATCH,
    refuse_flags,
)
from nextscale.data.scenes import CANVAS_SIZE, held_out_pairings
from nextscale.evaluation.adherence import (
    EMPTY_THRESHOLD,
    AdherenceReport,
    evaluation_prompts,
    prompt_layouts,
    quadrant_features,
    read_prompt_file,
    score_adherence,
    sweep_cfg,
)


def _prompts(args: argparse.Namespace) -> tuple[list[str], str]:
    """The prompts and a description of where they come from."""
    if args.prompts is not None:
        if args.num_prompts is not None or args.max_items is not None:
            raise ValueError("--num-prompts and --max-items shape the generated prompts; leave them out with --prompts")
        return read_prompt_file(args.prompts), str(args.prompts)
    count = DEFAULT_NUM_PROMPTS if args.num_prompts is None else args.num_prompts
    max_items = DEFAULT_MAX_ITEMS if args.max_items is None else args.max_items
    if count < 1:
        raise ValueError(f"--num-prompts must be at least 1, got {count}")
    if not 1 <= max_items <= 4:
        raise ValueError(f"--max-items must be 1 to 4 (a scene has four quadrants), got {max_items}")
    return evaluation_prompts(count, max_items), f"generated (1-{max_items} items)"


def _reference_scenes(args: argparse.Namespace, size: int, channels: int):
    from nextscale.data.captions import open_caption_dataset

    dataset = open_caption_dataset(args.reference, size, channels=channels, train=False)
    return dataset, torch.utils.data.DataLoader(dataset, batch_size=FEATURE_BATCH, shuffle=False)


def _reference_adherence(loader, judge) -> AdherenceReport:
    """The judge's scores on the real scenes: what a perfect model would get."""
    report = None
    for images, captions in loader:
        try:
            layouts = prompt_layouts(captions)
        except ValueError as err:
            raise ValueError(f"--reference must be a scenes folder (nextscale make-scenes): {err}") from err
        scores = score_adherence(images.add(1).div(2), layouts, judge)  # [-1, 1] -> [0, 1]
        report = scores if report is None else report + scores
    return report


def _save_samples(images: torch.Tensor, prompts: list[str], folder: Path) -> None:
    from nextscale.data.images import to_pil
    from nextscale.pretrained import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(to_pil(images.mul(2).sub(1))):
        image.save(folder / f"{index:06d}.png")
    atomic_write_text(folder / "prompts.txt", "".join(f"{prompt}\n" for prompt in prompts))


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[tuple[str, AdherenceReport, float | None]]) -> str:
    """One line per (label, adherence, FID): item, empty and scene accuracy, overall / seen / unseen."""
    lines = [
        f"{'':>6}  {'item accuracy':^22}  {'empty':>6}  {'scene accuracy':^22}  {'FID':>8}",
        f"{'cfg':>6}  {'all':>6} {'seen':>7} {'unseen':>7}  {'all':>6}  {'all':>6} {'seen':>7} {'unseen':>7}",
    ]
    for label, report, fid in rows:
        overall, seen, unseen = report.overall, report.seen, report.unseen
        lines.append(
            f"{label:>6}  {_cell(overall.item_accuracy):>6} {_cell(seen.item_accuracy):>7} "
            f"{_cell(unseen.item_accuracy):>7}  {_cell(overall.empty_accuracy):>6}  "
            f"{_cell(overall.scene_accuracy):>6} {_cell(seen.scene_accuracy):>7} {_cell(unseen.scene_accuracy):>7}  "
            f"{_cell(fid, 2):>8}"
        )
    return "\n".join(lines)


def _reference_side(args: argparse.Namespace, pipe, judge):
    """Reference features (cached with --reference-cache), the extractor, its name and the judge's real scores."""
    from nextscale.evaluation.features import cached_features

    size, channels = pipe.image_size, pipe.tokenizer.config.in_channels
    dataset, loader = _reference_scenes(args, size, channels)
    if args.features == "inception":
        from nextscale.evaluation.inception import find_inception, load_inception

        extractor, network = load_inception(args.inception, device=args.device), find_inception(args.inception).name
    else:
        device = next(judge.parameters()).device  # features come in on the CPU
        extractor = quadrant_features(lambda quadrants: judge.features(quadrants.to(device)))
        network = "bundled-fashion-classifier-quadrants"
    key = dict(reference=str(args.reference), split="scenes", count=len(dataset), size=size, channels=channels)
    real = cached_features(extractor, lambda: loader, args.reference_cache, key={**key, "features": network})
    return real, extractor, network, _reference_adherence(loader, judge.logits)


def _fid(extractor, images: torch.Tensor, real) -> dict:
    from nextscale.evaluation.features import compute_features
    from nextscale.evaluation.fid import fid_from_features
    from nextscale.evaluation.kid import kernel_inception_distance
    from nextscale.evaluation.precision_recall import precision_recall

    fake = compute_features(extractor, torch.split(images.mul(2).sub(1), FEATURE_BATCH))  # [0, 1] -> [-1, 1]
    pr = precision_recall(real, fake)
    kid = kernel_inception_distance(real, fake)
    return {
        "fid": fid_from_features(fake, real),
        "kid": kid.mean,
        "kid_std": kid.std,
        "precision": pr.precision,
        "recall": pr.recall,
    }


def run_text(args: argparse.Namespace, pipe, started: float) -> int:
    from nextscale.evaluation.classifier import load_bundled_classifier

    refuse_flags(
        args, CLASS_ONLY, "is for class-conditional models; this model is text-conditional (see --num-prompts)"
    )
    if pipe.image_size != CANVAS_SIZE:
        raise ValueError(
            f"prompt adherence judges {CANVAS_SIZE}x{CANVAS_SIZE} Fashion-MNIST scenes; this model makes "
            f"{pipe.image_size}x{pipe.image_size} images"
        )
    per_prompt = 1 if args.images_per_prompt is None else args.images_per_prompt
    if per_prompt < 1:
        raise ValueError(f"--images-per-prompt must be at least 1, got {per_prompt}")
    prompts, source = _prompts(args)
    unseen = sum(bool(held_out_pairings(layout)) for layout in prompt_layouts(prompts))
    samples = [prompt for prompt in prompts for _ in range(per_prompt)]
    judge = load_bundled_classifier(args.device)
    sampling = dict(top_k=args.top_k, top_p=args.top_p, temperature=args.temperature, smooth=args.smooth)
    report: dict = {
        "model": str(args.model or "bundled"),
        "measured": "samples",
        "conditioning": "text",
        "prompts": source,
        "num_prompts": len(prompts),
        "prompt_split": {"seen": len(prompts) - unseen, "unseen": unseen},
        "images_per_prompt": per_prompt,
        "num_samples": len(samples),
        "sampling": {**sampling, "seed": args.seed or 0},
        "judge": "bundled Fashion-MNIST classifier on each 32x32 quadrant",
        "empty_threshold": EMPTY_THRESHOLD,
        "reference": args.reference,
    }

    real = extractor = None
    if args.reference is not None:
        if len(samples) < 4:
            raise ValueError(f"FID and precision/recall need at least 4 samples, got {len(samples)}; add prompts")
        real, extractor, network, reference_adherence = _reference_side(args, pipe, judge)
        report.update(reference_count=len(real), features=args.features, feature_network=network)
        report["reference_adherence"] = reference_adherence.as_dict()

    results, rows = [], []
    sweep = sweep_cfg(pipe, samples, args.cfg, judge.logits, args.batch_size, seed=args.seed or 0, **sampling)
    for result in sweep:
        row: dict = {"cfg": result.cfg, "adherence": result.adherence.as_dict()}
        if real is not None:
            row.update(_fid(extractor, result.images, real))
        if args.save_samples is not None:
            folder = args.save_samples if len(args.cfg) == 1 else args.save_samples / f"cfg-{result.cfg:g}"
            _save_samples(result.images, samples, folder)
        results.append(row)
        rows.append((f"{result.cfg:g}", result.adherence, row.get("fid")))
    report["results"] = results
    report["wall_time_s"] = round(time.perf_counter() - started, 1)

    if real is not None:
        rows.append(("real", reference_adherence, None))
    print(
        f"prompt adherence: {len(prompts)} prompts, {source}: {len(prompts) - unseen} with seen and {unseen} with "
        f"unseen pairings; {per_prompt} sample(s) each, seed {args.seed or 0}"
    )
    print(f"judge: {report['judge']}; a quadrant is empty below a mean of {EMPTY_THRESHOLD * 255:g}/255")
    print(format_table(rows))
    if real is not None:
        print("real: the judge on the reference scenes (the best a model can score here)")
    if args.out is not None:
        from nextscale.pretrained import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0
