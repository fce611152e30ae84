"""Out-of-distribution detection from per-sample uncertainty scores.

OOD samples are the positive class and scores are oriented so that higher means more likely
OOD (``Prediction.scores`` already are: higher = more uncertain). A sample is flagged as OOD
when its score is ≥ the threshold.
"""

from __future__ import annotations

import numpy as np

from bench.metrics._arrays import ArrayLike, as_float64
from bench.metrics.ranking import Ranking


def ood_metrics(score_in: ArrayLike, score_out: ArrayLike) -> dict[str, float]:
    """AUROC, AUPR and FPR at 95 % TPR of separating OOD from in-distribution samples.

    - ``auroc``: over in-distribution ∪ OOD samples, ties count ½;
    - ``aupr``: average precision with OOD positive, Σ_n (R_n − R_{n−1})·P_n over the
      distinct thresholds (no interpolation);
    - ``fpr95``: fraction of in-distribution samples flagged at the *highest* threshold that
      still flags ≥ 95 % of the OOD samples, i.e. the first ROC point with TPR ≥ 0.95.

    All three are scikit-learn's (``roc_auc_score``, ``average_precision_score``,
    ``roc_curve``) from one sort, see ``ranking``.
    """
    s_in, s_out = as_float64(score_in).ravel(), as_float64(score_out).ravel()
    if not len(s_in) or not len(s_out):
        raise ValueError("ood_metrics needs at least one in-distribution and one OOD score")
    is_ood = np.concatenate([np.zeros(len(s_in)), np.ones(len(s_out))])
    ranking = Ranking.of(is_ood, np.concatenate([s_in, s_out]))
    return {
        "auroc": ranking.auroc(),
        "aupr": ranking.average_precision(),
        "fpr95": ranking.fpr_at_tpr(0.95),
    }
