"""Evaluation: Fréchet distance (FID), injected extractors, Inception, precision/recall, a Fashion classifier,
prompt adherence of text-to-image scenes, KID, held-out test loss and token error per scale (class and text models)."""

from nextscale.evaluation.adherence import (
    AdherenceReport,
    AdherenceScores,
    AdherenceTally,
    adherence_problem,
    evaluation_prompts,
    score_adherence,
    sweep_cfg,
)
from nextscale.evaluation.classifier import (
    FashionClassifier,
    FashionClassifierConfig,
    class_consistency,
    load_bundled_classifier,
)
from nextscale.evaluation.features import FeatureExtractor, compute_features, compute_stats, stream_features
from nextscale.evaluation.fid import FeatureStats, StatsAccumulator, fid_from_features, fid_from_stats, frechet_distance
from nextscale.evaluation.held_out import HeldOutReport, collate_held_out, evaluate_held_out, held_out_metrics
from nextscale.evaluation.inception import InceptionExtractor, inception_score, load_inception
from nextscale.evaluation.inception_classifier import InceptionClassifier, load_inception_classifier
from nextscale.evaluation.kid import KernelDistance, kernel_inception_distance
from nextscale.evaluation.precision_recall import PrecisionRecall, precision_recall

__all__ = [
    "AdherenceReport",
    "AdherenceScores",
    "AdherenceTally",
    "FashionClassifier",
    "FashionClassifierConfig",
    "FeatureExtractor",
    "FeatureStats",
    "HeldOutReport",
    "InceptionClassifier",
    "InceptionExtractor",
    "KernelDistance",
    "PrecisionRecall",
    "StatsAccumulator",
    "adherence_problem",
    "class_consistency",
    "collate_held_out",
    "compute_features",
    "compute_stats",
    "evaluate_held_out",
    "evaluation_prompts",
    "fid_from_features",
    "fid_from_stats",
    "held_out_metrics",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_bundled_classifier",
    "load_inception",
    "load_inception_classifier",
    "precision_recall",
    "score_adherence",
    "stream_features",
    "sweep_cfg",
]
