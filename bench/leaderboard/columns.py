"""Which numbers the boards show, how a key is looked up in a record, and which way is better.

Column keys are metric keys without the prediction prefix (``test/nll``); the calibration
board reads ``mc/test/nll`` for its MC-dropout rows. Three keys are not stored in records:

- ``ood/auroc``: the mean over the record's OOD partners of the AUROC of the maximum-softmax
  probability score (``<p>ood/<partner>/max_prob/auroc``; regression: the predictive
  ``variance`` score). One score every prediction type has, so rows compare like with like.
- ``test/error`` (any split, any prefix): 1 − ``test/acc``, as published tables print it.
- top-level record fields (``sparsity``, ``best_epoch``, ``epochs``, ``wall_time_s``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.errors import ConfigError

TOP_LEVEL = ("sparsity", "best_epoch", "epochs", "wall_time_s", "stopped_epoch")
OOD_AUROC = "ood/auroc"
ERROR = "/error"  # test/error = 1 − test/acc, derived (published tables give error rates)
OOD_SCORES = ("max_prob", "variance")  # classification, regression

GAP_COLUMNS = {
    "classification": (
        "train/loss",
        "test/loss",
        "gap/loss",
        "train/acc",
        "test/acc",
        "gap/acc",
        "sparsity",
        "best_epoch",
    ),
    "regression": ("train/loss", "test/loss", "gap/loss", "test/rmse", "sparsity", "best_epoch"),
}
CALIBRATION_COLUMNS = {
    "classification": (
        "test/nll",
        "test/ece",
        "test/aece",
        "test/brier",
        "test/acc",
        OOD_AUROC,
        "shift/mean/acc",
        "shift/mean/ece",
    ),
    "regression": (
        "test/nll",
        "test/rmse",
        "test/coverage_error",
        "test/coverage90",
        OOD_AUROC,
        "shift/mean/rmse",
        "shift/mean/nll",
    ),
}
DEFAULT_SORT = {"gap": "gap/loss", "calibration": "test/nll"}
# The underfitting check: test accuracy significantly below the baseline's (regression: RMSE
# significantly above), so a method cannot "close the gap" unnoticed by fitting nothing.
UNDERFIT = {"classification": ("test/acc", "max"), "regression": ("test/rmse", "min")}

_LOWER = ("loss", "nll", "ece", "brier", "rmse", "aurc", "fpr95", "error", "wall_time_s")
_HIGHER = ("acc", "auroc", "aupr", "ll")  # ll: log-likelihood (nll is caught above)


def lookup(metrics: Mapping[str, Any], fields: Mapping[str, Any], key: str) -> float | None:
    """The value of ``key`` in one record (see the module docstring), None when absent."""
    if key in fields or key in TOP_LEVEL:
        value = fields.get(key)
    elif key.endswith(OOD_AUROC) and key not in metrics:
        value = _ood_auroc(metrics, key[: -len(OOD_AUROC)])
    elif key.endswith(ERROR) and key not in metrics:  # papers print error rates
        acc = metrics.get(key[: -len(ERROR)] + "/acc")
        value = 1.0 - acc if isinstance(acc, int | float) and not isinstance(acc, bool) else None
    else:
        value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None  # a NaN is a missing value


def _ood_auroc(metrics: Mapping[str, Any], prefix: str) -> float | None:
    head = f"{prefix}ood/"
    for score in OOD_SCORES:
        tail = f"/{score}/auroc"
        values = [
            v
            for k, v in metrics.items()
            if k.startswith(head) and k.endswith(tail) and k.count("/") == head.count("/") + 2
            if isinstance(v, int | float)
        ]
        if values:
            return sum(values) / len(values)
    return None


def direction(key: str) -> str:
    """``min`` or ``max``: which way ``key`` improves, from its name; ``key:min`` overrides.

    A gap is better smaller; losses, NLL, ECE, Brier, RMSE, FPR@95 lower; accuracies and AUROC
    higher. Anything else (``sparsity``) needs an explicit ``:min`` or ``:max``.
    """
    key, _, forced = key.partition(":")
    if forced:
        if forced not in ("min", "max"):
            raise ConfigError(f"--sort {key}:{forced}: the suffix must be :min or :max")
        return forced
    bare = key.split("/", 1)[1] if key.split("/", 1)[0] in ("mc", "ts", "ens") else key
    name = bare.rsplit("/", 1)[-1]
    if bare.startswith("gap/") or name.endswith(_LOWER):
        return "min"
    if name.endswith(_HIGHER):
        return "max"
    raise ConfigError(
        f"--sort {key}: cannot tell whether higher or lower is better; write {key}:min or {key}:max"
    )


def better(a: float, b: float, way: str) -> bool:
    """Whether ``a`` beats ``b`` in direction ``way``."""
    return a < b if way == "min" else a > b
