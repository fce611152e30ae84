"""What mixup, cutmix and label smoothing share: soft targets and sample-pair mixing.

Mixup and cutmix differ only in how two images are combined (a convex combination or a pasted
box); drawing λ and the partner permutation, and mixing the labels with the weight the input
actually received, is common and lives here.

torchvision's ``v2.MixUp``/``v2.CutMix`` are not used: they draw one λ per batch only (on the CPU,
a host sync per step), pair each sample with its neighbour (``roll(1)``) rather than a random
partner, and do not expose λ, which the logs and tests need. The lines below are batched tensor
ops on the batch's device; the cutmix box rounding is torchvision's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Beta

from bench.errors import ConfigError
from bench.regularizers.base import Regularizer


def soft_targets(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Class probabilities (N, K): one-hot rows for int labels; float (N, K) targets unchanged."""
    if y.is_floating_point():
        if y.ndim < 2 or y.shape[-1] != num_classes:  # (M, N, K) in a population
            shape = tuple(y.shape)
            raise ValueError(f"soft targets must have shape (N, {num_classes}), got {shape}")
        return y.to(dtype)
    return F.one_hot(y, num_classes).to(dtype)


def require_classification(reg: Regularizer, datamodule: L.LightningDataModule) -> int:
    """Refuse regression datasets (there are no classes to mix or smooth); return K."""
    if datamodule.task != "classification":
        raise ConfigError(
            f"regularizer {reg.name} needs a classification dataset, "
            f"not dataset={datamodule.name} ({datamodule.task})"
        )
    return int(datamodule.num_classes)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class PairMixing(Regularizer, ABC):
    """Mix each training sample with a random partner ``x[perm]``; labels follow the weight.

    ``per_sample=false`` draws one λ ~ Beta(α, α) per batch (Zhang et al. 2018, Yun et al. 2019);
    ``per_sample=true`` one per sample. After a call, ``last_perm`` and ``last_weight`` (the
    per-sample weight of the sample's own label, λ or cutmix's area-corrected λ) describe it.
    """

    transform_order = 20

    def __init__(self, alpha: float, per_sample: bool = False) -> None:
        if not (is_number(alpha) and alpha > 0):
            raise ConfigError(f"{self.key('alpha')} must be a number > 0, got {alpha!r}")
        if not isinstance(per_sample, bool):
            raise ConfigError(f"{self.key('per_sample')} must be true or false, got {per_sample!r}")
        self.alpha = float(alpha)
        self.per_sample = per_sample
        self.num_classes = 0
        self.last_perm: torch.Tensor | None = None
        self.last_weight: torch.Tensor | None = None

    def setup(self, datamodule: L.LightningDataModule, model: nn.Module) -> None:
        self.num_classes = require_classification(self, datamodule)

    def draw_lam(self, n: int, device: torch.device) -> torch.Tensor:
        """λ for each of ``n`` samples (one shared value unless ``per_sample``), on ``device``.

        Drawn in float64: for small α a float32 draw rounds ~2 % of λ (those within 6e-8 of 1)
        to exactly 1, a visible atom in the distribution; the inputs are mixed in their dtype.
        """
        a = torch.full((), self.alpha, device=device, dtype=torch.float64)
        lam = Beta(a, a, validate_args=False).sample((n,) if self.per_sample else (1,))
        return lam.expand(n)

    @abstractmethod
    def mix(
        self, x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Combine ``x`` with ``partner``; return the inputs and the weight of ``x`` per sample."""

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not x.is_floating_point():
            x = x.float()  # a convex combination of integer pixels is not an integer pixel
        n = x.shape[0]
        perm = torch.randperm(n, device=x.device)
        mixed, weight = self.mix(x, x[perm], self.draw_lam(n, x.device))
        targets = soft_targets(y, self.num_classes, x.dtype)
        w = weight.to(targets.dtype)[:, None]
        self.last_perm, self.last_weight = perm, weight
        return mixed, w * targets + (1 - w) * targets[perm]

    def log_values(self, model: nn.Module) -> dict[str, float]:
        """Mean weight of the samples' own labels in the epoch's last batch."""
        return {} if self.last_weight is None else {"lam": float(self.last_weight.mean())}
