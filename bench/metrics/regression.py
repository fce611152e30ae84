"""Regression metrics of a Gaussian predictive distribution in the original target units."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from bench.metrics._arrays import ArrayLike, as_float64

# Nominal probabilities of the central intervals whose observed coverage is reported.
COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)


def interval_coverage(mean: ArrayLike, var: ArrayLike, targets: ArrayLike, level: float) -> float:
    """Observed fraction of targets inside the central ``level`` interval of N(mean, var):
    |y − μ| ≤ z·σ with z = Φ⁻¹((1 + level)/2), boundary included."""
    mu, v, y = as_float64(mean), as_float64(var), as_float64(targets)
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    return float(np.mean(np.abs(y - mu) <= z * np.sqrt(v)))


def regression_metrics(mean: ArrayLike, var: ArrayLike, targets: ArrayLike) -> dict[str, float]:
    """Every regression metric of one split, keyed as in results.json.

    - ``loss``: mean squared error; ``rmse``: its square root;
    - ``nll``: mean Gaussian negative log-likelihood ½·(log 2π + log σ² + (y − μ)²/σ²);
    - ``coverage50`` … ``coverage95``: see :func:`interval_coverage`;
    - ``coverage_error``: mean |observed − nominal| over those four levels.
    """
    mu, v, y = as_float64(mean), as_float64(var), as_float64(targets)
    if not mu.shape == v.shape == y.shape:
        raise ValueError(f"mean {mu.shape}, var {v.shape} and targets {y.shape} differ in shape")
    mse = float(np.mean((mu - y) ** 2))
    nll = float(np.mean(0.5 * (math.log(2 * math.pi) + np.log(v) + (y - mu) ** 2 / v)))
    metrics = {"loss": mse, "rmse": math.sqrt(mse), "nll": nll}
    gaps = []
    for level in COVERAGE_LEVELS:
        observed = interval_coverage(mu, v, y, level)
        metrics[f"coverage{round(100 * level)}"] = observed
        gaps.append(abs(observed - level))
    metrics["coverage_error"] = float(np.mean(gaps))
    return metrics
