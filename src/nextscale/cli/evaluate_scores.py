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


# FID is biased upward at any finite N (its expectation falls roughly like 1/N: Chong & Forsyth 2020, "Effectively
# Unbiased FID and Inception Score and where to find them"); with fewer images than feature dimensions the
# covariance is also singular (rank N - 1 < D) and the bias is large, though the number still comes out finite.
def sample_size_warnings(
    num_samples: int, reference_count: int, feature_dim: int, inception_scored: bool = False
) -> list[str]:
    """One line for each side of the comparison with fewer images than the features have dimensions, and one when
    an Inception Score (``inception_scored``) comes from fewer images than published ones."""
    from nextscale.evaluation.inception_classifier import inception_score_warning

    lines = [
        f"{count} {side} images < {feature_dim} feature dimensions: the covariance is singular and FID is biased "
        "upward; compare FIDs only at equal N and feature network (published FIDs use 50,000 samples)"
        for side, count in (("sample", num_samples), ("reference", reference_count))
        if count < feature_dim
    ]
    return lines + (inception_score_warning(num_samples) if inception_scored else [])
