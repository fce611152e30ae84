"""The regularizer contract.

A regularizer acts through a few hooks, each a no-op by default. The LightningModule calls them
at fixed places and never branches on regularizer types, so adding a method is one file here and
one yaml in ``conf/regularizer/``:

- ``setup(datamodule, model)``  check the combination is meaningful (raise ``ConfigError``) and
  read what the hook needs (number of classes, image size, the optimizer family ...);
- ``configure_model(model)``    change the network (dropout swaps ``DropoutSlot``s for layers);
- ``transform_batch(x, y)``     training batches only (augmentation, mixup, label smoothing);
- ``penalty(model)``            a term added to the data loss (L2); logged separately;
- ``before_step(model, opt)``   runs after backward, right before each optimizer step, at the
  weights the gradient was computed at (decoupled weight decay remembers them here);
- ``after_step(model, opt)``    runs right after each real optimizer step (proximal L1, decoupled
  weight decay, max-norm); skipped steps (accumulation, AMP overflow) do not call it;
- ``callbacks()``               Lightning callbacks (early stopping);
- ``log_values(model)``         extra scalars for the loggers (current sparsity ...);
- ``summary(model)``            extra top-level fields for results.json (``sparsity`` ...).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import nn

from bench.errors import ConfigError

PARAM_SCOPES = ("weights", "all")


def regularized_parameters(model: nn.Module, scope: str = "weights") -> Iterator[nn.Parameter]:
    """Parameters a penalty or decay applies to.

    ``weights`` (the default, as in nanoGPT/airbench): tensors with two or more dimensions, i.e.
    weight matrices and conv kernels, not biases or normalization scales. ``all``: every one.
    """
    for p in model.parameters():
        if p.requires_grad and (scope == "all" or p.ndim >= 2):
            yield p


def sparsity(model: nn.Module, scope: str = "weights") -> float:
    """Fraction of exactly-zero entries among the regularized parameters (Lasso's exact zeros)."""
    params = list(regularized_parameters(model, scope))
    total = sum(p.numel() for p in params)
    zeros = sum(int((p == 0).sum()) for p in params)
    return zeros / total if total else 0.0


class Regularizer:
    """Base class: every hook does nothing. ``name`` is the config key (e.g. ``l2``)."""

    name: str = "regularizer"
    # transform_batch runs in ascending order whatever the order on the command line: input
    # transforms (augment 0, input_noise 10), then label mixing (mixup/cutmix 20), then label
    # smoothing (30), so 'regularizer=[mixup,augment]' means the same as '[augment,mixup]'.
    transform_order: int = 0

    def setup(self, datamodule: L.LightningDataModule, model: nn.Module) -> None:
        """Refuse combinations that make no sense; remember what the hooks need."""

    def configure_model(self, model: nn.Sequential) -> nn.Sequential:
        return model

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def before_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called under ``torch.no_grad()`` after backward, before ``optimizer.step()``."""

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called under ``torch.no_grad()`` right after ``optimizer.step()`` ran."""

    def callbacks(self) -> list[L.Callback]:
        return []

    def log_values(self, model: nn.Module) -> dict[str, float]:
        return {}

    def summary(self, model: nn.Module) -> dict[str, Any]:
        return {}

    # helpers for subclasses -------------------------------------------------------------
    def key(self, field: str) -> str:
        """Full config key of one of this regularizer's fields, for error messages."""
        return f"regularizer.{self.name}.{field}"

    def check_nonnegative(self, field: str, value: Any) -> float:
        """A finite number >= 0 (a strength), or a one-line ConfigError naming the full key."""
        if not (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        ):
            raise ConfigError(f"{self.key(field)} must be a finite number >= 0, got {value!r}")
        return float(value)

    def check_scope(self, scope: str) -> str:
        if scope not in PARAM_SCOPES:
            raise ConfigError(f"{self.key('params')} must be one of {PARAM_SCOPES}, got {scope!r}")
        return scope
