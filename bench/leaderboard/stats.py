"""Statistics over seeds: mean, sd, 95 % Student-t interval, paired differences.

Pure Python on purpose: the leaderboard must start without numpy or scipy, and a handful of
seeds needs no vectorization. The Student-t quantile comes from inverting the exact CDF
(regularized incomplete beta by continued fraction, then bisection) rather than a table, so
every number of seeds gets its exact interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

LEVEL = 0.95


@dataclass(frozen=True)
class Stat:
    """A metric over ``n`` seeds; ``sd``, ``lo``, ``hi`` are None when n < 2 (no interval)."""

    n: int
    mean: float | None = None
    sd: float | None = None  # sample standard deviation (n − 1 in the denominator)
    lo: float | None = None  # 95 % CI: mean ∓ t(0.975, n−1)·sd/√n
    hi: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None

    def overlaps(self, other: Stat) -> bool:
        """Whether the two intervals share a point (both must have one)."""
        return self.lo <= other.hi and other.lo <= self.hi  # type: ignore[operator]


def summarize(values: list[float]) -> Stat:
    """Mean, sample sd and the 95 % Student-t interval of ``values``."""
    n = len(values)
    if n == 0:
        return Stat(0)
    mean = math.fsum(values) / n
    if n == 1:
        return Stat(1, mean)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    return Stat(n, mean, sd, mean - half, mean + half)


def paired(values: dict[int, float], baseline: dict[int, float]) -> Stat:
    """The per-seed difference ``values − baseline`` over the seeds both have.

    Pairing by seed removes the variance the two share (same initialization stream and batch
    order), so it detects smaller effects than comparing two independent means.
    """
    return summarize([values[s] - baseline[s] for s in sorted(values.keys() & baseline.keys())])


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (p in (0, 1))."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # bracket the root, then bisect to float precision
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) = 1 − ½·I_{df/(df+t²)}(df/2, ½) for t >= 0, mirrored for t < 0."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Numerical Recipes, §6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast here
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b), modified Lentz's method."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h
