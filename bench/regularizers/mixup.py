"""Mixup (Zhang et al. 2018): train on convex combinations of sample pairs and of their labels.

x̃ = λx + (1−λ)x[perm], ỹ = λ·y + (1−λ)·y[perm] with y as one-hot (or already soft) targets and
λ ~ Beta(α, α). Mixing standardized inputs is the same as mixing raw ones and standardizing, since
standardization is affine and the weights sum to one.
"""

from __future__ import annotations

import torch

from bench.regularizers._mixing import PairMixing


class MixUp(PairMixing):
    name = "mixup"
    population = "per_member"  # a batch transform only: each member's slice, its own draws

    def __init__(self, alpha: float = 0.2, per_sample: bool = False) -> None:
        super().__init__(alpha, per_sample)

    def mix(
        self, x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w = lam.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        return w * x + (1 - w) * partner, lam
