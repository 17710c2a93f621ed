"""``nextscale evaluate`` of a class-conditional model: FID, KID and precision/recall of its samples (or of its
tokenizer's reconstructions) against real images, with class consistency and a classifier Inception Score where the
bundled Fashion-MNIST classifier applies, at one cfg or a sweep of them. The command's flags, checks and the other
evaluations are in ``cli/evaluate.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli import evaluate, evaluate_reference, evaluate_scores
from nextscale.cli.evaluate import MIN_SET_SIZE
from nextscale.cli.evaluate_arguments import DEFAULT_NUM


def open_class_reference(spec: str, size: int, channels: int, split: str, bad_images: str, features: str = "inception"):
    """``--reference`` of a class model: Fashion-MNIST's ``split``, every image of a folder of class sub-folders,
    or an .npz of real images in OpenAI's evaluation format (``evaluate_reference.open_npz_reference``)."""
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.images import ImageFolderDataset
    from nextscale.training.data_specs import check_bad_images

    if spec.startswith("fashion-mnist"):
        root = spec.split(":", 1)[1] if ":" in spec else None
        return FashionMNIST(root=root, split=split, size=size, channels=channels)
    if spec.lower().endswith(".npz"):
        return evaluate_reference.open_npz_reference(spec, size, features)
    evaluate_reference.refuse_split_folder(spec, Path(spec))  # its splits would be read as two classes
    folder = ImageFolderDataset(spec, size=size, train=False, channels=channels, bad_images=bad_images)
    check_bad_images([folder], bad_images)  # bad files named in the log and left out (or a one-line error)
    if len(folder) < MIN_SET_SIZE:  # precision/recall needs 3 neighbours per image (FID a covariance)
        raise ValueError(
            f"--reference {spec} holds {len(folder)} usable image(s); give a folder of at least {MIN_SET_SIZE} real "
            "images (thousands for a meaningful score)"
        )
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


