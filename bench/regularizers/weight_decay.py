"""Decoupled weight decay (Loshchilov & Hutter 2019, the AdamW rule) for any optimizer.

Each real step becomes ``w_t = w_{t-1} − η·u_t − η·γ·w_{t-1}``: the optimizer's own update
``η·u_t`` plus a shrink of the weights *at which the gradient was evaluated*, with η that group's
learning rate, as in ``torch.optim.AdamW``. With plain SGD this is exactly ``l2`` with λ = γ/2
(gradient 2λw = γw) and PyTorch's coupled ``SGD(weight_decay=γ)``. Under Adam they differ: an L2
gradient is divided by √v̂ like the data gradient, so weights with large gradients are barely
regularized, whereas the decoupled shrink is the same relative amount for every weight.

The after-step hook only sees the weights after the update, so ``before_step`` (called after
backward, at the gradient evaluation point) keeps a copy of the regularized weights.
Shrinking the post-step weights instead would multiply the update by (1 − ηγ) too, a different
algorithm (SGD with lr η(1−ηγ) and decay γ/(1−ηγ)).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.regularizers.base import Regularizer, is_positive, per_member, regularized_parameters


class WeightDecay(Regularizer):
    name = "weight_decay"
    population = True

    def __init__(self, strength: float = 0.01, params: str = "weights") -> None:
        self.strength = self.check_nonnegative("strength", strength)
        self.params = self.check_scope(params)
        self._at_gradient: dict[torch.Tensor, torch.Tensor] = {}

    def before_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Remember w_{t-1}, the weights this step's gradient was computed at."""
        if is_positive(self.strength):
            self._at_gradient = {
                p: p.detach().clone() for p in regularized_parameters(model, self.params)
            }

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not is_positive(self.strength):
            return
        if not self._at_gradient:
            raise RuntimeError(
                f"{self.key('strength')}: no pre-step weights; before_step() must run before "
                "each optimizer step (BenchModule.on_before_optimizer_step does this)"
            )
        for group in optimizer.param_groups:
            for p in group["params"]:
                w_prev = self._at_gradient.get(p)
                if w_prev is None or p.grad is None:  # like AdamW: stepped params only
                    continue
                decay = per_member(self.strength, p)
                if isinstance(decay, torch.Tensor):  # a population: one γ per member
                    p.sub_(w_prev * (group["lr"] * decay))
                else:
                    p.sub_(w_prev, alpha=group["lr"] * decay)
        self._at_gradient = {}  # used once: a skipped step never decays with stale weights

    @torch.no_grad()
    def log_values(self, model: nn.Module) -> dict[str, float]:
        squares = sum(float((p**2).sum()) for p in regularized_parameters(model, self.params))
        return {"weight_norm": squares**0.5}
