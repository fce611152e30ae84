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
from bench.regularizers.base import Regularizer

# Layers whose weight has one row per output unit along dim 0 (transposed convs do not).
UNIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def unit_weights(model: nn.Module) -> Iterator[torch.Tensor]:
    for m in model.modules():
        if isinstance(m, UNIT_LAYERS) and m.weight.requires_grad:
            yield m.weight


class MaxNorm(Regularizer):
    name = "max_norm"

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
        for w in unit_weights(model):
            # renorm scales sub-tensors along dim 0 whose norm exceeds c by c/(norm + 1e-7).
            w.renorm_(2, 0, self.max_norm)

    @torch.no_grad()
    def log_values(self, model: nn.Module) -> dict[str, float]:
        per_layer = [w.detach().flatten(1).norm(dim=1) for w in unit_weights(model)]
        if not per_layer:
            return {}
        norms = torch.cat(per_layer)
        return {
            "max_unit_norm": float(norms.max()),
            "units_at_bound": float((norms >= self.max_norm * (1 - 1e-5)).float().mean()),
        }