def run_class(args: argparse.Namespace, pipe, started: float, source: dict) -> int:
    """FID, KID, precision/recall (and class consistency on Fashion-MNIST) of a class model's samples, at one cfg
    or at each of several (the same labels and seeds at every value: the FID-vs-cfg curve)."""
    import torch

    from nextscale.cli.evaluate_edit import edit_settings
    from nextscale.evaluation.features import cached_features, compute_features, stream_features
    from nextscale.evaluation.generate import (
        SampleWriter,
        edit_batches,
        generate_batches,
        real_batches,
        reconstruct_batches,
    )

    num, spec = DEFAULT_NUM if args.num is None else args.num, args.reference or _default_reference(pipe)
    progress = not args.no_progress
    size, channels = pipe.image_size, pipe.tokenizer.config.in_channels
    reference = open_class_reference(spec, size, channels, "test", args.bad_images, args.features)
    for flag, given in (("--reconstructions", args.reconstructions), ("--edit", args.edit)):
        if given and not hasattr(reference, "__getitem__"):
            raise ValueError(f"{flag} encodes reference images one by one: give a folder, not {spec}")
        if given and num > len(reference):
            raise ValueError(
                f"--num {num}: {flag} takes real images of --reference {spec}, which holds {len(reference)}"
            )
    classes = getattr(reference, "classes", None)
    if args.edit and args.edit_target != "none" and classes is not None and len(classes) > pipe.num_classes:
        raise ValueError(
            f"--reference {spec} has {len(classes)} classes and the model {pipe.num_classes}: an edit towards an "
            "image's class needs the model's classes; give --edit-target none, or a reference of the model's classes"
        )
    judged = spec.startswith("fashion-mnist") and pipe.num_classes == 10
    judge = load_judge(args.features, judged, args.device)  # once: the feature network and every stream's tally
    extractor, network = evaluate.load_feature_extractor(
        args.features, size, args.inception, args.device, classifier=judge
    )
    inception_head = evaluate_scores.inception_head(args, extractor)
    location = evaluate_reference.reference_location(spec)
    header, usable = evaluate_reference.header_left_out(reference), len(reference)  # before any image is read
    read = evaluate_reference.ReadableReference(reference, leave_out=args.bad_images == "skip")
    real = cached_features(
        extractor,
        lambda: evaluate_reference.reference_batches(read),
        args.reference_cache,
        key=evaluate_reference.reference_key(spec, reference, size, channels, network),
        progress=progress,
    )
    inputs = real_inputs(reference, read, num, spec) if args.reconstructions or args.edit else None
    left_out = evaluate_reference.left_out_warnings(spec, usable, read, len(real), args.reference_cache, header)
    sampling = evaluate.sampling_settings(args)
    # batch b is drawn with seed + b, so the batch size and dtype belong with the seed in the report
    drawn = dict(seed=args.seed or 0, batch_size=args.batch_size, dtype=args.dtype)
    sweep = len(args.cfg) > 1 and not args.reconstructions

    def measure(batches, writer_folder=None, edited: bool = False) -> dict:
        """Distances (and the classifier's judgement) of one stream of images, keeping only their features."""
        tally = ClassifierTally.for_images(size, judge) if judged else None
        observers: list = [tally] if tally is not None else []
        if writer_folder is not None:
            observers.append(SampleWriter(writer_folder))
        fake = stream_features(extractor, batches, evaluate.FEATURE_BATCH, observers, total=num, progress=progress)
        row = evaluate_scores.distances(real, fake, inception_head)
        if tally is not None:
            row.update(tally.metrics(pipe.num_classes))
            if edited and edit.target == "next":  # how often the edit left the image's own class in place
                row["original_class_rate"] = tally.agreement(lambda targets: (targets - 1) % pipe.num_classes)
        return row

    edit = edit_settings(args, pipe.transformer.config.scale_sides[-1]) if args.edit else None
    rows = []
    for cfg in [None] if args.reconstructions else args.cfg:
        if cfg is None:
            batches = reconstruct_batches(pipe.tokenizer, inputs, num, args.batch_size, progress=progress)
        elif edit is not None:
            batches = edit_batches(
                pipe,
                inputs,
                num,
                edit.keep_mask,
                edit.target,
                args.batch_size,
                args.seed or 0,
                progress=progress,
                cfg=cfg,
                **sampling,
            )
        else:
            batches = generate_batches(
                pipe, num, args.batch_size, seed=args.seed or 0, progress=progress, cfg=cfg, **sampling
            )
        # Every batch goes to the observers and the feature network, then is dropped: only features are kept.
        folder = args.save_samples
        if folder is not None and sweep:
            folder = folder / f"cfg-{cfg:g}"
        row = {} if cfg is None else {"cfg": float(cfg)}
        row.update(measure(batches, folder, edited=edit is not None))
        rows.append(row)
    measured = "tokenizer reconstructions" if args.reconstructions else "samples"
    report = {
        "model": str(args.model or "bundled"),
        **source,
        "measured": measured if edit is None else f"{edit.mode} edits of real images",
        "num_samples": num,
        "reference": spec,
        "reference_location": location,
        "reference_count": len(real),
        "features": args.features,
        "feature_network": network,
        **evaluate_scores.metric_settings(num, len(real)),
    }
    if header or read.left_out:
        report["reference_left_out"] = evaluate_reference.left_out_entries(header, read)
    if sweep:
        report.update(sampling={**sampling, **drawn}, results=rows)
        print(format_class_sweep(rows))
    else:
        row = rows[0]
        if not args.reconstructions:
            report["sampling"] = {"cfg": row.pop("cfg"), **sampling, **drawn}
        report.update(row)
    if edit is not None:  # what an edit that changed nothing would score: the inputs, and their reconstructions
        report["edit"] = edit.describe()
        report["edit_baselines"] = {
            "inputs": measure(real_batches(inputs, num, args.batch_size)),
            "reconstructions": measure(
                reconstruct_batches(pipe.tokenizer, inputs, num, args.batch_size, progress=progress)
            ),
        }
    warnings = left_out + evaluate_scores.sample_size_warnings(
        num, len(real), real.shape[1], inception_head is not None
    )
    if args.baseline:
        held_out = open_class_reference(spec, size, channels, "train", args.bad_images)
        subset = torch.utils.data.Subset(held_out, range(min(num, len(held_out))))
        loader = torch.utils.data.DataLoader(subset, batch_size=evaluate.FEATURE_BATCH)
        held = compute_features(extractor, loader, progress=progress)
        baseline = evaluate_scores.distances(real, held, inception_head)
        names = ("fid", "kid", "precision", "recall", "inception_score")
        report.update({f"{name}_real_baseline": baseline[name] for name in names if name in baseline})
        report["baseline_count"] = len(held)
        if len(held) != num:  # a baseline of fewer images has a larger FID bias than the samples: not a fair floor
            warnings.append(f"the baseline holds {len(held)} real images, the samples {num}: their FIDs differ in bias")
    report["warnings"] = warnings
    return evaluate.finish(args, report, started)


def load_judge(features: str, judged: bool, device: str):
    """The bundled Fashion-MNIST classifier, loaded once for the whole command when ``--features classifier`` or
    class consistency (``judged``) needs it; else None."""
    if features != "classifier" and not judged:
        return None
    from nextscale.evaluation.classifier import load_bundled_classifier

    return load_bundled_classifier(device)


def real_inputs(reference, read, num: int, spec: str):
    """The real images --reconstructions and --edit take, each as it is: ``num`` spread through the reference without
    the images that cannot be decoded (``read.left_out``, where they are named for the report).

    The feature pass decodes every image and so finds them all; with features from the cache nothing was decoded,
    so the images to take are decoded first (``decode_inputs``): a bad one is left out under ``--bad-images skip`` or
    stops the run, named, under ``fail``, before any image is edited, and every stream takes the same images.
    """
    if not read.read_through:
        decode_inputs(reference, read, num)
    if read.left_out:
        reference.leave_out_bad()  # the files found unreadable: spread_indices spreads over the others
        if num > len(reference):
            raise ValueError(
                f"--num {num}: --reference {spec} holds {len(reference)} images that can be decoded; give --num "
                f"{len(reference)} or less"
            )
    fix = "as --reconstructions and --edit take each reference image as it is"
    return evaluate_reference.ReadableReference(reference, leave_out=False, fix=fix)


