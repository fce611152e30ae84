"""Each member's own loggers: its ``csv/metrics.csv`` and its wandb run, as for a single run.

The population's Trainer logs nothing itself; at every epoch end :class:`MemberLogs` takes each
member's values — its training means, its penalties, its validation metrics, the learning rate,
its regularizers' ``log_values`` — and writes them to that member's loggers as one row at the
epoch's last step, with the same columns a single run's ``metrics.csv`` has. A member that has
stopped (early stopping, divergence) writes no more rows.

The writing happens on a background thread: a 240-member UCI population over 400 epochs makes
~100,000 logger calls and starts 240 wandb runs (~80 ms each), which would otherwise stop
training at every epoch end. wandb's calls cost ~1 ms of CPU each wherever they run, so a
member's wandb run gets its newest row every ``WANDB_EVERY_S`` seconds (and the last one at the
end), while its ``metrics.csv`` gets every epoch. The rows are computed on the training thread (they
read the members' current weights) and queued; :meth:`flush` waits for the writer, and runs
before the members' results are written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.loggers.wandb import WandbLogger
from bench.regularizers.base import Regularizer

log = logging.getLogger("bench")
# A member's wandb run gets its newest epoch row at most this often (and its last one at the
# end); its metrics.csv gets every epoch. One wandb.log costs ~1 ms of this process's CPU: every
# epoch of 240 members was 24 s per 100 epochs, 3.5x the training itself.
WANDB_EVERY_S = 10.0
Rows = list[tuple[int, dict[str, Any], int]]  # (member, row, step)


class MemberLogs:
    """``loggers[k]``: member k's loggers (built from its own config: its run directory)."""

    def __init__(
        self,
        loggers: list[list],
        run_dirs: list[Path],
        regularizers: list[list[Regularizer]],
        networks: list[nn.Module],
    ) -> None:
        self.loggers = loggers
        self.run_dirs = run_dirs
        self.regularizers = regularizers  # each member's own, for their log_values
        self.networks = networks  # views of the members' current weights (stack.bind)
        self._queue: queue.Queue[Rows | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self.failure: BaseException | None = None

    def start(self) -> None:
        """Start the writer: it opens the members' wandb runs, then writes the queued rows."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, daemon=True, name="member-logs")
            self._writer.start()

    def _write(self) -> None:
        from bench.loggers.wandb import start_all

        try:
            start_all(
                [lg for member in self.loggers for lg in member if isinstance(lg, WandbLogger)]
            )
            pending: dict[int, tuple[dict[str, Any], int]] = {}  # member → newest wandb row
            last: dict[int, float] = {}
            done = False
            while not done:
                try:
                    rows = self._queue.get(timeout=1.0)
                except queue.Empty:
                    rows = []
                done = rows is None
                for k, row, step in rows or []:
                    for lg in self.loggers[k]:
                        if isinstance(lg, WandbLogger):
                            pending[k] = (row, step)
                        else:
                            lg.log_metrics(row, step)
                now = time.monotonic()
                for k in list(pending):
                    if done or now - last.get(k, -WANDB_EVERY_S) >= WANDB_EVERY_S:
                        row, step = pending.pop(k)
                        last[k] = now
                        for lg in self.loggers[k]:
                            if isinstance(lg, WandbLogger):
                                lg.log_metrics(row, step)
        except BaseException as exc:  # re-raised on the training thread by flush()
            self.failure = exc
            while self._queue.get() is not None:  # drain, so that flush() returns
                pass

    def flush(self) -> None:
        """Wait until every queued row is written (and the writer has stopped)."""
        if self._writer is None:
            return
        self._queue.put(None)
        self._writer.join()
        self._writer = None
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def epoch(
        self,
        epoch: int,
        step: int,
        values: dict[str, torch.Tensor],
        active: torch.Tensor,
        lr: float,
    ) -> None:
        """Queue one epoch's row for every member that trained in it."""
        columns = {key: value.tolist() for key, value in values.items()}  # one conversion each
        rows: Rows = []
        for k, trained in enumerate(active.tolist()):
            if not trained:
                continue
            row = {key: column[k] for key, column in columns.items()}
            row = {key: v for key, v in row.items() if v == v}  # NaN: not this member's
            for reg in self.regularizers[k]:
                with torch.no_grad():
                    extra = reg.log_values(self.networks[k])
                row.update({f"{reg.name}/{key}": value for key, value in extra.items()})
            rows.append((k, {**row, "fit/lr": lr, "epoch": epoch}, step - 1))
        self._queue.put(rows)

    def resume_at(self, step: int) -> None:
        """Rows written after the checkpoint's ``step`` (the population resumes there) are
        written again; called from the module's ``on_load_checkpoint``, before training."""
        for member in self.loggers:
            for lg in member:
                if hasattr(lg, "resume_at"):
                    lg.resume_at(step)

    def close(self, exc: BaseException) -> None:
        """Training stopped with ``exc``: write what is queued, mark the wandb runs."""
        from bench.finish import close_loggers

        try:
            self.flush()
        except Exception as failure:  # the run already failed with exc; say so, close anyway
            log.warning("member logs: %s while closing after %s", failure, type(exc).__name__)
        for member in self.loggers:
            for lg in member:
                lg.save()
            close_loggers(member, exc)
