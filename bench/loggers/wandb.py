"""Lightning's ``WandbLogger``, made fit for runs that stop, restart and share a process.

Four things Lightning's logger does not do:

- **One wandb run per run directory.** Without an ``id``, every start makes a new wandb run, so a
  requeued or resumed job shows up as a second run (Lightning #13524). Here the id is made on
  the first start, kept in ``<save_dir>/wandb-id`` and reused by every later start in that
  directory, with ``resume="allow"``. A new run directory gets a new id.
- **Failures marked.** ``finalize("failed")`` (Lightning, when fit raises) and
  ``close("failed" | "interrupted")`` finish the run with a non-zero exit code and
  ``bench/status`` in its summary; a completed run is finished by :meth:`finish_run`, after its
  final metrics, never by ``finalize("success")``.
- **Several runs open at once.** A population (``bench.population``) trains many jobs in one
  process, each with its own run: :func:`start_all` starts them together (``reinit="create_new"``
  keeps them apart), where Lightning's start would hand every logger the run already open.
- **wandb is never a reason to fail.** wandb runs a service process; once it has died, calls
  raise (:func:`service_lost_errors`). The first failure logs one warning naming it and turns
  the logger off for the rest of the run — training, ``results.json`` and the leaderboard do
  not depend on wandb.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from bench.loggers.wandb_support import (
    WandbOff,
    define_x_axis,
    directory_run_id,
    forget_dead_service,
    service_lost_errors,
)
from bench.record import flatten
from bench.resume.signals import RunInterrupted

log = logging.getLogger("bench")

STATUS_KEY = "bench/status"
# A record's status → the run's exit code on the dashboard (non-zero: shown as failed).
EXIT_CODES = {"completed": 0, "diverged": 0, "failed": 1, "interrupted": 1}

F = TypeVar("F", bound=Callable[..., None])


def _guarded(action: str) -> Callable[[F], F]:
    """Method decorator: skip the call once wandb is off; a failure turns it off."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def guarded(self: WandbLogger, *args: Any, **kwargs: Any) -> None:
            if self.failure is None:
                with self._guard(action):
                    method(self, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return wrap


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` with a run id per run directory, failed and interrupted runs
    marked, and wandb failures turned into one warning (arguments: Lightning's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # wandb 0.31 warns about any value, even
            del self._wandb_init["anonymous"]  # Lightning's default None: once a run, for nothing
        self.failure: str | None = None  # why wandb was turned off; None while it works
        self._closed = False

    # ------------------------------------------------------------------ the run
    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The wandb run, started on first use with this directory's id; once wandb has
        failed, a stand-in that ignores every call."""
        if self.failure is None and self._experiment is None:
            with self._guard("starting its run"):
                self._start()
        return self._experiment if self.failure is None else WandbOff()

    def _start(self) -> None:
        import wandb
        from wandb.sdk.wandb_setup import singleton

        self._set_id()
        self._finish_stale_run()
        if wandb.run is None and singleton().most_recent_active_run is not None:
            # Concurrent runs are open (a population's): wandb.init would hand back one of them.
            self._start_concurrent()
        else:  # Lightning's start: wandb.init(id, resume="allow", ...), x-axis
            if self._offline:  # as a keyword too: once a population's runs existed in this
                self._wandb_init.setdefault("mode", "offline")  # process, WANDB_MODE is ignored
            _ = super().experiment

    def _set_id(self) -> None:
        if self._id is None:  # neither id nor version given: the run directory's own
            self._id = self._wandb_init["id"] = directory_run_id(Path(self._save_dir or "."))

    @rank_zero_only
    def start_concurrent(self) -> None:
        """Start this logger's run as one of several open at once in this process (the members
        of a population): its own run, where Lightning's start reuses the run already open, and
        no other run finished. Safe in any thread; a failure is one warning, then wandb is off."""
        if self.failure is None and self._experiment is None:
            with self._guard("starting its run"):
                self._set_id()
                self._start_concurrent()

    def _start_concurrent(self) -> None:
        import wandb

        # reinit="create_new": a new run that leaves the open ones (and wandb.run) alone.
        # Offline as a keyword, not Lightning's WANDB_MODE variable: other threads read os.environ.
        mode = {"mode": "offline"} if self._offline else {}
        # What would be the same M times over, once per member of one process, is left out:
        # console capture (every run would record every member's lines: quadratic), system
        # metrics (one process's CPU/GPU) and requirements.txt (its package list, ~45 ms a run).
        settings = wandb.Settings(console="off", x_disable_stats=True, x_save_requirements=False)
        quiet = {"settings": settings}
        run = wandb.init(**{**mode, **quiet, **self._wandb_init, "reinit": "create_new"})
        define_x_axis(run, bool(self._wandb_init.get("sync_tensorboard")))
        self._experiment = run

    def _finish_stale_run(self) -> None:
        """Finish, as failed, a run an earlier job in this process left open (it failed after
        training, where Lightning does not finalize loggers): Lightning would log into it."""
        import wandb

        stale = wandb.run
        if stale is None or stale.id == self._id:
            return
        log.warning(
            "wandb run %s of an earlier job in this process was still open; finished it as failed",
            stale.id,
        )
        stale.summary.update({STATUS_KEY: "failed"})
        stale.finish(exit_code=EXIT_CODES["failed"])

    def _live_run(self) -> Any | None:
        """The wandb run if wandb works (starting it if needed), else None."""
        run = self.experiment
        return run if self.failure is None else None

    # ------------------------------------------------------------------ failures
    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # wandb must not fail the run: one warning, then off
            self._turn_off(action, exc)

    def _turn_off(self, action: str, exc: Exception) -> None:
        self.failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        lost = isinstance(exc, service_lost_errors())
        log.warning(
            "wandb failed while %s (%s%s); wandb logging is off for the rest of this run, "
            "which goes on (results.json and the leaderboard do not need wandb)",
            action,
            self.failure,
            ": the connection to its service process is lost" if lost else "",
        )
        if lost:
            forget_dead_service()

    # ------------------------------------------------------------------ logging
    @rank_zero_only
    @_guarded("logging metrics")
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)

    @rank_zero_only
    @_guarded("logging hyperparameters")
    def log_hyperparams(self, params: Any) -> None:
        super().log_hyperparams(params)

    @rank_zero_only
    @_guarded("logging an image")
    def log_image(
        self, key: str, images: list[Any], step: int | None = None, **kwargs: Any
    ) -> None:
        super().log_image(key, images, step, **kwargs)

    @rank_zero_only
    @_guarded("logging a table")
    def log_table(self, *args: Any, **kwargs: Any) -> None:
        super().log_table(*args, **kwargs)

    @rank_zero_only
    @_guarded("logging text")
    def log_text(self, *args: Any, **kwargs: Any) -> None:
        super().log_text(*args, **kwargs)

    @_guarded("logging checkpoints")
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        super().after_save_checkpoint(checkpoint_callback)

    @rank_zero_only
    @_guarded("updating its summary")
    def update_summary(self, values: Mapping[str, Any]) -> None:
        """``run.summary.update``: the values a dashboard shows for the run as a whole."""
        if (run := self._live_run()) is not None:
            run.summary.update(dict(values))

    @rank_zero_only
    @_guarded("updating its config")
    def update_config(self, values: Mapping[str, Any]) -> None:
        """``run.config.update`` (changed values allowed: a resumed run logs its config again)."""
        if (run := self._live_run()) is not None:
            run.config.update(dict(values), allow_val_change=True)

    # ------------------------------------------------------------------ the end
    @rank_zero_only
    def finish_run(self, record: Mapping[str, Any], plots: Mapping[str, Path]) -> None:
        """The end of a finished job: the record's metrics as the summary, its config (flat),
        the plots, then the run finished with the record's status."""
        self.update_config(flatten(record["config"]))
        self.update_summary(record["metrics"])
        for name, path in plots.items():
            self.log_image(key=f"plots/{name}", images=[str(path)])
        self.close(record["status"])

    @rank_zero_only
    def close(self, status: str, exit_code: int | None = None) -> None:
        """Finish the wandb run with ``bench/status`` = ``status`` in its summary; ``failed``
        and ``interrupted`` with a non-zero exit code (``exit_code``, default 1). Once only;
        nothing to do when no run was started or wandb is off."""
        if status not in EXIT_CODES:
            raise ValueError(f"status must be one of {sorted(EXIT_CODES)}, got {status!r}")
        if self._closed or self.failure is not None or self._experiment is None:
            return
        self._closed = True
        code = EXIT_CODES[status]
        if code and exit_code:
            code = exit_code
        with self._guard(f"finishing its run as {status}"):
            self._experiment.summary.update({STATUS_KEY: status})
            self._experiment.finish(exit_code=code)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning's end of fit. ``success``: the run stays open (bench logs the final
        metrics after fit, then calls :meth:`finish_run`); ``failed``: finished as failed, or
        as interrupted when what is being raised is a stop by a signal or Ctrl-C."""
        if status == "failed":
            raising = sys.exc_info()[1]  # Lightning calls this while handling fit's exception
            if isinstance(raising, RunInterrupted):
                self.close("interrupted", raising.exit_code)
            elif isinstance(raising, KeyboardInterrupt):
                self.close("interrupted")
            else:
                self.close("failed")
        elif status == "interrupted":
            self.close("interrupted")
        elif self.failure is None:
            with self._guard("logging checkpoints"):
                super().finalize(status)


def start_all(loggers: list, threads: int = 4) -> None:
    """Start the run of every :class:`WandbLogger` among ``loggers``, ``threads`` at a time, and
    return when all have started; a start that fails is one warning and turns off only its own
    logger. Meant to run in a background thread while training begins: the threads overlap
    each start's waits on wandb's service (and, online, its server)."""
    runs = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not runs:
        return
    with ThreadPoolExecutor(min(threads, len(runs)), thread_name_prefix="wandb-start") as pool:
        for started in [pool.submit(lg.start_concurrent) for lg in runs]:
            started.result()  # start_concurrent turns wandb's failures into warnings
