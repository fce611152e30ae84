"""Ranking metrics of a binary detection problem: positives are to score higher than negatives.

AUROC, average precision and ROC points, all from one sort into counts per distinct score:
``tps[i]`` and ``fps[i]`` are the positives and negatives scoring ≥ the i-th highest distinct
score (scikit-learn's ``_binary_clf_curve``; tied samples enter together).

Written here instead of calling scikit-learn because its ``roc_auc_score``,
``average_precision_score`` and ``roc_curve`` validate and convert their input on every call,
~2 ms each, far more than the computation on a test split of a few hundred samples, and one
run scores ~55 of them. The results are scikit-learn's:

- ``auroc``: the area under the ROC curve with tied scores as diagonal segments, i.e. the
  Mann–Whitney U: P(positive scores > negative) + ½ P(tie). Computed from integer counts
  (twice the area is Σ Δfps·(tps + tps_prev), exact in float64 up to 2⁵³), divided once:
  correctly rounded, where scikit-learn's trapezoid on rates may differ in the last bits;
- ``average_precision``: scikit-learn's step sum Σ (R_n − R_{n−1})·P_n, evaluated with the
  same operations in the same order, so the same float;
- ``fpr_at_tpr``: ``roc_curve(drop_intermediate=False)``'s points, the same floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.metrics._arrays import ArrayLike, as_float64


@dataclass(frozen=True)
class Ranking:
    """Positives (``tps``) and negatives (``fps``) scoring ≥ each distinct score, highest first
    (float64 counts, as scikit-learn keeps them)."""

    tps: np.ndarray
    fps: np.ndarray

    @classmethod
    def of(cls, is_positive: ArrayLike, scores: ArrayLike) -> Ranking:
        """Sort ``scores`` (finite, any order) with their 0/1 or bool labels ``is_positive``."""
        positive, score = as_float64(is_positive).ravel() != 0, as_float64(scores).ravel()
        if positive.shape != score.shape:
            raise ValueError(f"labels {positive.shape} and scores {score.shape} differ in shape")
        if not np.isfinite(score).all():  # scikit-learn refuses them too; a sort would not
            raise ValueError("scores must be finite: they contain NaN or infinity")
        if not len(score):
            return cls(tps=np.zeros(0), fps=np.zeros(0))
        order = np.argsort(score, kind="stable")[::-1]  # descending
        score = score[order]
        # The last sample of each run of equal scores: where the next one differs, and the end.
        last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
        tps = np.cumsum(positive[order], dtype=np.float64)[last]
        return cls(tps=tps, fps=1.0 + last - tps)

    @property
    def positives(self) -> float:
        return float(self.tps[-1]) if len(self.tps) else 0.0

    @property
    def negatives(self) -> float:
        return float(self.fps[-1]) if len(self.fps) else 0.0

    def auroc(self) -> float:
        """Area under the ROC curve, ties counting ½; NaN unless both classes are present."""
        if not self.positives or not self.negatives:
            return math.nan
        tp = np.r_[0.0, self.tps]
        twice_area = np.sum(np.diff(np.r_[0.0, self.fps]) * (tp[1:] + tp[:-1]))
        return float(twice_area / (2.0 * self.positives * self.negatives))

    def average_precision(self) -> float:
        """Σ (R_n − R_{n−1})·P_n over the distinct thresholds; NaN without positives."""
        if not self.positives:
            return math.nan
        # scikit-learn's precision_recall_curve and its sum, operation for operation.
        precision = np.r_[(self.tps / (self.tps + self.fps))[::-1], 1.0]
        recall = np.r_[(self.tps / self.tps[-1])[::-1], 0.0]
        return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))

    def fpr_at_tpr(self, level: float) -> float:
        """The false-positive rate at the first ROC point (highest threshold) whose true-positive
        rate is ≥ ``level``; NaN unless both classes are present."""
        if not self.positives or not self.negatives:
            return math.nan
        fpr = np.r_[0.0, self.fps] / self.fps[-1]
        tpr = np.r_[0.0, self.tps] / self.tps[-1]
        return float(fpr[np.argmax(tpr >= level)])


def auroc(is_positive: ArrayLike, scores: ArrayLike) -> float:
    """AUROC of ``scores`` separating positives from negatives (see the module docstring).
    NaN unless both classes are present, then whatever the scores (NaN ones included)."""
    positive = as_float64(is_positive).ravel() != 0
    if positive.all() or not positive.any():
        return math.nan
    return Ranking.of(positive, scores).auroc()
