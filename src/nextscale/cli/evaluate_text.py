"""``nextscale evaluate`` for text pipelines: FID against captioned images, held-out loss, and prompt adherence on
Fashion-MNIST scenes, per cfg.

Called by ``nextscale.cli.evaluate`` when the model is text-conditional (the flags and examples are in that
module's docstring). ``prepare_text`` makes every check that needs no weights (flags, files, the reference images,
whether the adherence judge applies) before the pipeline and its text encoder load; the evaluation it returns runs
once they have. What is sampled:

- ``--prompts FILE`` or ``--num-prompts N``: those prompts (``--images-per-prompt`` each);
- else, with ``--reference``: the first caption of each of the first ``--num`` reference images, once each;
- else: the fixed Fashion-MNIST scene evaluation prompts.

The report (``--out``) holds the settings and one result per cfg value::

    {"conditioning": "text", "prompts": "reference captions (the first of each image)", "num_prompts": 500, ...,
     "reference_count": 500, "features": "inception", "adherence_skipped": "prompt adherence judges 64x64 ...",
     "results": [{"cfg": 3.0, "fid": ..., "kid": ..., "kid_std": ..., "precision": ..., "recall": ...}]}

Where the judge applies (64x64 scenes, prompts it can parse) each result also holds ``adherence`` ({"overall",
"seen", "unseen"}), the report the ``prompt_split``, what each score measures (``adherence_definitions``,
``adherence.SCORE_DEFINITIONS``) and, with scene references, ``reference_adherence`` (the judge's
scores on the real scenes: the ceiling a model can reach by this measure); elsewhere ``adherence_skipped`` says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nextscale.cli import evaluate, evaluate_reference, evaluate_scores
from nextscale.cli.evaluate import (
    CAPTIONS_PREFIX,
    CLASS_ONLY,
    FEATURE_BATCH,
    MIN_SET_SIZE,
    TEXT_ONLY,
    check_features,
    refuse_flags,
)
from nextscale.cli.evaluate_arguments import DEFAULT_MAX_ITEMS, DEFAULT_NUM, DEFAULT_NUM_PROMPTS
from nextscale.cli.evaluate_loss import open_tokens, run_loss
from nextscale.cli.evaluate_source import ModelFacts
from nextscale.cli.evaluate_text_edit import TextEdit, format_edit_baselines, text_edit
from nextscale.data.scenes import held_out_pairings
from nextscale.evaluation.adherence import (
    EMPTY_THRESHOLD,
    SCORE_DEFINITIONS,
    AdherenceReport,
    AdherenceTally,
    adherence_problem,
    evaluation_prompts,
    prompt_layouts,
    read_prompt_file,
    score_adherence,
)

REFERENCE_PROMPTS = "reference captions (the first of each image)"


@dataclasses.dataclass
class TextPlan:
    """What a text evaluation samples and compares, settled before the model loads.

    Attributes:
        prompts: the prompts, in order (repeats kept: each is sampled ``per_prompt`` times per occurrence).
        source: where they come from (for the report).
        per_prompt: samples of each prompt.
        layouts: each prompt's scene layout when the adherence judge applies, else None.
        skipped: why adherence is not measured (None when it is).
        reference: the reference images compared with the samples (a caption dataset or a subset of one), or None.
        reference_layouts: the reference scenes' layouts, for the judge's score on real scenes (None: not scenes).
        edit: with --edit, what the edits of the reference images aim at (``evaluate_text_edit.TextEdit``).
    """

    prompts: list[str]
    source: str
    per_prompt: int = 1
    layouts: list | None = None
    skipped: str | None = None
    reference: torch.utils.data.Dataset | None = None
    reference_layouts: list | None = None
    edit: TextEdit | None = None  # --edit: the reference images are edited towards ``prompts`` instead

    @property
    def samples(self) -> list[str]:
        """The prompt of every sample: each prompt ``per_prompt`` times in a row."""
        return [prompt for prompt in self.prompts for _ in range(self.per_prompt)]


# ------------------------------------------------------------------------------------------------ checks
def prepare_text(args: argparse.Namespace, facts: ModelFacts) -> Callable[[object, float, dict], int]:
    """Every check of a text evaluation that needs no weights, in one place; returns the evaluation to run."""
    refuse_flags(
        args, CLASS_ONLY, "is for class-conditional models; this model is text-conditional (see --reference, --loss)"
    )
    if args.loss or args.tokens is not None:
        refuse_flags(args, TEXT_ONLY, "is for sample evaluation, not for --loss")
        return functools.partial(run_loss, args, open_tokens(args, facts))
    per_prompt = 1 if args.images_per_prompt is None else args.images_per_prompt
    if per_prompt < 1:
        raise ValueError(f"--images-per-prompt must be at least 1, got {per_prompt}")
    if args.num is not None and args.num < MIN_SET_SIZE:
        raise ValueError(f"--num must be at least {MIN_SET_SIZE} (FID and precision/recall), got {args.num}")
    reference = None
    if args.reference is not None:
        check_features(args.features, facts.image_size, args.inception, facts.tokenizer_config.in_channels)
        reference = open_reference(args.reference, facts.image_size, facts.channels, args.bad_images)
    elif args.reference_cache is not None:
        raise ValueError("--reference-cache keeps the reference images' features; give --reference captions:PATH too")
    elif args.inception_classifier is not None:
        raise ValueError("--inception-classifier scores samples beside FID; give --reference captions:PATH too")
    if args.edit is not None:
        return functools.partial(run_text, args, _edit_plan(args, facts, reference))
    explicit = any(getattr(args, name) is not None for name in ("prompts", "num_prompts", "max_items"))
    if explicit:
        if args.num is not None:
            raise ValueError(
                "--num sets how many reference images are captioned and sampled; with --prompts or --num-prompts "
                "the prompts set the samples: leave --num out"
            )
        plan = TextPlan(*_prompts(args), per_prompt=per_prompt, reference=reference)
    elif reference is not None:
        if args.images_per_prompt is not None:
            raise ValueError(
                "--images-per-prompt is for --prompts and --num-prompts; with --reference each reference image's "
                "caption is sampled once (--num sets how many images)"
            )
        count = min(len(reference), DEFAULT_NUM if args.num is None else args.num)
        reference = torch.utils.data.Subset(reference, range(count))
        plan = TextPlan(reference_captions(reference), REFERENCE_PROMPTS, reference=reference)
    else:
        if args.num is not None:
            raise ValueError(
                "--num is for class-conditional models, and for text models with --reference captions:PATH (how "
                "many reference images to caption and sample); give --reference too"
            )
        plan = TextPlan(*_prompts(args), per_prompt=per_prompt)
    if reference is not None and min(len(plan.samples), len(plan.reference)) < MIN_SET_SIZE:
        raise ValueError(
            f"FID and precision/recall need at least {MIN_SET_SIZE} samples and {MIN_SET_SIZE} reference images, "
            f"got {len(plan.samples)} and {len(plan.reference)}; add prompts or reference images"
        )
    plan.skipped = adherence_problem(facts.image_size, plan.prompts)
    if plan.skipped is None:
        plan.layouts = prompt_layouts(plan.prompts)
        captions = [] if reference is None else reference_captions(plan.reference)
        if captions and adherence_problem(facts.image_size, captions) is None:  # else not scenes: no "real" row
            plan.reference_layouts = prompt_layouts(captions)
    elif reference is None:
        raise ValueError(
            f"{plan.skipped}, and without --reference there is nothing else to measure: give --reference "
            "captions:PATH (FID against your own captioned images) or --loss --tokens DIR (held-out loss)"
        )
    return functools.partial(run_text, args, plan)


def _edit_plan(args: argparse.Namespace, facts: ModelFacts, reference) -> TextPlan:
    """--edit: the first --num reference images, each edited towards a prompt made from its caption."""
    refuse_flags(args, TEXT_ONLY, "chooses prompts to sample; --edit edits the reference images (--edit-target)")
    if reference is None:
        raise ValueError("--edit edits real images: give them as --reference captions:PATH")
    count = min(len(reference), DEFAULT_NUM if args.num is None else args.num)
    if count < MIN_SET_SIZE:
        raise ValueError(f"--edit needs at least {MIN_SET_SIZE} reference images (FID, precision/recall), got {count}")
    captions = reference_captions(reference)  # of every reference image: the judge's "real" row reads them all
    skipped = adherence_problem(facts.image_size, captions)
    layouts = None if skipped is not None else prompt_layouts(captions)
    edit = text_edit(
        args, facts.tokenizer_config.scale_sides[-1], captions[:count], None if layouts is None else layouts[:count]
    )
    edit = dataclasses.replace(edit, inputs=reference_images(torch.utils.data.Subset(reference, range(count))))
    source = f"edits of the first {count} reference images towards {edit.settings.target} prompts"
    plan = TextPlan(edit.prompts, source, reference=reference, reference_layouts=layouts, edit=edit)
    plan.layouts = edit.layouts
    plan.skipped = None if edit.layouts is not None else (skipped or "the empty prompt names no layout to judge")
    return plan


def _prompts(args: argparse.Namespace) -> tuple[list[str], str]:
    """The prompts of --prompts or of the generated scene list, and a description of where they come from."""
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


def open_reference(spec: str, size: int, channels: int, bad_images: str):
    """``--reference [captions:]PATH`` as a caption dataset of ``size`` px images (the model's): the shorter side
    resized (LANCZOS) to ``size``, then center-cropped with no margin, as ``tokenize`` prepares captioned data.
    A PATH with ``train/`` and ``val/`` splits is refused: it names which images to compare with."""
    from nextscale.data.captions import open_caption_dataset

    if spec.startswith("fashion-mnist"):
        raise ValueError(
            f"--reference {spec} is for class-conditional models; a text model is compared with captioned images: "
            "--reference captions:PATH"
        )
    path = Path(spec.removeprefix(CAPTIONS_PREFIX))
    evaluate_reference.refuse_split_folder(spec, path, CAPTIONS_PREFIX)
    dataset = open_caption_dataset(path, size, channels=channels, train=False)
    skipped = {reason: count for reason, count in dataset.skipped.items() if count}
    if bad_images == "fail" and skipped:
        found = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in skipped.items())
        raise ValueError(
            f"--reference {spec}: {found} (--bad-images fail); fix them, or leave out --bad-images fail to skip them"
        )
    return dataset


def reference_captions(reference) -> list[str]:
    """The first caption of every reference image, read from the caption index (no image is decoded).

    ``reference`` is a caption dataset or a ``Subset`` of one (its first N images).
    """
    dataset, indices = reference, range(len(reference))
    if isinstance(reference, torch.utils.data.Subset):
        dataset, indices = reference.dataset, reference.indices
    return [dataset.samples[index].captions[0] for index in indices]


def reference_images(reference) -> torch.utils.data.Dataset:
    """The images of a caption dataset (or a ``Subset`` of one), each read as it is: item i is (image (C, H, W)
    float32 in [-1, 1], its index in the caption dataset). A file that fails to decode stops the evaluation,
    named: another image standing in for it (what a training run's dataset does) would be scored against the
    missing image's caption and layout, and counted twice by FID."""
    fix = "as each image of a text model's reference is scored against its own caption"
    return evaluate_reference.ReadableReference(reference, leave_out=False, fix=fix)


# ---------------------------------------------------------------------------------------------- evaluation
def run_text(args: argparse.Namespace, plan: TextPlan, pipe, started: float, source: dict) -> int:
    """Sample the plan's prompts at every --cfg; FID and friends against the reference, adherence where it applies."""
    from nextscale.evaluation.classifier import load_bundled_classifier
    from nextscale.evaluation.features import cached_features, stream_features
    from nextscale.evaluation.generate import PromptSampleWriter, edit_prompt_batches, generate_prompt_batches

    samples = plan.samples
    sampling = evaluate.sampling_settings(args)
    report: dict = {
        "model": str(args.model or "bundled"),
        **source,
        "measured": "samples" if plan.edit is None else f"{plan.edit.settings.mode} edits of reference images",
        "conditioning": "text",
        "prompts": plan.source,
        "num_prompts": len(plan.prompts),
        "images_per_prompt": plan.per_prompt,
        "num_samples": len(samples),
        "sampling": {**sampling, "seed": args.seed or 0, "batch_size": args.batch_size, "dtype": args.dtype},
        "reference": args.reference,
    }
    judge = None
    if plan.layouts is not None:
        unseen = sum(bool(held_out_pairings(layout)) for layout in plan.layouts)
        report["prompt_split"] = {"seen": len(plan.prompts) - unseen, "unseen": unseen}
        report.update(judge="bundled Fashion-MNIST classifier on each 32x32 quadrant", empty_threshold=EMPTY_THRESHOLD)
        report["adherence_definitions"] = SCORE_DEFINITIONS
        judge = load_bundled_classifier(args.device)
    else:
        report["adherence_skipped"] = plan.skipped

    real = extractor = reference_adherence = inception_head = None
    progress = not args.no_progress
    if plan.reference is not None:
        extractor, network = evaluate.load_feature_extractor(
            args.features, pipe.image_size, args.inception, args.device, classifier=judge
        )
        inception_head = evaluate_scores.inception_head(args, extractor)
        channels = pipe.tokenizer.config.in_channels
        spec = _captions_spec(args.reference)
        location = evaluate_reference.reference_location(spec)
        real = cached_features(
            extractor,
            lambda: _reference_loader(plan.reference),
            args.reference_cache,
            key=evaluate_reference.reference_key(spec, plan.reference, pipe.image_size, channels, network),
            progress=progress,
        )
        report.update(
            reference_location=location, reference_count=len(real), features=args.features, feature_network=network
        )
        report.update(evaluate_scores.metric_settings(len(samples), len(real)))
        header = evaluate_reference.header_left_out(plan.reference)  # a caption source's bad files, found indexing
        if header:
            report["reference_left_out"] = evaluate_reference.left_out_entries(header, None)
        whole = plan.reference.dataset if isinstance(plan.reference, torch.utils.data.Subset) else plan.reference
        report["warnings"] = evaluate_reference.header_warnings(spec, len(whole), header)
        report["warnings"] += evaluate_scores.sample_size_warnings(
            len(samples), len(real), real.shape[1], inception_head is not None
        )
        if args.num is not None and args.num > len(samples):  # --num is capped at the reference's size
            report["warnings"].append(f"--num {args.num} is more images than the reference holds: {len(samples)}")
        if judge is not None and plan.reference_layouts is not None:
            reference_adherence = _reference_adherence(plan.reference, plan.reference_layouts, judge.logits)
            report["reference_adherence"] = reference_adherence.as_dict()

    results = []
    sample_layouts = (
        None if plan.layouts is None else [layout for layout in plan.layouts for _ in range(plan.per_prompt)]
    )
    for cfg in args.cfg:
        # Each batch goes to the observers (and the feature network) and is dropped: only features are kept.
        tally = None if judge is None else AdherenceTally(sample_layouts, judge.logits)
        observers: list = [tally] if tally is not None else []
        if args.save_samples is not None:
            folder = args.save_samples if len(args.cfg) == 1 else args.save_samples / f"cfg-{cfg:g}"
            observers.append(PromptSampleWriter(folder, samples))
        if plan.edit is None:
            batches = generate_prompt_batches(
                pipe, samples, args.batch_size, seed=args.seed or 0, progress=progress, cfg=cfg, **sampling
            )
        else:
            keep = plan.edit.settings.keep_mask
            batches = edit_prompt_batches(
                pipe,
                plan.edit.inputs,
                samples,
                keep,
                args.batch_size,
                seed=args.seed or 0,
                progress=progress,
                cfg=cfg,
                **sampling,
            )
            if judge is not None and plan.edit.original_layouts is not None:  # how often the old item survives
                original = AdherenceTally(plan.edit.original_layouts, judge.logits)
                observers.append(original)
        row: dict = {"cfg": float(cfg)}
        if real is not None:
            row.update(
                evaluate_scores.distances(
                    real,
                    stream_features(
                        extractor, batches, FEATURE_BATCH, observers, total=len(samples), progress=progress
                    ),
                    inception_head,
                )
            )
        else:
            for images, indices in batches:
                for observer in observers:
                    observer(images, indices)
        if tally is not None:
            row["adherence"] = tally.report
            if plan.edit is not None and plan.edit.original_layouts is not None:
                row["original_adherence"] = original.report.as_dict()
        results.append(row)
    report["results"] = [
        {**row, "adherence": row["adherence"].as_dict()} if "adherence" in row else row for row in results
    ]
    if plan.edit is not None:
        report["edit"] = plan.edit.settings.describe()
        report["edit_baselines"] = _edit_baselines(args, plan, pipe, real, extractor, judge)
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    _print_summary(plan, report, results, reference_adherence)
    if plan.edit is not None:  # the README's promise: edits beside the inputs and their reconstructions
        print(format_edit_baselines(report["edit_baselines"]))
    evaluate.print_warnings(report)
    if args.out is not None:
        from nextscale.pretrained import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _captions_spec(spec: str) -> str:
    """``--reference PATH`` of a text model means ``captions:PATH``: one spelling for the cache key."""
    return spec if spec.startswith(CAPTIONS_PREFIX) else f"{CAPTIONS_PREFIX}{spec}"


def _edit_baselines(args: argparse.Namespace, plan: TextPlan, pipe, real, extractor, judge) -> dict:
    """What an edit that changed nothing scores: the inputs and their reconstructions, judged by their own captions."""
    from nextscale.evaluation.features import stream_features

    edited = plan.edit.inputs

    def inputs():
        loader = torch.utils.data.DataLoader(edited, batch_size=args.batch_size, shuffle=False)
        for start, (images, _) in zip(range(0, len(edited), args.batch_size), loader):
            yield images, torch.arange(start, start + len(images))

    def reconstructions():
        with torch.inference_mode():
            for images, indices in inputs():
                yield pipe.tokenizer.reconstruct(images.to(pipe.device)).float().cpu(), indices

    judged = judge is not None and plan.reference_layouts is not None
    baselines = {}
    for name, batches in (("inputs", inputs()), ("reconstructions", reconstructions())):
        tally = AdherenceTally(plan.reference_layouts, judge.logits) if judged else None
        observers = [tally] if tally is not None else []
        row: dict = {}
        if real is not None:
            fake = stream_features(
                extractor, batches, FEATURE_BATCH, observers, total=len(edited), progress=not args.no_progress
            )
            row.update(evaluate_scores.distances(real, fake))
        if tally is not None:
            row["adherence"] = tally.report.as_dict()
        baselines[name] = row
    return baselines


def _reference_loader(reference) -> torch.utils.data.DataLoader:
    """(images, indices) batches of the reference, in order, each image its own (:func:`reference_images`)."""
    return torch.utils.data.DataLoader(reference_images(reference), batch_size=FEATURE_BATCH, shuffle=False)


def _reference_adherence(reference, layouts: list, judge) -> AdherenceReport:
    """The judge's scores on the real scenes: what a perfect model would get."""
    report, start = None, 0
    for images, _ in _reference_loader(reference):
        batch_layouts = layouts[start : start + len(images)]
        scores = score_adherence(images.add(1).div(2), batch_layouts, judge)  # [-1, 1] -> [0, 1]
        report = scores if report is None else report + scores
        start += len(images)
    return report


# ------------------------------------------------------------------------------------------------ printing
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


def format_distance_table(results: list[dict]) -> str:
    """One line per cfg: FID, KID ± its std over subsets (its scale follows the features: about 1e-2 for
    Inception's), precision, recall, and the Inception Score when measured."""
    scored = "inception_score" in results[0]
    header = f"{'cfg':>6}  {'FID':>8}  {'KID ± std':>20}  {'precision':>9}  {'recall':>7}"
    lines = [header + ("      IS" if scored else "")]
    for row in results:
        kid = evaluate_scores.format_kid(row["kid"], row["kid_std"])
        lines.append(
            f"{row['cfg']:>6g}  {_cell(row['fid'], 2):>8}  {kid:>20}  "
            f"{_cell(row['precision']):>9}  {_cell(row['recall']):>7}"
            + (f"  {row['inception_score']:>6.2f}" if scored else "")
        )
    return "\n".join(lines)


def _print_summary(plan: TextPlan, report: dict, results: list[dict], reference_adherence) -> None:
    seed = report["sampling"]["seed"]
    if plan.layouts is not None:
        split = report["prompt_split"]
        print(
            f"prompt adherence: {len(plan.prompts)} prompts, {plan.source}: {split['seen']} with seen and "
            f"{split['unseen']} with unseen pairings; {plan.per_prompt} sample(s) each, seed {seed}"
        )
        print(f"judge: {report['judge']}; a quadrant is empty below a mean of {EMPTY_THRESHOLD * 255:g}/255")
        rows = [(f"{row['cfg']:g}", row["adherence"], row.get("fid")) for row in results]
        if reference_adherence is not None:
            rows.append(("real", reference_adherence, None))
        print(format_table(rows))
        print("item: named items recognised in their quadrant; empty: unnamed quadrants empty; scene: all four right")
        if reference_adherence is not None:
            print("real: the judge on the reference scenes (the best a model can score here)")
    else:
        print(f"prompt adherence: not measured ({plan.skipped})")
    if plan.reference is not None:
        what = "one per reference image, of its first caption" if plan.source == REFERENCE_PROMPTS else plan.source
        print(
            f"FID: {report['num_samples']} samples ({what}; seed {seed}) against {report['reference_count']} "
            f"reference images of {report['reference']}; features: {report['feature_network']}"
        )
        print(format_distance_table(results))