def decode_inputs(reference, read, num: int) -> None:
    """Decode the ``num`` images spread through ``reference`` that ``real_inputs`` takes, each file once, through
    ``read`` (which records a bad one in ``read.left_out``, or raises naming it); after leaving bad ones out the
    spread moves, so the newly chosen images are decoded too, until all of them decode (or too few are left)."""
    from nextscale.evaluation.generate import spread_indices

    if not hasattr(reference, "read"):  # Fashion-MNIST's arrays: nothing to decode
        return
    decoded: set = set()
    while num <= len(reference):
        chosen = [index for index in spread_indices(len(reference), num) if reference.samples[index][0] not in decoded]
        found = len(read.left_out)
        for index in chosen:
            decoded.add(reference.samples[index][0])
            read[index]  # the image itself is not kept: the streams read it again, a batch at a time
        if len(read.left_out) == found:
            return
        reference.leave_out_bad()


def format_class_sweep(rows: list[dict]) -> str:
    """One line per cfg: FID, KID ± its std over subsets, precision, recall, the Inception Score when measured,
    and the classifier's consistency and IS where judged."""
    judged, scored = "class_consistency" in rows[0], "inception_score" in rows[0]
    extra = f"  {'Inception IS':>12}" if scored else ""
    extra += f"  {'consistency':>11}  {'IS':>6}" if judged else ""
    lines = [f"{'cfg':>6}  {'FID':>8}  {'KID ± std':>20}  {'precision':>9}  {'recall':>7}{extra}"]
    for row in rows:
        kid = evaluate_scores.format_kid(row["kid"], row["kid_std"])
        line = f"{row['cfg']:>6g}  {row['fid']:>8.2f}  {kid:>20}  "
        line += f"{row['precision']:>9.3f}  {row['recall']:>7.3f}"
        if scored:
            line += f"  {row['inception_score']:>12.2f}"
        if judged:
            line += f"  {row['class_consistency']:>11.3f}  {row['classifier_inception_score']:>6.2f}"
        lines.append(line)
    return "\n".join(lines)


class ClassifierTally:
    """Observer of generated batches: the bundled classifier's logits of every sample, and its label.

    Keeps (N, 10) logits, not the images, for class consistency and a classifier Inception Score.
    """

    def __init__(self, judge) -> None:
        self.judge = judge.eval()
        self.logits: list = []
        self.labels: list = []

    @classmethod
    def for_images(cls, size: int, judge=None) -> ClassifierTally | None:
        """A tally when the bundled classifier can read images of this size (32x32 Fashion-MNIST), else None.

        ``judge`` is the bundled classifier already loaded (a command loads it once for all its streams); None
        loads it here."""
        if judge is None:
            from nextscale.evaluation.classifier import load_bundled_classifier

            judge = load_bundled_classifier()
        return cls(judge) if judge.config.image_size == size else None

    def __call__(self, images, labels) -> None:
        from nextscale.evaluation.features import quantize_8bit

        self.logits.append(self.judge.logits(quantize_8bit(images)))  # judged as the PNG files they become
        self.labels.append(labels.cpu().long())

    def agreement(self, expected_of_labels) -> float:
        """The share of images the classifier assigns to ``expected_of_labels(labels)`` (another class than the
        one each image was judged against, e.g. an edited image's original class)."""
        import torch

        logits, labels = torch.cat(self.logits), torch.cat(self.labels)
        return float((logits.argmax(dim=1) == expected_of_labels(labels)).double().mean())

    def metrics(self, num_classes: int, shuffle: bool = False) -> dict:
        """Class consistency (overall, per class) and a classifier Inception Score.

        The score averages over consecutive splits, so images in class order (``sample --class all``) would give
        each split one class and a score near 1; ``shuffle`` takes the splits from a fixed permutation instead.
        Generated batches cycle through the classes, so model runs keep their order.
        """
        import torch

        from nextscale.evaluation.inception import inception_score

        logits, labels = torch.cat(self.logits), torch.cat(self.labels)
        if shuffle:
            order = torch.randperm(len(logits), generator=torch.Generator().manual_seed(0))
            logits, labels = logits[order], labels[order]
        correct = (logits.argmax(dim=1) == labels).double()
        # entry c is class c's accuracy, None when no sample has label c (dropping it would shift the later
        # classes to the wrong positions: labelled files or --num below the class count can miss a class)
        per_class = [
            round(float(correct[labels == c].mean()), 4) if (labels == c).any() else None for c in range(num_classes)
        ]
        # the FID Inception graph has no classification head, so the Inception Score is taken over the
        # classifier's 10 classes (its maximum is 10): comparable between models here, not with papers
        splits = 10 if len(logits) >= 100 else 1
        return {
            "class_consistency": float(correct.mean()),
            "class_consistency_per_class": per_class,
            "classifier_inception_score": inception_score(logits, splits=splits)[0],
        }
