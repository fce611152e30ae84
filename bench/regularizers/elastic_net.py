"""Elastic net: λ₁·Σ|w| + λ₂·Σw² (Zou & Hastie 2005) — sparse like the Lasso, stable like ridge.

The L1 part is the proximal step of ``l1`` (same optimizer-aware threshold, exact zeros); the L2
part is a differentiable penalty added to the loss. Among correlated features the Lasso keeps one
at random; the L2 part spreads the weight over the group.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from bench.regularizers.base import (
    Regularizer,
    is_positive,
    member_total,
    per_member,
    regularized_parameters,
    sparsity,
)
from bench.regularizers.l1 import OptimizerCheck, l1_norm, proximal_l1_


class ElasticNet(Regularizer):
    name = "elastic_net"
    population = True

    def __init__(
        self, l1_strength: float = 1e-4, l2_strength: float = 1e-4, params: str = "weights"
    ) -> None:
        self.l1_strength = self.check_nonnegative("l1_strength", l1_strength)
        self.l2_strength = self.check_nonnegative("l2_strength", l2_strength)
        self.params = self.check_scope(params)

    @property
    def who(self) -> str:
        return f"regularizer.{self.name}"

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The L2 part only (logged as penalty/<name>); the L1 part is the proximal step."""
        squares = sum(member_total(p**2, model) for p in regularized_parameters(model, self.params))
        return per_member(self.l2_strength, squares) * squares

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if is_positive(self.l1_strength):
            proximal_l1_(model, optimizer, self.l1_strength, self.params, self.who)

    def callbacks(self) -> list[L.Callback]:
        return [OptimizerCheck(self.who)] if is_positive(self.l1_strength) else []

    @torch.no_grad()
    def log_values(self, model: nn.Module) -> dict[str, float]:
        return {
            "sparsity": sparsity(model, self.params),
            "l1_penalty": self.l1_strength * float(l1_norm(model, self.params)),
        }

    def summary(self, model: nn.Module) -> dict[str, Any]:
        return {"sparsity": sparsity(model, self.params)}
