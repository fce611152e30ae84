"""The LightningModule ("routine"): one training recipe for any network and any regularizers.

It owns the data loss, calls the regularizer hooks at fixed places and logs. It never branches on
regularizer types; the final evaluation lives in ``bench.evaluate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from bench.divergence import DivergenceWatch, check_every
from bench.regularizers.base import Regularizer

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class EpochMeans:
    """Batch-size-weighted sums of this epoch's training values, kept on the device."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor], n: int) -> None:
        for key, value in values.items():
            weighted = value.detach().float() * n
            self.sums[key] = self.sums[key] + weighted if key in self.sums else weighted
        self.count += n

    def pop(self) -> dict[str, torch.Tensor]:
        means = {key: total / self.count for key, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


class RegularizedOptimization:
    """The optimizer, its scheduler and the regularizers' step hooks: shared by ``BenchModule``
    and the population's module (``bench.population.module``), which set ``optimizer_factory``,
    ``scheduler_factory``, ``regularizers`` and ``model``."""

    def optimizer_options(self) -> dict[str, Any]:
        """Extra keyword arguments for the optimizer (the population asks for fused kernels)."""
        return {}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters(), **self.optimizer_options())
        # After-step hooks run only when the optimizer really stepped (PyTorch calls step
        # post-hooks from step() itself), and before any scheduler changes the learning rate.
        optimizer.register_step_post_hook(self._after_optimizer_step)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        with torch.no_grad():
            for reg in self.regularizers:
                reg.before_step(self.model, optimizer)

    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        with torch.no_grad():
            for reg in self.regularizers:
                reg.after_step(self.model, optimizer)
            self.after_regularizer_steps()

    def after_regularizer_steps(self) -> None:
        """Runs after the regularizers' after-step hooks (the population restores frozen
        members here)."""


