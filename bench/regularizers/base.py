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

Population training (``bench/population/``) runs the same hooks on a *stacked* network: every
parameter has a leading member axis and ``model.members`` says how many. A regularizer whose
maths is written with the helpers below (``member_total``, ``per_member``, ``is_positive``)
works unchanged on both, its hyperparameters floats for one network or ``(M,)`` vectors for a
population (``population = True`` declares it); a single run is the same code with no member
axis, bit for bit what it was.
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
Hyper = float | torch.Tensor  # one network's value, or one per member of a population


def member_axes(model: nn.Module) -> int:
    """1 for a stacked population network (leading member axis), 0 for one network."""
    return 1 if getattr(model, "members", None) is not None else 0


def regularized_parameters(model: nn.Module, scope: str = "weights") -> Iterator[nn.Parameter]:
    """Parameters a penalty or decay applies to.

    ``weights`` (the default, as in nanoGPT/airbench): tensors with two or more dimensions, i.e.
    weight matrices and conv kernels, not biases or normalization scales. ``all``: every one.
    A population's member axis does not count as a dimension.
    """
    lead = member_axes(model)
    for p in model.parameters():
        if p.requires_grad and (scope == "all" or p.ndim - lead >= 2):
            yield p


def member_total(t: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``t.sum()`` for one network; one sum per member, shape ``(M,)``, for a population."""
    return t.flatten(1).sum(1) if member_axes(model) else t.sum()


def per_member(value: Hyper, like: torch.Tensor) -> Hyper:
    """A hyperparameter ready to multiply ``like``: a float as it is; a per-member vector on
    ``like``'s device and dtype, shaped ``(M, 1, ..., 1)`` to broadcast over the member axis."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


def is_positive(value: Hyper) -> bool:
    """Whether any network (any member) has this strength switched on."""
    return bool((value > 0).any()) if isinstance(value, torch.Tensor) else value > 0


def sparsity(model: nn.Module, scope: str = "weights") -> float:
    """Fraction of exactly-zero entries among the regularized parameters (Lasso's exact zeros)."""
    params = list(regularized_parameters(model, scope))
    total = sum(p.numel() for p in params)
    zeros = sum(int((p == 0).sum()) for p in params)
    return zeros / total if total else 0.0


class Regularizer:
    """Base class: every hook does nothing. ``name`` is the config key (e.g. ``l2``)."""

    name: str = "regularizer"
    # How ``hydra/launcher=population`` trains runs with it as one program. True: the hooks
    # broadcast over a population's member axis (floats may be (M,) vectors). "per_member": its
    # only hook is ``transform_batch``, which runs on each member's slice of the batch with that
    # member's own object (bench/population/stacking.py). False: runs with it train alone.
    population: bool | str = False
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
