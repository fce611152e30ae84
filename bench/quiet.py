"""Keep the known noise of imported libraries out of a run's log, and nothing else.

A job log on a cluster is read by a person looking for what went wrong; Lightning's tips and
device banners, a deprecation inside Lightning itself and wandb's banner bury the lines that
matter. Each filter below names one exact message and the module that emits it, so a warning
from user code, from this project or any other message of the same library still shows (no
blanket ``filterwarnings("ignore")``, no raised log levels).
"""

from __future__ import annotations

import logging
import os
import warnings

from lightning.fabric.utilities.warnings import PossibleUserWarning

# (message regex, category, emitting module): `warnings` matches both regexes from their start;
# the module's ends with \Z, so it names that one module, not its siblings.
WARNINGS: list[tuple[str, type[Warning], str]] = [
    # torch deprecated LeafSpec; Lightning's own _pytree.py still instantiates it. Only a
    # Lightning upgrade can act on it, so it is not the user's to see. Torch's message names the
    # class, and the module pins it to Lightning's call site: user code using LeafSpec still warns.
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree\Z",
    ),
    # Step-level logs are thinned by log_every_n_steps; every metric this project logs is an
    # epoch aggregate (on_step=False), which this warning does not concern.
    (
        r"The number of training batches \(\d+\) is smaller than the logging interval",
        PossibleUserWarning,
        r"lightning\.pytorch\.loops\.fit_loop\Z",
    ),
    # On a machine with Slurm's tools (a login node, CI), every local run was told to prepend
    # `srun`; regbench submits to Slurm through submitit (hydra/launcher=slurm), whose jobs do
    # run under srun, so the hint only ever misdirects.
    (
        r"The `srun` command is available on your system but is not used",
        PossibleUserWarning,
        r"lightning\.fabric\.plugins\.environments\.slurm\Z",
    ),
    # A mid-epoch checkpoint of ours carries the data order and position, and the datamodule
    # skips the batches already trained on (bench/resume/callback.py); Lightning cannot see
    # that through its own `state_dict` protocol, which it only consults mid-epoch.
    (
        r"You're resuming from a checkpoint that ended before the epoch ended",
        PossibleUserWarning,
        r"lightning\.pytorch\.loops\.training_epoch_loop\Z",
    ),
]

# Lightning's info lines (logger "lightning.pytorch.utilities.rank_zero") dropped by prefix. The
# device banner says nothing a results record does not; a GPU left unused still warns ("GPU
# available but not used"), which is a warning, not one of these info lines.
INFO_PREFIXES: tuple[str, ...] = (
    "💡 Tip: ",  # advertises litlogger
    "GPU available: ",
    "TPU available: ",
)
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class DropInfoLines(logging.Filter):
    """Drops INFO records whose message starts with one of ``prefixes``; keeps every other one."""

    def __init__(self, prefixes: tuple[str, ...] = INFO_PREFIXES) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        return not record.getMessage().startswith(self.prefixes)


def quiet_libraries() -> None:
    """Install the filters above once per process (idempotent), and keep wandb's banner out
    unless the user set ``WANDB_SILENT`` themselves."""
    os.environ.setdefault("WANDB_SILENT", "true")
    for message, category, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropInfoLines) for f in logger.filters):
            logger.addFilter(DropInfoLines())
