"""A Hydra callback that ends every ``--multirun`` with its answer: both leaderboards.

Configured under ``hydra.callbacks.leaderboard`` in ``conf/train.yaml``; Hydra calls
``on_multirun_end`` in the launching process once every job has returned (also with the Slurm
launcher), so the boards cover the whole sweep. It is ``bench-leaderboard <sweep dir>``: the
boards are printed and written beside the jobs, with ``report.html``.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

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
        if not self.enabled:
            return
        from bench.leaderboard.cli import main  # imported here: single runs never pay for it

        args = [str(config.hydra.sweep.dir), "--select", self.select]
        if self.baseline is not None:  # None: `none` where the sweep has it, else no Δ columns
            args += ["--baseline", self.baseline]
        code = main([*args, "--wandb"] if self.wandb else args)
        if code != 0:  # the sweep's own results stand; say why there is no board
            log.warning("the leaderboard could not be built (exit %d); see the line above", code)
