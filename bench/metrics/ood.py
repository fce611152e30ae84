"""Out-of-distribution detection from per-sample uncertainty scores.

OOD samples are the positive class and scores are oriented so that higher means more likely
OOD (``Prediction.scores`` already are: higher = more uncertain). A sample is flagged as OOD
when its score is ≥ the threshold.
"""

from __future__ import annotations

import numpy as np

from bench.metrics._arrays import ArrayLike, as_float64


def ood_metrics(score_in: ArrayLike, score_out: ArrayLike) -> dict[str, float]:
    """AUROC, AUPR and FPR at 95 % TPR of separating OOD from in-distribution samples.

    - ``auroc``: over in-distribution ∪ OOD samples, ties count ½;
    - ``aupr``: average precision with OOD positive, Σ_n (R_n − R_{n−1})·P_n over the
      distinct thresholds (scikit-learn, no interpolation);
    - ``fpr95``: fraction of in-distribution samples flagged at the *highest* threshold that
      still flags ≥ 95 % of the OOD samples, i.e. the first ROC point with TPR ≥ 0.95.
    """
    # Here: sklearn is imported when a run is scored, not by `--help` or a config error.
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    s_in, s_out = as_float64(score_in).ravel(), as_float64(score_out).ravel()
    if not len(s_in) or not len(s_out):
        raise ValueError("ood_metrics needs at least one in-distribution and one OOD score")
    is_ood = np.concatenate([np.zeros(len(s_in)), np.ones(len(s_out))])
    scores = np.concatenate([s_in, s_out])
    fpr, tpr, _ = roc_curve(is_ood, scores, drop_intermediate=False)
    return {
        "auroc": float(roc_auc_score(is_ood, scores)),
        "aupr": float(average_precision_score(is_ood, scores)),
        "fpr95": float(fpr[np.argmax(tpr >= 0.95)]),
    }
