"""One log line per epoch where a progress bar would be noise: output that is not a terminal.

A progress bar redraws itself; written to a file (Slurm, joblib, CI, ``> log.txt``) it shows
nothing until the end, or a screenful of redraws. A job log wants one readable line per epoch,
which ``EpochLog`` writes through the ``bench`` logger, so it lands in Hydra's console handler
and in the run directory's ``train.log`` alike.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

import lightning as L
from lightning.pytorch.callbacks import Callback

from bench.errors import ConfigError

log = logging.getLogger("bench")

# What a reader follows in a run: the training loss, the validation metrics, the learning rate.
KEYS = ("fit/loss", "val/loss", "val/acc", "fit/lr")


def progress_bar_enabled(setting: bool | str, stream: IO | None = None) -> bool:
    """``trainer.enable_progress_bar``: ``auto`` draws the bar only on a terminal (``stream``,
    stdout by default, where the bar is drawn); true / false force it on or off."""
    if isinstance(setting, bool):
        return setting
    if setting == "auto":
        stream = stream if stream is not None else sys.stdout
        return bool(getattr(stream, "isatty", lambda: False)())
    raise ConfigError(
        f"trainer.enable_progress_bar: allowed are auto, true, false (got {setting!r})"
    )


class EpochLog(Callback):
    """Logs ``epoch 3/30  fit/loss=…  val/loss=…  val/acc=…  fit/lr=…  1.2s`` after each epoch.

    Validation metrics are shown only for an epoch that validated (check_val_every_n_epoch > 1
    would otherwise repeat stale values); under DDP, rank 0 alone writes.
    """

    def __init__(self, keys: tuple[str, ...] = KEYS) -> None:
        self.keys = keys
        self._started = time.monotonic()
        self._validated = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info(self.line(trainer))

    def line(self, trainer: L.Trainer) -> str:
        epoch = f"epoch {trainer.current_epoch + 1}"
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            epoch += f"/{trainer.max_epochs}"
        metrics = trainer.callback_metrics
        parts = [epoch]
        for key in self.keys:
            if key in metrics and (self._validated or not key.startswith("val/")):
                parts.append(f"{key}={float(metrics[key]):.4g}")
        parts.append(f"{time.monotonic() - self._started:.1f}s")
        return "  ".join(parts)
