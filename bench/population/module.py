"""The LightningModule of a population: M networks, one forward/backward/step for all of them.

Each member's loss is its own data loss plus its own penalties; the step minimizes their sum, whose
gradient with respect to member k's weights is member k's own gradient (no weight is shared).
The optimizer acts element-wise (SGD, Adam, AdamW), so stacking changes none of its maths. The
regularizers are the single run's (``bench/regularizers``) with per-member vectors for their
hyperparameters; this module calls their hooks at the places ``BenchModule`` does.

What one member does never reaches another:
- a non-finite loss marks that member ``diverged`` at that step, which it skips (as a single run
  skips it), and freezes it; the others go on;
- early stopping is decided per member (:mod:`bench.population.stopping`), and a stopped member
  is frozen;
- a frozen member's weights and optimizer state are put back after every step (its gradient is
  masked out of the sum, but Adam's moments would still move it).
Training ends when every member is frozen or at ``max_epochs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from bench.module import RegularizedOptimization
from bench.population.stack import bind
from bench.population.stopping import MemberStopping
from bench.regularizers.base import Regularizer


def member_losses(
    out: torch.Tensor, y: torch.Tensor, task: str, heteroscedastic: bool
) -> torch.Tensor:
    """``BenchModule.data_loss`` per member: ``out (M, B, K)``, ``y (M, B[, K])`` → ``(M,)``."""
    m, b = out.shape[:2]
    if task == "classification":
        losses = F.cross_entropy(out.flatten(0, 1), y.flatten(0, 1), reduction="none")
        return losses.view(m, b).mean(1)
    if heteroscedastic:
        var = out[..., 1].exp()
        return F.gaussian_nll_loss(out[..., 0], y, var, full=True, reduction="none").mean(1)
    return ((out[..., 0] - y) ** 2).mean(1)


FUSABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def fused(factory: Callable[..., torch.optim.Optimizer]) -> dict[str, bool]:
    """``fused=True`` for Adam/AdamW/SGD unless the config chose an implementation: the same
    update in one kernel per tensor. A population has a few huge tensors, where PyTorch's default
    CPU path (one op at a time over the stack) is memory-bound: an Adam step over 100 digits MLPs
    took 121 ms by default, 81 ms with foreach, 13 ms fused (2 cores, torch 2.14)."""
    func = getattr(factory, "func", factory)
    chosen = getattr(factory, "keywords", {})
    if (
        isinstance(func, type)
        and issubclass(func, FUSABLE)
        and not {"fused", "foreach"} & set(chosen)
    ):
        return {"fused": True}
    return {}


class PopulationModule(RegularizedOptimization, L.LightningModule):
    """Trains ``network`` (a stacked population, ``bench.population.stack``) of M members."""

    def __init__(
        self,
        network: nn.Module,
        task: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        regularizers: Sequence[Regularizer],
        stopping: MemberStopping,
        heteroscedastic: bool,
        target_stds: torch.Tensor,
        on_epoch: Callable[..., None] | None = None,
        member_networks: Sequence[nn.Module] = (),
        on_resume: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self.model = network
        self.members = int(network.members)
        self.task = task
        self.heteroscedastic = heteroscedastic
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.regularizers = list(regularizers)
        self.batch_transforms = sorted(self.regularizers, key=lambda r: r.transform_order)
        self.stopping = stopping
        self.register_buffer("target_var", target_stds.double() ** 2, persistent=False)
        self.on_epoch = on_epoch  # per-member epoch values go to the members' own loggers
        self.member_networks = list(member_networks)  # a list: not submodules of this one
        self.on_resume = on_resume  # told the step a checkpoint resumes from (member logs)
        self.register_buffer("active", torch.ones(self.members, dtype=torch.bool))
        self.diverged_at: list[tuple[int, int] | None] = [None] * self.members
        self.epochs_trained = [0] * self.members  # epochs each member completed
        self._frozen: dict[str, torch.Tensor] = {}  # weights/state to put back, by name
        self._sums: dict[str, torch.Tensor] = {}  # this epoch's weighted sums, on the device
        self._count: torch.Tensor | float = 0.0
        self._val: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_start(self) -> None:
        bind(self.model, self.member_networks)  # on the training device and dtype now

    # training -----------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        for reg in self.batch_transforms:
            x, y = reg.transform_batch(x, y)
        data = member_losses(self.model(x), y, self.task, self.heteroscedastic)
        penalties = {
            reg.name: p for reg in self.regularizers if (p := reg.penalty(self.model)) is not None
        }
        loss = data + sum(penalties.values()) if penalties else data
        bad = self.active & ~torch.isfinite(loss.detach())
        if bool(bad.any()):  # one sync per step, as a single run on CPU checks every step
            for k in bad.nonzero().flatten().tolist():
                self.diverged_at[k] = (self.current_epoch, self.global_step)
                self.epochs_trained[k] = self.current_epoch
            self.freeze(bad)
        live = self.active.clone()
        if not bool(live.any()):
            self.trainer.should_stop = True
            return None
        values = {"fit/data_loss": data, "fit/loss": loss}
        values.update({f"penalty/{name}": value for name, value in penalties.items()})
        self._accumulate(values, live, x.shape[1])
        return torch.where(live, loss, torch.zeros_like(loss)).sum()

    def _accumulate(self, values: dict[str, torch.Tensor], live: torch.Tensor, n: int) -> None:
        """Batch-size-weighted sums per member, kept on the device (read once per epoch)."""
        weight = live.double() * n
        for key, value in values.items():
            v = torch.nan_to_num(value.detach().double()) * weight
            self._sums[key] = self._sums[key] + v if key in self._sums else v
        self._count = self._count + weight

    # freezing -----------------------------------------------------------------------------
    @torch.no_grad()
    def freeze(self, members: torch.Tensor) -> None:
        """Keep ``members`` (a bool mask) where they are now: weights and optimizer state."""
        self.active &= ~members
        for name, tensor in self._member_tensors():
            saved = self._frozen.setdefault(name, tensor.detach().clone())
            mask = members.view(-1, *([1] * (tensor.ndim - 1)))
            saved.copy_(torch.where(mask, tensor, saved))

    def _member_tensors(self) -> list[tuple[str, torch.Tensor]]:
        """Every tensor with a member axis that a step changes: weights and optimizer state."""
        tensors = list(self.model.named_parameters())
        if self._trainer is not None:
            for opt in self.trainer.optimizers:
                for i, (p, state) in enumerate(opt.state.items()):
                    for key, t in state.items():
                        if torch.is_tensor(t) and t.shape[:1] == p.shape[:1] and t.ndim == p.ndim:
                            tensors.append((f"opt{i}.{key}", t))
        return tensors

    @torch.no_grad()
    def _restore_frozen(self) -> None:
        frozen = ~self.active
        if not self._frozen or not bool(frozen.any()):
            return
        for name, tensor in self._member_tensors():
            saved = self._frozen.get(name)
            if saved is None:  # optimizer state created after the freeze: the member's is 0
                saved = self._frozen[name] = torch.zeros_like(tensor)
            mask = frozen.view(-1, *([1] * (tensor.ndim - 1)))
            tensor.copy_(torch.where(mask, saved, tensor))

    # validation ---------------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        if self.task == "classification":
            m, b = out.shape[:2]
            ce = F.cross_entropy(out.flatten(0, 1), y.flatten(0, 1), reduction="none")
            losses = ce.view(m, b).double().sum(1)
            correct = (out.argmax(-1) == y).double().sum(1)
            self._add_val({"val/loss": losses, "val/acc": correct}, b)
        else:
            sq = ((out[..., 0] - y) ** 2).double().sum(1) * self.target_var
            self._add_val({"val/loss": sq}, out.shape[1])

    def _add_val(self, sums: dict[str, torch.Tensor], n: int) -> None:
        for key, value in sums.items():
            self._val[key] = self._val[key] + value if key in self._val else value
        self._val["n"] = self._val.get("n", 0) + n

    def on_validation_epoch_end(self) -> None:
        n = self._val.pop("n", 0)
        self.val_metrics = {k: (v / n).cpu() for k, v in self._val.items()}
        self._val = {}

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch
        was_active = self.active.clone()
        count = torch.as_tensor(self._count, dtype=torch.float64).clamp_min(1)
        fit = {key: (total / count).cpu() for key, total in self._sums.items()}
        self._sums, self._count = {}, 0.0
        val = getattr(self, "val_metrics", {})
        self.val_metrics = {}
        for k in was_active.nonzero().flatten().tolist():
            self.epochs_trained[k] = epoch + 1
        # Early stopping checks this epoch's validation, members that were active only.
        stop = self.stopping.check(epoch, val, was_active.cpu(), self.model)
        if bool(stop.any()):
            self.freeze(stop.to(self.active.device))
        if not bool(self.active.any()):
            self.trainer.should_stop = True
        if self.on_epoch is not None:
            lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
            values = {**fit, **val, **self.stopping.log_values()}
            self.on_epoch(epoch, self.global_step, values, was_active.cpu(), lr)

    # optimization (the optimizer and regularizer hooks: bench.module) -------------------
    def optimizer_options(self) -> dict[str, Any]:
        return fused(self.optimizer_factory)

    def after_regularizer_steps(self) -> None:
        self._restore_frozen()

    # checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["population"] = {
            "diverged_at": list(self.diverged_at),
            "epochs_trained": list(self.epochs_trained),
            "frozen": {k: v.cpu() for k, v in self._frozen.items()},
            "stopping": self.stopping.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["population"]
        self.diverged_at = [tuple(d) if d is not None else None for d in state["diverged_at"]]
        self.epochs_trained = list(state["epochs_trained"])
        self._frozen = {k: v.to(self.device) for k, v in state["frozen"].items()}
        self.stopping.load_state_dict(state["stopping"])
        if self.on_resume is not None:
            self.on_resume(int(checkpoint["global_step"]))