class BenchModule(RegularizedOptimization, L.LightningModule):
    """Classification (cross-entropy) or regression (MSE, or Gaussian NLL with a variance head).

    Regression targets arrive standardized; ``target_std`` converts the logged MSE back to the
    original units so that ``val/loss`` means the same on a dashboard and in results.json.
    """

    def __init__(
        self,
        model: nn.Sequential,
        task: str,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        regularizers: Sequence[Regularizer] = (),
        heteroscedastic: bool = False,
        target_std: float = 1.0,
        hparams: dict[str, Any] | None = None,
        check_finite_every: int | None = None,
        compile: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be classification or regression, got {task!r}")
        self.regularizers = list(regularizers)
        self.batch_transforms = sorted(self.regularizers, key=lambda r: r.transform_order)
        for reg in self.regularizers:
            model = reg.configure_model(model)
        self.model = model
        self.task = task
        self.heteroscedastic = heteroscedastic
        self.target_std = float(target_std)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.diverged_at: tuple[int, int] | None = None  # (epoch, step), 0-based
        self._lr_logged_for: int | None = None  # the epoch whose learning rate was logged
        self.check_finite_every = check_finite_every  # None: every step on CPU (divergence.py)
        self.watch = DivergenceWatch()
        self.epoch_means = EpochMeans()
        self.channels_last = channels_last
        if channels_last:  # conv weights in NHWC, the layout tensor cores and oneDNN prefer
            self.model = self.model.to(memory_format=torch.channels_last)
        # Training steps through a compiled graph of the same network (shared parameters);
        # evaluation, checkpoints and state_dict keys keep the plain module.
        self.train_forward = torch.compile(self.model) if compile else self.model
        if hparams is not None:
            self.save_hyperparameters(hparams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # losses -------------------------------------------------------------------------------
    def data_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training objective without penalties. Soft (float) class targets are allowed."""
        if self.task == "classification":
            return F.cross_entropy(out, y)
        if self.heteroscedastic:
            return F.gaussian_nll_loss(out[:, 0], y, out[:, 1].exp(), full=True)
        return F.mse_loss(out.squeeze(-1), y)

    def hard_label_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The reported loss: cross-entropy, or MSE of the mean in original units."""
        if self.task == "classification":
            return F.cross_entropy(out, y)
        return F.mse_loss(out[:, 0], y) * self.target_std**2

    # steps --------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        for reg in self.batch_transforms:
            x, y = reg.transform_batch(x, y)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        data_loss = self.data_loss(self.train_forward(x), y)
        penalties = {
            reg.name: p for reg in self.regularizers if (p := reg.penalty(self.model)) is not None
        }
        loss = data_loss + sum(penalties.values()) if penalties else data_loss
        if self._every() == 1:
            finite = bool(torch.isfinite(loss))
            if self._trainer is not None and self.trainer.world_size > 1:  # all ranks stop
                finite = not self.trainer.strategy.reduce_boolean_decision(not finite, all=False)
            if not finite:
                # A result, not a crash: skip this step, stop, let the caller record "diverged".
                self.diverged_at = (self.current_epoch, self.global_step)
                self.trainer.should_stop = True
                self._log_epoch_means()  # the finite steps before it
                return None
        else:
            self.watch.note(loss, self.current_epoch, self.global_step)
        if self._trainer is None:  # stepped by hand (tests/theory.py): nowhere to log to
            return loss
        values = {"fit/data_loss": data_loss, "fit/loss": loss}
        values.update({f"penalty/{name}": value for name, value in penalties.items()})
        self.epoch_means.add(values, x.shape[0])
        if self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or (
            0 <= self.trainer.max_steps <= self.global_step + 1
        ):
            self._log_epoch_means()
        return loss

    def _log_epoch_means(self) -> None:
        """Hand the epoch's batch-size-weighted means to Lightning, once each: ``self.log``
        costs ~0.25 ms a call, as much as a whole digits-sized step, so calling it per step
        doubled the framework's overhead (scripts/perf/overhead.py). The values are the ones
        Lightning's own per-step accumulation gives, bit for bit; DDP ranks are averaged."""
        for key, mean in self.epoch_means.pop().items():
            self.log(
                key,
                mean,
                on_step=False,
                on_epoch=True,
                batch_size=1,
                sync_dist=True,
                prog_bar=key == "fit/loss",
            )

    def _every(self) -> int:
        return check_every(self.check_finite_every, self.device)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self._every()
        if every > 1 and self.global_step % every == 0:
            self._check_divergence()

    def _check_divergence(self) -> None:
        """Read the device-side note (one sync); stop, on every rank, if any rank saw one."""
        first = self.watch.first()
        bad = first is not None
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad and self.diverged_at is None:
            self.diverged_at = first or (self.current_epoch, self.global_step)
            self.trainer.should_stop = True

    def on_train_start(self) -> None:
        # Every DDP rank was seeded alike; give each its own stream for dropout masks and batch
        # transforms (the batch order stays shared and is sharded by the loader).
        # A resumed DDP run (checkpoints hold rank 0's streams) draws fresh ones per rank from
        # its step: reproducible, though not bit-identical to an uninterrupted run.
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + self.global_rank + 7919 * self.global_step)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The learning rate this epoch trains with (schedulers step once per epoch), logged at
        # the first batch this process trains in the epoch — not at epoch start, which a run
        # resumed mid-epoch does not go through.
        if self._lr_logged_for != self.current_epoch and self.trainer.optimizers:
            self._lr_logged_for = self.current_epoch
            lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
            self.log("fit/lr", lr, on_step=False, on_epoch=True, batch_size=1, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        if self._every() > 1:
            self._check_divergence()
        if self.epoch_means.count:  # an epoch cut short (a stop between checks): log it anyway
            self._log_epoch_means()
        for reg in self.regularizers:
            for key, value in reg.log_values(self.model).items():
                self.log(f"{reg.name}/{key}", value, sync_dist=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        epoch = dict(on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        self.log("val/loss", self.hard_label_loss(out, y), prog_bar=True, **epoch)
        if self.task == "classification":
            acc = (out.argmax(dim=-1) == y).float().mean()
            self.log("val/acc", acc, prog_bar=True, **epoch)
