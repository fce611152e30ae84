"""Label smoothing (Szegedy et al. 2016): train towards ỹ = (1−ε)·y + ε/K instead of one-hot y.

Run as a batch transform (order 30, after mixup/cutmix) rather than through cross_entropy's own
``label_smoothing`` argument so that it also softens mixed targets; on hard labels the loss equals
``F.cross_entropy(logits, y, label_smoothing=ε)`` exactly.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from bench.errors import ConfigError
from bench.regularizers._mixing import is_number, require_classification, soft_targets
from bench.regularizers.base import Regularizer, per_member


class LabelSmoothing(Regularizer):
    name = "label_smoothing"
    population = True
    transform_order = 30

    def __init__(self, epsilon: float = 0.1) -> None:
        if not (is_number(epsilon) and 0 <= epsilon < 1):
            raise ConfigError(f"{self.key('epsilon')} must be a number in [0, 1), got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.num_classes = 0
        self.last_confidence: torch.Tensor | None = None

    def setup(self, datamodule: L.LightningDataModule, model: nn.Module) -> None:
        self.num_classes = require_classification(self, datamodule)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        targets = soft_targets(y, self.num_classes, dtype)
        epsilon = per_member(self.epsilon, targets)  # (M, B, K) targets: one ε per member
        smoothed = (1 - epsilon) * targets + epsilon / self.num_classes
        self.last_confidence = smoothed.amax(-1).mean()
        return x, smoothed

    def log_values(self, model: nn.Module) -> dict[str, float]:
        """Mean largest target probability in the epoch's last batch (1−ε+ε/K on hard labels)."""
        return {} if self.last_confidence is None else {"target_max": float(self.last_confidence)}
