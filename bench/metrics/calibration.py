"""Calibration: how far confidence is from the observed frequency of being right.

One binning rule serves every equal-width metric here (and the reliability diagram): with M
bins, bin b (0-based) holds the confidences in (b/M, (b+1)/M], except the first bin, which is
[0, 1/M]. So a confidence of exactly 1.0 falls in the last bin and exactly 0.0 in the first
(torchmetrics has had bugs at both ends), and a value on an inner edge belongs to the lower
bin, as in Guo et al. (2017). torchmetrics bins [b/M, (b+1)/M) instead, so it agrees with us
everywhere except exactly on inner edges.

Floating point: the index is ``clip(ceil(c·M) − 1, 0, M − 1)`` of the *rounded* product
``c·M``. A value exactly on an edge in binary (0.25, 0.5, 0.75 with M = 4) lands in the lower
bin as stated. A decimal like 0.2 with M = 5 is not representable (its double is slightly
above 0.2), but ``0.2 * 5`` rounds to exactly 1.0, so it lands in the lower bin (bin 0) too.
For every M ≤ 24 (M = 15 included) the double nearest each edge k/M lands in the lower bin;
for some larger M it does not: ``0.28 * 25`` rounds to 7.000000000000001, so 0.28 goes to
bin 7, the upper one. Edge values are a measure-zero event for real model outputs; the rule
only has to be deterministic.
"""

from __future__ import annotations

import numpy as np

from bench.metrics._arrays import ArrayLike, as_float64, as_int64

ECE_BINS = 15


def bin_indices(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """The 0-based equal-width bin of each confidence in [0, 1] (rule in the module docstring)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    index = np.ceil(confidence * n_bins).astype(np.int64) - 1
    return np.clip(index, 0, n_bins - 1)


def reliability(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Per-bin statistics of a reliability diagram with ``n_bins`` equal-width bins.

    ``correct`` is 1 where the prediction was right (any 0/1 or bool array; for classwise
    calibration, 1[y = k]). Returns ``edges`` (n_bins + 1 values 0 … 1), ``counts`` (int64),
    ``confidence`` (mean confidence per bin) and ``accuracy`` (mean of ``correct`` per bin);
    the two means are NaN for empty bins.
    """
    conf, hit = as_float64(confidence).ravel(), as_float64(correct).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"confidence {conf.shape} and correct {hit.shape} differ in shape")
    index = bin_indices(conf, n_bins)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins become NaN on purpose
        mean_conf = np.bincount(index, weights=conf, minlength=n_bins) / counts
        mean_acc = np.bincount(index, weights=hit, minlength=n_bins) / counts
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1),
        "counts": counts.astype(np.int64),
        "confidence": mean_conf,
        "accuracy": mean_acc,
    }


def expected_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = ECE_BINS
) -> float:
    """Equal-width L1 ECE: Σ_b (n_b / N)·|acc_b − conf_b| over the non-empty bins."""
    bins = reliability(confidence, correct, n_bins)
    filled = bins["counts"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["counts"][filled] * gaps) / bins["counts"].sum())


def max_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = ECE_BINS
) -> float:
    """MCE: the largest |acc_b − conf_b| over the non-empty equal-width bins."""
    bins = reliability(confidence, correct, n_bins)
    filled = bins["counts"] > 0
    return float(np.max(np.abs(bins["accuracy"][filled] - bins["confidence"][filled])))


def adaptive_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = ECE_BINS
) -> float:
    """Adaptive (equal-mass) ECE: Σ_b (n_b / N)·|acc_b − conf_b| over equal-count bins.

    The samples are sorted by confidence with a *stable* sort (ties keep their input order)
    and the sorted order is cut with ``np.array_split`` into ``n_bins`` consecutive chunks:
    with N = q·M + r the first r chunks hold q + 1 samples, the rest q. Tied confidences may
    straddle a cut. With N < M the trailing chunks are empty and carry no weight.
    Written here because neither torchmetrics nor scikit-learn offers an equal-mass ECE.
    """
    conf, hit = as_float64(confidence).ravel(), as_float64(correct).ravel()
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, n_bins):
        if len(chunk):
            total += len(chunk) * abs(hit[chunk].mean() - conf[chunk].mean())
    return float(total / len(conf))


def classwise_calibration_error(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = ECE_BINS
) -> float:
    """Classwise ECE (Kull et al., 2019): mean over classes k of the equal-width ECE of
    p_k against 1[y = k] over all N samples. Unlike the top-label ECE it also scores the
    small probabilities, including exact zeros, which the first bin [0, 1/M] holds."""
    p, y = as_float64(probs), as_int64(labels)
    return float(
        np.mean([expected_calibration_error(p[:, k], y == k, n_bins) for k in range(p.shape[1])])
    )
