"""L1 penalty λ·Σ|w| (Lasso; MAP under a Laplace prior), by default as a proximal step.

A subgradient λ·sign(w) added to the loss makes weights oscillate around zero and never reach it.
The proximal step (ISTA) instead soft-thresholds right after each optimizer step,

    w ← sign(w)·max(|w| − λ·s, 0),

which gives exact zeros. ``s`` must be the step the optimizer took per unit of gradient on that
coordinate, or the iteration converges to the Lasso of another λ: ``s = η`` for plain SGD,
``η/(1−μ)`` for heavy-ball momentum μ (the steady-state step of the momentum buffer), and
``η/(√v̂ + ε)`` per coordinate for Adam/AdamW. A plain ``ηλ`` threshold with momentum 0.9 solves
the Lasso of λ/10, and with Adam (whose effective step η/√v̂ is far larger than η) barely
sparsifies at all. With these steps a fixed point of optimizer step + threshold is exactly a
Lasso solution.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from bench.errors import ConfigError
from bench.regularizers.base import (
    Hyper,
    Regularizer,
    is_positive,
    member_total,
    per_member,
    regularized_parameters,
    sparsity,
)

MODES = ("proximal", "subgradient")
SUPPORTED_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)


def check_optimizer(optimizer: torch.optim.Optimizer, who: str) -> None:
    """Refuse optimizers whose per-coordinate step size we do not know."""
    if not isinstance(optimizer, SUPPORTED_OPTIMIZERS):
        raise ConfigError(
            f"optimizer {type(optimizer).__name__} is not supported by {who}: the proximal step "
            "needs the optimizer's step size; use optimizer=sgd, adam or adamw "
            "(torch.optim.SGD, Adam, AdamW)"
        )


def step_per_unit_gradient(
    optimizer: torch.optim.Optimizer, group: dict[str, Any], p: torch.Tensor
) -> float | torch.Tensor:
    """The step ``s`` the optimizer just took on ``p`` per unit of gradient (scalar or per entry).

    Read right after ``optimizer.step()``: the lr is the one this step used (schedulers move it
    later) and Adam's state already holds this step's second moment.
    """
    lr = group["lr"]
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        state = optimizer.state[p]
        beta2 = group["betas"][1]
        v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
        v_hat = v / (1 - beta2 ** float(state["step"]))  # bias-corrected, as Adam computes it
        return lr / (v_hat.sqrt() + group["eps"])
    if isinstance(optimizer, torch.optim.SGD):
        mu = group["momentum"]
        if mu == 0:
            return lr
        if group["nesterov"]:  # g + μ·buf, buf → g/(1−μ): steady step η/(1−μ)
            return lr / (1 - mu)
        return lr * (1 - group["dampening"]) / (1 - mu)  # buf → (1−d)·g/(1−μ)
    raise AssertionError("unreachable: check_optimizer refused it")


def l1_norm(model: nn.Module, scope: str) -> torch.Tensor:
    """Σ|w| (one per member for a population)."""
    return sum(member_total(p.abs(), model) for p in regularized_parameters(model, scope))


def soft_threshold_(p: torch.Tensor, threshold: float | torch.Tensor) -> None:
    """In place: ``p ← sign(p)·max(|p| − threshold, 0)``, the proximal map of threshold·|p|.

    Written as ``p − clamp(p, −t, t)``: one pass, and entries within the threshold become +0.0.
    """
    p.sub_(torch.clamp(p, -threshold, threshold))


def proximal_l1_(
    model: nn.Module, optimizer: torch.optim.Optimizer, strength: Hyper, scope: str, who: str
) -> None:
    """One proximal step of ``strength·Σ|w|`` over the parameters of ``scope`` the optimizer moved.

    Parameters without a gradient were not stepped by the optimizer, so they are not shrunk.
    """
    check_optimizer(optimizer, who)
    targets = {id(p) for p in regularized_parameters(model, scope)}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) in targets and p.grad is not None:
                step = step_per_unit_gradient(optimizer, group, p)
                soft_threshold_(p, per_member(strength, p) * step)


class OptimizerCheck(L.Callback):
    """Refuse an unsupported optimizer when fit starts (optimizers exist only from then on)."""

    def __init__(self, who: str) -> None:
        self.who = who

    @property
    def state_key(self) -> str:  # l1 and elastic_net may both add one
        return self._generate_state_key(who=self.who)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            check_optimizer(optimizer, self.who)


class L1(Regularizer):
    name = "l1"
    population = True

    def __init__(
        self, strength: float = 1e-4, params: str = "weights", mode: str = "proximal"
    ) -> None:
        self.strength = self.check_nonnegative("strength", strength)
        self.params = self.check_scope(params)
        if mode not in MODES:
            raise ConfigError(f"{self.key('mode')} must be one of {MODES}, got {mode!r}")
        self.mode = mode

    @property
    def who(self) -> str:
        return f"{self.key('mode')}=proximal"

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """Subgradient mode only: autograd then adds λ·sign(w) to the gradient."""
        if self.mode != "subgradient":
            return None
        norm = l1_norm(model, self.params)
        return per_member(self.strength, norm) * norm

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.mode == "proximal" and is_positive(self.strength):
            proximal_l1_(model, optimizer, self.strength, self.params, self.who)

    def callbacks(self) -> list[L.Callback]:
        return [OptimizerCheck(self.who)] if self.mode == "proximal" else []

    @torch.no_grad()
    def log_values(self, model: nn.Module) -> dict[str, float]:
        values = {"sparsity": sparsity(model, self.params)}
        if self.mode == "proximal":  # in subgradient mode the module logs penalty/<name> itself
            values["penalty"] = self.strength * float(l1_norm(model, self.params))
        return values

    def summary(self, model: nn.Module) -> dict[str, Any]:
        return {"sparsity": sparsity(model, self.params)}
