"""Checkpoints a run can resume from *exactly*: after a signal, at epoch ends and at fit end.

Lightning's checkpoint holds the model, optimizer, schedulers, loop counters, the logger step
and every callback's ``state_dict`` (early stopping's counters, ``RestoreBest``'s best weights).
It leaves out what makes the rest of a run repeat bit for bit (Lightning #17543, "won't fix"):
the global random states and where the data order stands. This callback adds them under
``checkpoint["bench"]``:

- ``rng``: Python, NumPy, torch (and CUDA) generator states, restored when training restarts;
- ``data_order``: the training loader's generator state and how many batches of the current
  pass were trained on (``bench.data.batches.order_state``), handed to the datamodule, whose
  next loader redraws the same permutation and skips those batches;
- ``fit_complete`` (the checkpoint written when training ends): a resumed run does not train again
  — even when early stopping ended it before ``max_epochs`` — and goes straight to evaluation;
- ``diverged_at``: the module's record of a non-finite loss.

It is a ``Checkpoint`` subclass and appended last, so Lightning calls it after every other
callback of a hook — early stopping has checked and ``RestoreBest`` has snapshotted the epoch
before the checkpoint is taken.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Checkpoint

from bench.data.batches import order_state
from bench.resume.checkpoints import checkpoint_name, prune
from bench.resume.signals import RunInterrupted, active_guard

log = logging.getLogger("bench")


class ResumeCheckpoint(Checkpoint):
    """Write resumable checkpoints to ``dirpath`` every ``every_n_epochs`` epochs (0: only on a
    signal and at fit end), keep the newest ``keep``; turn a noted signal into a checkpoint and
    :class:`~bench.resume.signals.RunInterrupted` at the next batch end."""

    def __init__(
        self,
        dirpath: str | Path,
        every_n_epochs: int = 1,
        keep: int = 2,
        min_interval_s: float = 0.0,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        # Epoch checkpoints closer than this to the last one are skipped: hundreds of very short
        # epochs (a UCI-sized population) would spend more time writing than training. A signal
        # and the end of fit always save.
        self.min_interval_s = min_interval_s
        self._saved_at = time.monotonic()
        self.keep = max(int(keep), 1)
        self.last_saved: Path | None = None
        self.fit_complete = False  # restored from a checkpoint written when fit ended
        self._consumed: int | None = None  # batches of the current pass trained on
        self._final = False
        self._rng: dict[str, Any] | None = None  # to restore when training restarts

    # ------------------------------------------------------------------ saving
    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._consumed = batch_idx + 1
        self._stop_if_signalled(trainer, mid_epoch=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._consumed = None  # the pass is complete
        epoch = trainer.current_epoch + 1
        # The last epoch (max_epochs reached, or early stopping has just said stop) gets the
        # final checkpoint from on_train_end right after: one write of it, not two.
        max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
        last = (
            trainer.should_stop
            or (max_epochs is not None and max_epochs >= 0 and epoch >= max_epochs)
            or (max_steps >= 0 and trainer.global_step >= max_steps)
        )
        due = time.monotonic() - self._saved_at >= self.min_interval_s
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and not last and due:
            self.save(trainer)
        self._stop_if_signalled(trainer, mid_epoch=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before RestoreBest (on_fit_end) swaps in the best weights: the final checkpoint, like
        # every other, holds the weights training ended with.
        if not self.fit_complete:  # a resumed complete fit has its final checkpoint already
            self._final = True
            try:
                self.save(trainer)
            finally:
                self._final = False

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A complete fit resumed skips training (no on_train_start): its streams continue here.
        self._restore_rng()

    def save(self, trainer: L.Trainer) -> Path:
        """One resumable checkpoint, written atomically (``AtomicCheckpointIO``), then prune."""
        name = checkpoint_name(trainer.current_epoch, trainer.global_step, final=self._final)
        path = self.dirpath / name
        if path == self.last_saved:
            return path
        trainer.save_checkpoint(path, weights_only=False)  # all ranks take part; rank 0 writes
        self._saved_at = time.monotonic()
        if trainer.is_global_zero:
            prune(self.dirpath, self.keep)
        self.last_saved = path
        return path

    def _stop_if_signalled(self, trainer: L.Trainer, mid_epoch: bool) -> None:
        guard = active_guard()
        received = guard.received if guard is not None else None
        stop = received is not None
        if trainer.world_size > 1:  # every rank stops at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        loader = trainer.train_dataloader
        # A DataLoader cannot skip the batches already seen: it resumes from the last epoch end.
        if not mid_epoch or hasattr(loader, "restore_order"):
            self.save(trainer)
        checkpoint = str(self.last_saved) if self.last_saved is not None else None
        signum = received if received is not None else int(signal.SIGTERM)
        raise RunInterrupted(signum, trainer.current_epoch + 1, trainer.global_step, checkpoint)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["bench"] = {
            "rng": rng_states(),
            "data_order": order_state(trainer.train_dataloader, self._consumed),
            "fit_complete": self._final,
            "diverged_at": getattr(pl_module, "diverged_at", None),
        }

    # ------------------------------------------------------------------ resuming
    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get("bench")
        if state is None:  # a plain Lightning checkpoint: weights and loops, no exact resume
            log.warning("checkpoint without random and data-order state: resume is not exact")
            return
        self._rng = state["rng"]
        if trainer.datamodule is not None:  # before fit draws the first order
            trainer.datamodule.resume_order(state["data_order"])
        pl_module.diverged_at = state["diverged_at"]
        self.fit_complete = bool(state["fit_complete"])
        for lg in trainer.loggers:  # rows the interrupted start wrote after this checkpoint
            if hasattr(lg, "resume_at"):
                lg.resume_at(int(checkpoint["global_step"]))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        guard = active_guard()
        if guard is not None:  # this callback, not Lightning, decides where a signal stops
            guard.reassert()
        self._restore_rng()
        if self.fit_complete:  # early stopping had ended this fit: do not train on
            trainer.should_stop = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)

    def _restore_rng(self) -> None:
        if self._rng is not None:
            set_rng_states(self._rng)
            self._rng = None


def rng_states() -> dict[str, Any]:
    """Lightning's collection of the global random states, NumPy's key array as a tensor so the
    checkpoint still loads with ``torch.load(weights_only=True)`` (no pickled code)."""
    states = _collect_rng_states()
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    keys = np.asarray(keys, dtype=np.int64).astype(np.uint32)
    _set_rng_states({**states, "numpy": (kind, keys, pos, has_gauss, gauss)})
