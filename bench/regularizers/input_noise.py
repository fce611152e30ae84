"""Gaussian input noise: train on x + σ·ε, ε ~ N(0, I), a fresh draw for every batch.

Bishop (1995): for a linear model with squared error, E_ε[(y − wᵀ(x+ε))²] = (y − wᵀx)² + σ²‖w‖²,
so noise of std σ is ridge with λ = σ² in this project's convention (mean-over-samples MSE +
λ·Σw², bias unpenalized). Inputs are standardized, so σ is in units of each feature's training std.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError
from bench.regularizers._mixing import is_number
from bench.regularizers.base import Regularizer, is_positive, per_member


class InputNoise(Regularizer):
    name = "input_noise"
    population = True
    transform_order = 10

    def __init__(self, std: float = 0.1) -> None:
        if not (is_number(std) and std >= 0):
            raise ConfigError(f"{self.key('std')} must be a number >= 0, got {std!r}")
        self.std = float(std)
        self.last_rms: torch.Tensor | None = None

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not is_positive(self.std):
            return x, y
        draw = torch.randn_like(x if x.is_floating_point() else x.float())
        noise = per_member(self.std, draw) * draw  # (M, B, ...) batches: one σ per member
        self.last_rms = noise.pow(2).mean().sqrt()
        return x + noise, y

    def log_values(self, model: nn.Module) -> dict[str, float]:
        """Root mean square of the noise added to the epoch's last batch (≈ σ)."""
        return {} if self.last_rms is None else {"noise_rms": float(self.last_rms)}
