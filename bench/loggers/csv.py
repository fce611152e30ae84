"""Lightning's ``CSVLogger``, continued across restarts instead of started over.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts (it expects a new
``version_N`` directory per start); a resumed run would lose its history. Here the writer
keeps the file, continues its header, and — told where the resumed run picks up
(:meth:`CSVLogger.resume_at`) — drops the rows the interrupted start wrote after its checkpoint,
which the resumed run writes again. One ``metrics.csv`` per run, one row set per step.
"""

from __future__ import annotations

import csv
import logging
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from bench.atomic import write_text_atomic

log = logging.getLogger("bench")


class ContinuingWriter(ExperimentWriter):
    """An ``ExperimentWriter`` that appends to the ``metrics.csv`` of an earlier start."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        self.metrics_keys = sorted(header)  # new keys are merged into these on save

    def drop_rows_from(self, step: int) -> int:
        """Remove rows logged at ``step`` or later; returns how many went."""
        if not self._fs.isfile(self.metrics_file_path):
            return 0
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
        kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < step]
        if len(kept) < len(rows):
            write_text_atomic(self.metrics_file_path, _csv_text(fields, kept))
        return len(rows) - len(kept)


def _csv_text(fields: list[str], rows: list[dict[str, Any]]) -> str:
    lines: list[str] = []

    class _Lines:
        def write(self, text: str) -> None:
            lines.append(text)

    writer = csv.DictWriter(_Lines(), fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return "".join(lines)


class CSVLogger(LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` with :class:`ContinuingWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ContinuingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ContinuingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def resume_at(self, step: int) -> None:
        """The run continues from global step ``step``: rows from there on are written again.

        Epoch rows carry the epoch's last step, so an epoch-end checkpoint at step ``step``
        keeps the rows of the epoch it ended.
        """
        self.experiment.save()  # anything still buffered belongs before the cut
        dropped = self.experiment.drop_rows_from(step)
        if dropped:
            log.info("metrics.csv: %d rows after the checkpoint dropped; written again", dropped)
