"""A Hydra callback that ends every ``--multirun`` with its answer: both leaderboards.

Configured under ``hydra.callbacks.leaderboard`` in ``conf/train.yaml``; Hydra calls
``on_multirun_end`` in the launching process once every job has returned (also with the Slurm
launcher), so the boards cover the whole sweep. It is ``bench-leaderboard <sweep dir>``: the
boards are printed and written beside the jobs, with ``report.html``. A sweep with failed jobs
then exits with status 1, saying which (``exit_if_jobs_failed``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from bench.record import RESULTS_FILE, UNFINISHED, read_record

log = logging.getLogger("bench")


class LeaderboardCallback(Callback):
    """``enabled: false`` turns it off; ``select``/``baseline``/``wandb`` as in the CLI."""

    def __init__(
        self,
        enabled: bool = True,
        select: str = "val/loss",
        baseline: str | None = None,
        wandb: bool = False,
    ) -> None:
        self.enabled, self.select, self.baseline, self.wandb = enabled, select, baseline, wandb

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.launcher.dry_run", default=False):
            return  # the population launcher's dry run ran nothing: no board, no failed jobs
        sweep = Path(str(config.hydra.sweep.dir))
        if self.enabled:
            from bench.leaderboard.cli import main  # imported here: single runs never pay for it

            args = [str(sweep), "--select", self.select]
            if self.baseline is not None:  # None: `none` where the sweep has it, else no Δ
                args += ["--baseline", self.baseline]
            code = main([*args, "--wandb"] if self.wandb else args)
            if code != 0:  # the sweep's own results stand; say why there is no board
                log.warning("the leaderboard could not be built (exit %d); see above", code)
        exit_if_jobs_failed(sweep)


def exit_if_jobs_failed(sweep: Path) -> None:
    """A sweep whose jobs failed ends non-zero, after every other job ran and was reported.

    Jobs of a multirun record their failure and return (``bench.train.main``), so that one
    bad point neither stops the sweep nor, through Hydra's sweeper re-raising it, skips this
    callback; here the failures are counted from the records and the process exits with 1.
    """
    records = sorted(sweep.rglob(RESULTS_FILE))
    status = {p: (read_record(p)[0] or {}).get("status") for p in records}
    failed = [p for p in records if status[p] in UNFINISHED]
    if failed:
        print(f"{len(failed)} of {len(records)} jobs failed or were interrupted:", file=sys.stderr)
        for path in failed:
            print(f"  {path} ({status[path]})", file=sys.stderr)
        raise SystemExit(1)
