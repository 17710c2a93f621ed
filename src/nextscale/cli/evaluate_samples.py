"""``nextscale evaluate --samples PATH``: FID, KID and precision/recall of images that are already on disk.

For samples made elsewhere or earlier: a folder written by ``nextscale sample --out-dir`` (or any folder of
square images of one size), or an ``.npz`` in the format of OpenAI's evaluation suite (``sample --npz``, or the
official VAR code's ``arr_0``). Nothing is sampled and no model is loaded; the images are read a batch at a time
and only their features are kept. Class consistency is added when the bundled Fashion-MNIST classifier applies:
labelled samples (``_class{label}`` in the names, or ``arr_1``) of 32x32 against ``--reference fashion-mnist``.
"""

from __future__ import annotations

import argparse

from nextscale.cli import evaluate, evaluate_scores
from nextscale.cli.common import SAMPLING_FLAGS, Default
from nextscale.cli.evaluate import MIN_SET_SIZE
from nextscale.cli.evaluate_class import ClassifierTally, open_class_reference

# What --samples cannot take: it samples nothing, so model and sampling flags would be silently ignored.
NOT_FOR_SAMPLES = (
    ("model", "--model"),
    ("loss", "--loss"),
    ("tokens", "--tokens"),
    ("reconstructions", "--reconstructions"),
    ("baseline", "--baseline"),
    ("save_samples", "--save-samples"),
    ("cuda_graphs", "--cuda-graphs"),
    ("seed", "--seed"),
    ("smooth", "--smooth"),
    *evaluate.TEXT_ONLY,
    *evaluate.EDIT_FLAGS,
)


def prepare_samples(args: argparse.Namespace):
    """Check the flags and open the samples and the reference (no network loads): returns the evaluation to run,
    called with the start time."""
    from nextscale.data.sample_sets import SampleSet

    evaluate.refuse_flags(args, NOT_FOR_SAMPLES, "is for evaluating a model; --samples measures images on disk")
    given = [name for name in SAMPLING_FLAGS if not isinstance(getattr(args, name), Default)]
    if given or args.dtype != "fp32":
        flag = f"--{given[0].replace('_', '-')}" if given else "--dtype"
        raise ValueError(f"{flag} is a sampling setting; --samples measures images that were already made")
    if args.reference is None:
        raise ValueError(
            "--samples needs --reference, the real images to compare with: fashion-mnist[:DIR], a folder of class "
            "sub-folders, or captions:PATH"
        )
    samples = SampleSet(args.samples)
    if samples.count < MIN_SET_SIZE:
        raise ValueError(
            f"{args.samples} holds {samples.count} image(s), and FID and precision/recall need at least "
            f"{MIN_SET_SIZE}; give more samples (thousands for a meaningful score)"
        )
    num = samples.count if args.num is None else args.num
    if not MIN_SET_SIZE <= num <= samples.count:
        raise ValueError(f"--num must be {MIN_SET_SIZE} to {samples.count} (the images in {args.samples}), got {num}")
    evaluate.check_features(args.features, samples.side, args.inception)
    reference = open_reference(args.reference, samples.side, args.bad_images, args.features)
    return lambda started: run_samples(args, samples, num, reference, started)


def open_reference(spec: str, side: int, bad_images: str, features: str = "inception"):
    """The real images at the samples' size, as RGB: the test split of Fashion-MNIST, a folder of class
    sub-folders, captioned images (resized and center-cropped as ``tokenize`` prepares them), or an .npz of
    real images at that size."""
    from nextscale.cli.evaluate_text import open_reference as open_captioned

    if spec.startswith(evaluate.CAPTIONS_PREFIX):
        return open_captioned(spec, side, 3, bad_images)
    return open_class_reference(spec, side, 3, "test", bad_images, features)


def run_samples(args: argparse.Namespace, samples, num: int, reference, started: float) -> int:

    from nextscale.evaluation.features import cached_features, stream_features

    side = samples.side
    extractor, network = evaluate.load_feature_extractor(args.features, side, args.inception, args.device)
    inception_head = evaluate_scores.inception_head(args, extractor)
    location = evaluate.reference_location(args.reference)
    key = dict(reference=location, split="test", count=len(reference), size=side, channels=3)
    real = cached_features(
        extractor,
        lambda: evaluate.reference_batches(reference),
        args.reference_cache,
        key={**key, "features": network},
    )
    labelled = samples.labels is not None and 0 <= min(samples.labels[:num]) <= max(samples.labels[:num]) < 10
    judged = labelled and args.reference.startswith("fashion-mnist")
    tally = ClassifierTally.for_images(side) if judged else None
    observers = [tally] if tally is not None else []
    batches = samples.batches(args.batch_size, limit=num)
    fake = stream_features(extractor, batches, evaluate.FEATURE_BATCH, observers, total=num)
    report = {
        "measured": "sample files",
        "samples": str(args.samples),
        "num_samples": num,
        "reference": args.reference,
        "reference_location": location,
        "reference_count": len(real),
        "features": args.features,
        "feature_network": network,
        **evaluate_scores.distances(real, fake, inception_head),
        "warnings": evaluate_scores.sample_size_warnings(num, len(real), real.shape[1], inception_head is not None),
    }
    if tally is not None:
        report.update(tally.metrics(num_classes=10, shuffle=True))  # files are often in class order
    return evaluate.finish(args, report, started)
