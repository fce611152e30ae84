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


def mixture_log_likelihood(means: ArrayLike, variances: ArrayLike, targets: ArrayLike) -> float:
    """Mean over points of log (1/S) Σ_s N(y; μ_s, σ²_s): the exact log-likelihood of an equal
    mixture of S Gaussians (``means``, ``variances``: (S, N); variances may be (N,) or (S, N)).

    MC dropout's predictive distribution is exactly such a mixture, and Gal & Ghahramani (2016)
    report it in this logsumexp form: logsumexp_s(−½τ(y − ŷ_s)²) − log S − ½ log 2π + ½ log τ.
    Computed in chunks of points so that S = 10,000 samples of a large test set fit in memory.
    """
    mu, v, y = as_float64(means), as_float64(variances), as_float64(targets)
    if mu.ndim != 2 or y.shape != (mu.shape[1],):
        raise ValueError(f"expected means (S, N) and targets (N,), got {mu.shape} and {y.shape}")
    v = np.broadcast_to(v, mu.shape)
    total, chunk = 0.0, max(1, 2**22 // len(mu))
    for start in range(0, len(y), chunk):
        cols = slice(start, start + chunk)
        log_p = -0.5 * (math.log(2 * math.pi) + np.log(v[:, cols]))
        log_p = log_p - 0.5 * (y[cols] - mu[:, cols]) ** 2 / v[:, cols]
        peak = log_p.max(axis=0)
        total += float(np.sum(peak + np.log(np.exp(log_p - peak).sum(axis=0))))
    return total / len(y) - math.log(len(mu))


def regression_metrics(
    mean: ArrayLike,
    var: ArrayLike,
    targets: ArrayLike,
    mixture: tuple[ArrayLike, ArrayLike] | None = None,
) -> dict[str, float]:
    """Every regression metric of one split, keyed as in results.json.

    - ``loss``: mean squared error; ``rmse``: its square root;
    - ``nll``: mean Gaussian negative log-likelihood ½·(log 2π + log σ² + (y − μ)²/σ²) of the
      Gaussian N(mean, var) — for a mixture, the moment-matched Gaussian (as Lakshminarayanan
      et al. 2017 evaluate deep ensembles);
    - ``ll``: mean test log-likelihood of the predictive distribution itself: the exact mixture
      (``mixture`` = component means and variances, (S, N)) where the method is one — MC dropout,
      ensembles — else the Gaussian's, −nll;
    - ``coverage50`` … ``coverage95``: see :func:`interval_coverage`;
    - ``coverage_error``: mean |observed − nominal| over those four levels.
    """
    mu, v, y = as_float64(mean), as_float64(var), as_float64(targets)
    if not mu.shape == v.shape == y.shape:
        raise ValueError(f"mean {mu.shape}, var {v.shape} and targets {y.shape} differ in shape")
    mse = float(np.mean((mu - y) ** 2))
    nll = float(np.mean(0.5 * (math.log(2 * math.pi) + np.log(v) + (y - mu) ** 2 / v)))
    ll = -nll if mixture is None else mixture_log_likelihood(*mixture, y)
    metrics = {"loss": mse, "rmse": math.sqrt(mse), "nll": nll, "ll": ll}
    gaps = []
    for level in COVERAGE_LEVELS:
        observed = interval_coverage(mu, v, y, level)
        metrics[f"coverage{round(100 * level)}"] = observed
        gaps.append(abs(observed - level))
    metrics["coverage_error"] = float(np.mean(gaps))
    return metrics
