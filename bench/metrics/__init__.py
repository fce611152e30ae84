"""Metrics of a finished run, computed in numpy float64 from collected outputs.

Every function accepts torch tensors (any device or dtype) or numpy arrays. Classification
metrics take probabilities and hard labels; regression metrics take a predictive mean and
variance in the original target units; OOD metrics take per-sample uncertainty scores
(higher = more likely OOD); ``ranking`` holds the AUROC / average precision they share.
The docstrings of the submodules state each definition.
"""

from bench.metrics.calibration import (
    ECE_BINS,
    adaptive_calibration_error,
    bin_indices,
    classwise_calibration_error,
    expected_calibration_error,
    max_calibration_error,
    reliability,
)
from bench.metrics.classification import (
    aurc,
    brier_score,
    classification_metrics,
    misclassification_auroc,
)
from bench.metrics.ood import ood_metrics
from bench.metrics.ranking import Ranking, auroc
from bench.metrics.regression import (
    COVERAGE_LEVELS,
    interval_coverage,
    mixture_log_likelihood,
    regression_metrics,
)

__all__ = [
    "COVERAGE_LEVELS",
    "ECE_BINS",
    "Ranking",
    "adaptive_calibration_error",
    "auroc",
    "aurc",
    "bin_indices",
    "brier_score",
    "classification_metrics",
    "classwise_calibration_error",
    "expected_calibration_error",
    "interval_coverage",
    "max_calibration_error",
    "misclassification_auroc",
    "ood_metrics",
    "mixture_log_likelihood",
    "regression_metrics",
    "reliability",
]
