"""Max-norm constraint (Srivastava et al. 2014, with dropout): ‖w_unit‖₂ ≤ c after every step.

Each unit's incoming weight vector — a row of a Linear weight, or one output channel of a conv
kernel (all in×kh×kw entries) — is rescaled onto the ball of radius c when it leaves it; smaller
norms are left untouched. This is the Euclidean projection onto the constraint set, so together
with the optimizer step it is projected gradient descent. Biases are not constrained.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import torch
from torch import nn

from bench.errors import ConfigError
from bench.regularizers.base import Hyper, Regularizer, member_axes

# Layers whose weight has one row per output unit along dim 0 (transposed convs do not).
UNIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def unit_weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """Weights with one row per unit after the member axis (population layers say so with
    ``unit_layer = True``)."""
    for m in model.modules():
        if (
            isinstance(m, UNIT_LAYERS) or getattr(m, "unit_layer", False)
        ) and m.weight.requires_grad:
            yield m.weight


def project_units_(w: torch.Tensor, max_norm: Hyper, lead: int) -> None:
    """Rescale every unit's row of ``w`` (after ``lead`` member axes) onto the ball of radius c.

    ``renorm`` does it in one kernel for one c: the member and unit axes are merged into its dim
    0. A population with one c per member spells out the same rule, c/(norm + 1e-7) where the
    norm exceeds c (``renorm``'s definition), since ``renorm`` takes a single bound.
    """
    if not isinstance(max_norm, torch.Tensor):
        w.view(-1, *w.shape[lead + 1 :]).renorm_(2, 0, max_norm)
        return
    norms = w.flatten(lead + 1).norm(dim=-1)  # (M, units)
    bound = max_norm.to(w.device, w.dtype).view(-1, *([1] * (norms.ndim - 1)))
    scale = torch.where(norms > bound, bound / (norms + 1e-7), torch.ones_like(norms))
    w.mul_(scale.view(*scale.shape, *([1] * (w.ndim - scale.ndim))))


class MaxNorm(Regularizer):
    name = "max_norm"
    population = True

    def __init__(self, max_norm: float = 3.0) -> None:
        if not (
            isinstance(max_norm, numbers.Real)
            and not isinstance(max_norm, bool)
            and math.isfinite(max_norm)
            and max_norm > 0
        ):
            raise ConfigError(
                f"{self.key('max_norm')} must be a finite number > 0, got {max_norm!r}"
            )
        self.max_norm = float(max_norm)

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        lead = member_axes(model)
        for w in unit_weights(model):
            project_units_(w, self.max_norm, lead)

    @torch.no_grad()
    def log_values(self, model: nn.Module) -> dict[str, float]:
        lead = member_axes(model)
        per_layer = [
            w.detach().flatten(lead + 1).norm(dim=-1).flatten() for w in unit_weights(model)
        ]
        if not per_layer:
            return {}
        norms = torch.cat(per_layer)
        return {
            "max_unit_norm": float(norms.max()),
            "units_at_bound": float((norms >= self.max_norm * (1 - 1e-5)).float().mean()),
        }
