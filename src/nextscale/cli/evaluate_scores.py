"""The scores ``nextscale evaluate`` computes from features: FID, KID, precision/recall and, with
--inception-classifier, the Inception Score; and the warnings a report carries about its sample sizes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nextscale.evaluation.features import FeatureExtractor
    from nextscale.evaluation.inception_classifier import InceptionClassifier


def inception_head(args: argparse.Namespace, extractor: FeatureExtractor) -> InceptionClassifier | None:
    """The Inception output layer of --inception-classifier, checked against the feature network (None: no IS)."""
    if args.inception_classifier is None:
        return None
    from nextscale.evaluation.inception_classifier import load_inception_classifier

    head = load_inception_classifier(args.inception_classifier)
    network = getattr(extractor, "network", None)
    if network is not None:  # tests inject bare feature functions
        head.check_network(network)
    return head


def distances(real: np.ndarray, fake: np.ndarray, inception_head: InceptionClassifier | None = None) -> dict:
    """FID, KID (mean, std) and precision/recall of generated against reference features, and the Inception
    Score of the generated ones when ``inception_head`` (the Inception's output layer) is given."""
    from nextscale.evaluation.fid import fid_from_features
    from nextscale.evaluation.inception_classifier import inception_score_of
    from nextscale.evaluation.kid import kernel_inception_distance
    from nextscale.evaluation.precision_recall import precision_recall

    for side, features in (("reference", real), ("sample", fake)):
        if not np.isfinite(features).all():  # named here: FID would only say that its statistics are not finite
            bad = int((~np.isfinite(features)).any(axis=1).sum())
            raise ValueError(
                f"{bad} of the {len(features)} {side} images have NaN or infinite features: the images hold NaN "
                "or infinite values (a diverged model, or --dtype fp16 overflowing)"
            )
    pr = precision_recall(real, fake)
    kid = kernel_inception_distance(real, fake)
    return {
        "fid": fid_from_features(fake, real),
        "kid": kid.mean,
        "kid_std": kid.std,
        "precision": pr.precision,
        "recall": pr.recall,
        **inception_score_of(inception_head, fake),
    }


def metric_settings(num_samples: int, reference_count: int) -> dict:
    """The sizes the scores were computed with, for the report: precision/recall's k and KID's subsets."""
    from nextscale.evaluation.kid import NUM_SUBSETS, SUBSET_SIZE
    from nextscale.evaluation.precision_recall import NEIGHBOURS

    return {
        "precision_recall_k": NEIGHBOURS,
        "kid_subsets": NUM_SUBSETS,
        "kid_subset_size": min(SUBSET_SIZE, num_samples, reference_count),
    }


def format_kid(mean: float, std: float) -> str:
    """KID as mean ± std over its subsets (a mean within about a std of 0 cannot tell a model from real images).

    A std below a billionth of the mean is rounding, not spread (subsets that hold the whole sets all give the
    same value: "25.82 ± 1.5e-14"), and is shown as 0."""
    return f"{mean:.4g} ± {0 if std <= 1e-9 * abs(mean) else std:.2g}"


# FID is biased upward at any finite N (its expectation falls roughly like 1/N: Chong & Forsyth 2020, "Effectively
# Unbiased FID and Inception Score and where to find them"); with fewer images than feature dimensions the
# covariance is also singular (rank N - 1 < D) and the bias is large, though the number still comes out finite.
# Heusel et al. 2017 (the FID paper) ask for at least 10,000 samples, and published FIDs use 50,000. Measured here
# (real Fashion-MNIST train images against its 10,000 test images, --features classifier): FID 18.7 at N = 100,
# 7.48 at 200, 1.71 at 1,000, 0.24 at 10,000; at N = 200 another seed moved a model's FID by 0.6-1.1. Below
# FID_SAMPLE_COUNT the sample-size floor and the seed noise are a large part of any FID difference.
FID_SAMPLE_COUNT = 10_000
# Precision/recall compare each point with the k-th nearest-neighbour radii of the other set, and radii shrink as a
# set grows (Kynkäänniemi et al. 2019 use equal sizes): at 200 samples against 10,000 reference images real images
# scored precision 0.855 and a model 0.935. Sets further apart in size than this factor are warned about.
PRECISION_RECALL_SIZE_RATIO = 2


def sample_size_warnings(
    num_samples: int, reference_count: int, feature_dim: int, inception_scored: bool = False
) -> list[str]:
    """The report's warnings about its sample sizes: a side with fewer images than the features have dimensions
    (singular covariance), fewer than ``FID_SAMPLE_COUNT`` images on either side (FID, precision/recall and KID
    dominated by sample-size bias and seed noise), sides of unequal size (precision/recall's k-NN radii), and an
    Inception Score (``inception_scored``) from fewer images than published ones."""
    from nextscale.evaluation.inception_classifier import inception_score_warning

    lines = [
        f"{count} {side} images < {feature_dim} feature dimensions: the covariance is singular and FID is biased "
        "upward; compare FIDs only at equal N and feature network (published FIDs use 50,000 samples)"
        for side, count in (("sample", num_samples), ("reference", reference_count))
        if count < feature_dim
    ]
    smaller = min(num_samples, reference_count)
    if smaller < FID_SAMPLE_COUNT:
        lines.append(
            f"{num_samples} samples against {reference_count} reference images: below {FID_SAMPLE_COUNT:,} images FID "
            "is largely sample-size bias (falling about as 1/N: real Fashion-MNIST images alone score 7.5 at 200 "
            "and 1.7 at 1,000 with --features classifier) and seed noise, and KID and precision/recall are noisy "
            "too; compare models only at equal N, over several seeds, beside the floor of real images at this N "
            "(--baseline, or held-out real images through --samples); published FIDs use 50,000 samples"
        )
    if max(num_samples, reference_count) > PRECISION_RECALL_SIZE_RATIO * smaller:
        lines.append(
            f"precision/recall compare {num_samples} samples with {reference_count} reference images: each set's "
            "k-nearest-neighbour radii shrink as it grows, so with unequal sizes the two numbers are skewed (a "
            "model can out-score real images); compare them only with scores at the same sizes (--baseline) or "
            "give --num equal to the reference count"
        )
    return lines + (inception_score_warning(num_samples) if inception_scored else [])
