"""L2 penalty: loss + λ·Σw² (gradient 2λw) — MAP estimation under a Gaussian prior on w.

Coupled to the loss, so an adaptive optimizer rescales its gradient like any other; with plain
SGD it equals PyTorch's own ``weight_decay=2λ``. For the decoupled (AdamW) rule see
``weight_decay.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.regularizers.base import (
    Regularizer,
    member_total,
    per_member,
    regularized_parameters,
)


class L2(Regularizer):
    name = "l2"
    population = True

    def __init__(self, strength: float = 1e-4, params: str = "weights") -> None:
        self.strength = self.check_nonnegative(
            "strength", strength
        )  # refuses negatives, inf, NaN, text
        self.params = self.check_scope(params)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        squares = sum(member_total(p**2, model) for p in regularized_parameters(model, self.params))
        return per_member(self.strength, squares) * squares
