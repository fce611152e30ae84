"""Metrics of a finished run, computed from collected outputs in one place for every split.

Classification metrics take probabilities and hard labels; regression metrics take a predictive
mean and variance in the original target units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multiclass Brier score: mean over samples of ‖p − onehot(y)‖² (torchmetrics has none)."""
    onehot = F.one_hot(labels, probs.shape[-1]).to(probs.dtype)
    return ((probs - onehot) ** 2).sum(dim=-1).mean()


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Loss (= mean NLL of the hard labels), accuracy, ECE (15 equal-width bins, L1), Brier."""
    probs = probs.double()
    nll = F.nll_loss(torch.log(probs.clamp_min(1e-300)), labels).item()
    ece = multiclass_calibration_error(
        probs, labels, num_classes=probs.shape[-1], n_bins=ECE_BINS, norm="l1"
    ).item()
    return {
        "loss": nll,
        "acc": (probs.argmax(dim=-1) == labels).double().mean().item(),
        "nll": nll,
        "ece": ece,
        "brier": brier_score(probs, labels).item(),
    }


def regression_metrics(
    mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor
) -> dict[str, float]:
    """MSE (the loss), RMSE and Gaussian NLL (with ½·log 2π) in the original target units."""
    mean, var, targets = mean.double(), var.double(), targets.double()
    mse = ((mean - targets) ** 2).mean().item()
    nll = (0.5 * (torch.log(var) + (targets - mean) ** 2 / var + math.log(2 * math.pi))).mean()
    return {"loss": mse, "rmse": math.sqrt(mse), "nll": nll.item()}
