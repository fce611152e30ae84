"""wandb's pieces that are not the logger: run ids kept per directory, a dead service process,
the stand-in for a logger that is off, the step axis (``bench.loggers.wandb`` uses them)."""

from __future__ import annotations

import logging
import re
import secrets
import string
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import DummyExperiment

from bench.atomic import write_text_atomic

log = logging.getLogger("bench")

ID_FILE = "wandb-id"
# What wandb accepts as a run id, and more strictly what we write: a damaged file is not reused.
_VALID_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def directory_run_id(directory: Path) -> str:
    """The wandb run id of the run that lives in ``directory``: read from its ``wandb-id``
    file, or made on the first start and written there (atomically) for every later one."""
    path = Path(directory) / ID_FILE
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if _VALID_ID.fullmatch(text):
            return text
        log.warning("%s holds no wandb run id (%r); this run gets a new one", path, text[:40])
    # wandb 0.31 has no public id generator; this makes ids like its own (8 base-36 digits).
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    write_text_atomic(path, run_id + "\n")
    return run_id


def service_lost_errors() -> tuple[type[Exception], ...]:
    """What wandb 0.31 raises once its service process has died: ``ConnectionResetError``
    ("Connection lost") from a call that writes to it, ``HandleAbandonedError`` from one that
    was waiting for its answer (``finish``), ``MailboxClosedError`` after that."""
    from wandb.sdk.mailbox import HandleAbandonedError, MailboxClosedError

    return (ConnectionError, HandleAbandonedError, MailboxClosedError)


def forget_dead_service() -> None:
    """Drop wandb's process-wide connection to a service process that has died.

    Left alone, wandb's atexit hook prints a traceback when the process exits, and every later
    ``wandb.init`` in this process (the next job of a sweep) fails on the dead connection.
    ``wandb.teardown()`` forgets it, so that a later run starts a new service; on the way it
    fails on the dead socket just as the call already reported did. The dead run stays wandb's
    current run (its ``finish`` cannot reach the service), so it is unset as ``Run.finish``
    itself does at its end.
    """
    import wandb
    from wandb.sdk.lib import module

    try:
        wandb.teardown()
    except service_lost_errors() as exc:  # the failure the caller reported, met again
        log.debug("wandb.teardown() on the dead service connection: %s", exc)
    if wandb.run is not None:
        module.unset_globals()


class WandbOff(DummyExperiment):
    """What ``experiment`` is once wandb is off: every attribute, call and item is ignored, at
    any depth (``run.summary.update(...)`` too, where Lightning's stand-in stops at one)."""

    def __getattr__(self, _: str) -> WandbOff:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


def define_x_axis(run: Any, sync_tensorboard: bool) -> None:
    """The step every metric is plotted against, as Lightning's start defines it (it offers no
    function for it: these lines are its own)."""
    if sync_tensorboard:
        run.define_metric("*", step_metric="global_step")
    else:
        run.define_metric("trainer/global_step")
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
