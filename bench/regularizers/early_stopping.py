"""Early stopping: stop once the validation metric has not improved for ``patience`` epochs, and
evaluate the weights of the best epoch (Prechelt, 1998; Goodfellow et al., 2016, §7.8).

Lightning's ``EarlyStopping`` decides when to stop but leaves the *last* weights in the model.
``RestoreBest`` keeps a CPU copy of the weights whenever that same ``EarlyStopping`` counts an
improvement — it reads the stopper's best score right after the stopper's own check, so there
is one rule, not two copies that could drift apart: in ``min`` mode an epoch improves iff
``current < best − min_delta``. At the end of fit it loads those weights back into the module
(so ``bench.evaluate`` scores them) and saves them as ``checkpoints/best.ckpt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from torch import nn

from bench.errors import ConfigError
from bench.regularizers.base import Regularizer

BEST_CHECKPOINT = "best.ckpt"
# The metrics BenchModule logs once per validation, and which direction is better.
MONITORS = {"val/loss": "min", "val/acc": "max"}


class EarlyStopping(Regularizer):
    name = "early_stopping"
    population = True  # bench.population.stopping runs this stopper once per member

    def __init__(
        self,
        monitor: str = "val/loss",
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str = "min",
    ) -> None:
        if monitor not in MONITORS:
            raise ConfigError(
                f"{self.key('monitor')} must be one of {sorted(MONITORS)}, got {monitor!r}"
            )
        if mode != MONITORS[monitor]:
            raise ConfigError(
                f"{self.key('mode')} must be {MONITORS[monitor]!r} for monitor={monitor} "
                f"(the direction in which it improves), got {mode!r}"
            )
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"{self.key('patience')} must be an integer >= 1, got {patience!r}")
        self.monitor, self.mode = monitor, mode
        self.patience = patience
        self.min_delta = self.check_nonnegative("min_delta", min_delta)
        self.stopper: LightningEarlyStopping | None = None
        self.restorer: RestoreBest | None = None

    def setup(self, datamodule: L.LightningDataModule, model: nn.Module) -> None:
        if self.monitor == "val/acc" and datamodule.task != "classification":
            raise ConfigError(
                f"{self.key('monitor')}=val/acc needs a classification dataset, "
                f"not dataset={datamodule.name}"
            )

    def callbacks(self) -> list[L.Callback]:
        """The stopper and its restorer, made once: asking again returns the same pair (a
        population member's are driven by ``bench.population.stopping`` and must stay theirs)."""
        if self.stopper is not None and self.restorer is not None:
            return [self.stopper, self.restorer]
        self.stopper = LightningEarlyStopping(
            monitor=self.monitor,
            patience=self.patience,
            min_delta=self.min_delta,
            mode=self.mode,
            strict=True,
            check_finite=True,
        )
        self.restorer = RestoreBest(self.stopper, log_prefix=self.name)
        return [self.stopper, self.restorer]

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """1-based epochs: of the restored weights, and of the stop (None: it never triggered).

        If no epoch ever counted as an improvement (a non-finite metric at the first check),
        nothing was restored and ``best_epoch`` keeps its default, the last epoch.
        """
        if self.stopper is None or self.restorer is None:
            return {}
        stopped = self.stopper.stopping_reason != EarlyStoppingReason.NOT_STOPPED
        out: dict[str, Any] = {"stopped_epoch": self.stopper.stopped_epoch + 1 if stopped else None}
        if self.restorer.best_epoch is not None:
            out["best_epoch"] = self.restorer.best_epoch
        return out


class RestoreBest(Checkpoint):
    """Snapshot the weights each time ``stopper`` records a new best; restore them at fit end.

    A ``Checkpoint`` subclass on purpose: Lightning runs checkpoint callbacks after all other
    callbacks of a hook (and, at train-epoch end, in the same "monitoring" pass as
    ``EarlyStopping``, after it), so both hooks below see the stopper's state right after it
    checked this epoch — whichever of the two hooks it checks in (``on_train_epoch_end`` by
    default, ``on_validation_end`` when validation is not once per epoch).
    """

    def __init__(self, stopper: LightningEarlyStopping, log_prefix: str = "early_stopping") -> None:
        self.stopper = stopper
        self.log_prefix = log_prefix
        self.best_epoch: int | None = None  # 1-based
        self.best_state: dict[str, torch.Tensor] | None = None
        self._seen_best = float(stopper.best_score)  # ±inf until the first check

    def _snapshot_if_improved(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The stopper replaces best_score exactly when it counts an improvement, and an
        # improvement (current < best − min_delta, min_delta >= 0) always changes its value.
        best = float(self.stopper.best_score)
        if best == self._seen_best:
            return
        self._seen_best = best
        self.best_epoch = trainer.current_epoch + 1
        self.best_state = {
            k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()
        }

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._snapshot_if_improved(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot_if_improved(trainer, pl_module)
        if self.best_epoch is not None:
            pl_module.log(f"{self.log_prefix}/best_epoch", float(self.best_epoch))
        pl_module.log(f"{self.log_prefix}/wait_count", float(self.stopper.wait_count))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.best_state is None:
            return
        pl_module.load_state_dict(self.best_state)
        # No optimizer state: the moments of the last epoch do not belong to these weights, so
        # best.ckpt is for evaluation and inference; resume training from last.ckpt.
        trainer.save_checkpoint(
            Path(trainer.default_root_dir) / "checkpoints" / BEST_CHECKPOINT, weights_only=True
        )

    def state_dict(self) -> dict[str, Any]:
        """All of it, best weights included: a resumed run must restore the same epoch's."""
        return {
            "best_epoch": self.best_epoch,
            "best_score": self._seen_best,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_epoch = state_dict["best_epoch"]
        self._seen_best = float(state_dict["best_score"])
        self.best_state = state_dict.get("best_state")
