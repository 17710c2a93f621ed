"""``nextscale evaluate --samples PATH``: FID, KID and precision/recall of images that are already on disk.

For samples made elsewhere or earlier: a folder written by ``nextscale sample --out-dir`` (or any folder of
square images of one size), or an ``.npz`` in the format of OpenAI's evaluation suite (``sample --npz``, or the
official VAR code's ``arr_0``). Nothing is sampled and no model is loaded; the images are read a batch at a time
and only their features are kept. ``--num N`` takes N of them spread evenly through the set (files written class
by class keep every class). Class consistency is added when the bundled Fashion-MNIST classifier applies:
labelled samples (``_class{label}`` in the names, or ``arr_1``) of 32x32 against ``--reference fashion-mnist``.
"""

from __future__ import annotations

import argparse

from nextscale.cli import evaluate, evaluate_reference, evaluate_scores
from nextscale.cli.common import SAMPLING_FLAGS, Default
from nextscale.cli.evaluate import MIN_SET_SIZE
from nextscale.cli.evaluate_class import ClassifierTally, load_judge, open_class_reference
from nextscale.cli.evaluate_edit import EDIT_FLAGS

# What --samples cannot take: it samples nothing, so model and sampling flags would be silently ignored.
NOT_FOR_SAMPLES = (
    ("model", "--model"),
    ("loss", "--loss"),
    ("tokens", "--tokens"),
    ("reconstructions", "--reconstructions"),
    ("baseline", "--baseline"),
    ("save_samples", "--save-samples"),
    ("cuda_graphs", "--cuda-graphs"),
    ("fused_kernels", "--fused-kernels"),
    ("seed", "--seed"),
    ("smooth", "--smooth"),
    *evaluate.TEXT_ONLY,
    *EDIT_FLAGS,
)


def prepare_samples(args: argparse.Namespace):
    """Check the flags and open the samples and the reference (no network loads): returns the evaluation to run,
    called with the start time."""
    from nextscale.data.sample_sets import SampleSet
    from nextscale.evaluation.generate import spread_indices

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
    chosen = spread_indices(samples.count, num)
    check_sample_files(samples, chosen)
    reference = open_reference(args.reference, samples.side, args.bad_images, args.features)
    return lambda started: run_samples(args, samples, chosen, reference, started)


def check_sample_files(samples, chosen: list[int]) -> None:
    """Every chosen file of a sample folder opens as an image of the first one's size (headers only, about 0.1 ms
    a file): a stray file fails now, not after the features of the reference and of every sample before it."""
    from PIL import Image, UnidentifiedImageError

    if samples.files is None:  # an .npz: its header already gave one shape for all
        return
    for index in chosen:
        path = samples.files[index]
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise ValueError(f"sample image {path} cannot be read ({err}); remove or replace it") from err
        if width != samples.side or height != samples.side:
            raise ValueError(
                f"sample image {path} is {width}x{height}; the samples must be square, all one size (the first is "
                f"{samples.side}x{samples.side})"
            )


def open_reference(spec: str, side: int, bad_images: str, features: str = "inception"):
    """The real images at the samples' size, as RGB: the test split of Fashion-MNIST, a folder of class
    sub-folders, captioned images (resized and center-cropped as ``tokenize`` prepares them), or an .npz of
    real images at that size."""
    from nextscale.cli.evaluate_text import open_reference as open_captioned

    if spec.startswith(evaluate.CAPTIONS_PREFIX):
        return open_captioned(spec, side, 3, bad_images)
    return open_class_reference(spec, side, 3, "test", bad_images, features)


def spread_batches(samples, chosen: list[int], batch_size: int):
    """The (images, labels) batches of ``samples`` at the indices ``chosen`` (ascending), read in file order.

    ``--num`` N takes images spread evenly through the files (``generate.spread_indices``), not the first N:
    ``sample --class all --out-dir`` writes its images class by class, and the first 100 of 1,000 would hold
    one class of ten. The set is read once from start to end (an .npz streams), and only the chosen rows go on.
    """
    import torch

    wanted = torch.tensor(chosen)
    start = 0
    for images, labels in samples.batches(batch_size):
        rows = wanted[(wanted >= start) & (wanted < start + len(images))] - start
        if len(rows):
            yield images[rows], labels[rows]
        start += len(images)
        if start > chosen[-1]:
            break


def run_samples(args: argparse.Namespace, samples, chosen: list[int], reference, started: float) -> int:
    from nextscale.evaluation.features import cached_features, stream_features

    side = samples.side
    num = len(chosen)
    labels = None if samples.labels is None else [samples.labels[index] for index in chosen]
    labelled = labels is not None and 0 <= min(labels) <= max(labels) < 10
    judged = labelled and args.reference.startswith("fashion-mnist")
    judge = load_judge(args.features, judged, args.device)  # once: the feature network and the tally
    extractor, network = evaluate.load_feature_extractor(
        args.features, side, args.inception, args.device, classifier=judge
    )
    inception_head = evaluate_scores.inception_head(args, extractor)
    location = evaluate_reference.reference_location(args.reference)
    header = evaluate_reference.header_left_out(reference)  # before any image is read
    read = evaluate_reference.ReadableReference(reference, leave_out=args.bad_images == "skip")
    real = cached_features(
        extractor,
        lambda: evaluate_reference.reference_batches(read),
        args.reference_cache,
        key=evaluate_reference.reference_key(args.reference, reference, side, 3, network),
        progress=not args.no_progress,
    )
    left_out = evaluate_reference.left_out_warnings(
        args.reference, len(reference), read, len(real), args.reference_cache, header
    )
    tally = ClassifierTally.for_images(side, judge) if judged else None
    observers = [tally] if tally is not None else []
    batches = spread_batches(samples, chosen, args.batch_size)
    fake = stream_features(
        extractor, batches, evaluate.FEATURE_BATCH, observers, total=num, progress=not args.no_progress
    )
    report = {
        "measured": "sample files",
        "samples": str(args.samples),
        "num_samples": num,
        "reference": args.reference,
        "reference_location": location,
        "reference_count": len(real),
        "features": args.features,
        "feature_network": network,
        **evaluate_scores.metric_settings(num, len(real)),
        **evaluate_scores.distances(real, fake, inception_head),
        "warnings": left_out
        + evaluate_scores.sample_size_warnings(num, len(real), real.shape[1], inception_head is not None),
    }
    if header or read.left_out:
        report["reference_left_out"] = evaluate_reference.left_out_entries(header, read)
    if tally is not None:
        report.update(tally.metrics(num_classes=10, shuffle=True))  # files are often in class order
    return evaluate.finish(args, report, started)
