"""Classification metrics from predicted probabilities (N, K) and hard labels (N,)."""

from __future__ import annotations

import numpy as np

from bench.metrics._arrays import ArrayLike, as_float64, as_int64
from bench.metrics.calibration import (
    ECE_BINS,
    adaptive_calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    max_calibration_error,
)
from bench.metrics.ranking import auroc


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multiclass Brier score: mean over samples of Σ_k (p_k − 1[y = k])² (range 0 … 2).
    Written here because torchmetrics has none and scikit-learn's is binary only."""
    p, y = as_float64(probs), as_int64(labels)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def misclassification_auroc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """AUROC of detecting misclassified samples by low confidence.

    Positive class = misclassified, score = 1 − confidence; ties count ½ (the value of
    scikit-learn's ``roc_auc_score``, see ``ranking``). NaN when every sample is right or every
    sample is wrong, because an AUROC needs both classes.
    """
    conf, hit = as_float64(confidence), as_float64(correct).astype(bool)
    return auroc(~hit, 1.0 - conf)


def aurc(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk–coverage curve (Geifman et al., 2019).

    Sort by confidence, most confident first; risk(k) = errors among the k most confident
    / k; AURC = (1/N)·Σ_{k=1..N} risk(k). Ties: the samples of a group of equal confidence
    can be accepted in any order, so each one's error counts as the group's mean error rate.
    That is the expected AURC over all orderings within ties, independent of input order.
    Written here because neither torchmetrics nor scikit-learn has a risk–coverage curve.
    """
    conf, err = as_float64(confidence), 1.0 - as_float64(correct)
    order = np.argsort(-conf, kind="stable")
    conf, err = conf[order], err[order]
    _, group, sizes = np.unique(conf, return_inverse=True, return_counts=True)
    group_err = np.bincount(group, weights=err) / sizes
    risk = np.cumsum(group_err[group]) / np.arange(1, len(conf) + 1)
    return float(risk.mean())


def classification_metrics(probs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Every classification metric of one split, keyed as in results.json.

    - ``nll``: mean of −log p_y with p clamped at 1e-300; ``loss`` is the same number;
    - ``acc``: fraction with argmax p = y (the first maximum on ties);
    - ``brier``: see :func:`brier_score`;
    - ``ece``, ``mce``: equal-width (15 bins, L1, weighted by bin mass) and maximal calibration
      error of the top-label confidence max_k p_k against correctness;
    - ``aece``: 15 equal-mass bins; ``cwece``: classwise ECE (see ``calibration``);
    - ``misclass_auroc``, ``aurc``: how well the top-label confidence ranks errors last.
    """
    p, y = as_float64(probs), as_int64(labels)
    if p.ndim != 2 or y.shape != (len(p),):
        raise ValueError(f"expected probs (N, K) and labels (N,), got {p.shape} and {y.shape}")
    nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None))))
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    return {
        "loss": nll,
        "acc": float(correct.mean()),
        "nll": nll,
        "brier": brier_score(p, y),
        "ece": expected_calibration_error(confidence, correct, ECE_BINS),
        "mce": max_calibration_error(confidence, correct, ECE_BINS),
        "aece": adaptive_calibration_error(confidence, correct, ECE_BINS),
        "cwece": classwise_calibration_error(p, y, ECE_BINS),
        "misclass_auroc": misclassification_auroc(confidence, correct),
        "aurc": aurc(confidence, correct),
    }
