"""Signals that stop a run: note them now, act at the next safe point.

Slurm sends SIGUSR1/SIGUSR2 (``--signal``) before a time limit or a preemption and SIGTERM
before a kill; a person presses Ctrl-C (SIGINT). Python's default reaction — die, or raise
``KeyboardInterrupt`` wherever the interpreter happens to be — can leave half a checkpoint and
no record. ``SignalGuard`` replaces the handlers for the duration of a run with one that only
notes the signal; ``bench.resume.callback.ResumeCheckpoint`` checks the note after each
training batch, saves a resumable checkpoint and raises :class:`RunInterrupted`.

A second Ctrl-C while the first is being handled raises ``KeyboardInterrupt`` at once: a
person who presses it twice wants out.

Requeueing is submitit's job (it counts ``max_num_timeout`` and holds the job's pickle):
:meth:`SignalGuard.hand_over` calls the handler that was installed before the guard —
submitit's ``checkpoint_and_try_requeue`` for SIGUSR2 inside a submitit job — after the run
has saved and recorded itself. Lightning's own Slurm auto-requeue stays off
(``bench.cluster.cluster_plugins``), so exactly one party requeues.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("bench")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class RunInterrupted(Exception):
    """A run stopped by a signal after saving a checkpoint to resume from.

    Not a failure: the record says ``interrupted`` and the same command resumes the run.
    """

    def __init__(
        self, signum: int, epoch: int | None, step: int | None, checkpoint: str | None
    ) -> None:
        self.signum, self.epoch, self.step, self.checkpoint = signum, epoch, step, checkpoint
        self.guard: SignalGuard | None = None  # set by bench.train.run for the hand-over
        name = signal.Signals(signum).name
        if epoch is None:  # the signal came after training: the run completed first
            super().__init__(f"{name} received; the run completed first")
            return
        saved = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint yet"
        super().__init__(f"stopped by {name} at epoch {epoch}, step {step}; {saved}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by that signal."""
        return 128 + self.signum


class SignalGuard:
    """Context manager: while inside, the stop signals are noted instead of acted upon."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, Any] = {}  # the handlers replaced, restored on exit
        self._replaced: dict[int, Any] = {}  # kept after exit for hand_over

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():  # signal.signal requires it
            for sig in self.signals:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._replaced.update(self._previous)
        self._previous = {}

    def reassert(self) -> None:
        """Take the signals back after Lightning installed its own SIGTERM handler at fit start
        (it would raise ``SIGTERMException`` mid-validation, before a checkpoint could be taken);
        Lightning puts ours back when fit ends."""
        if self._previous and threading.current_thread() is threading.main_thread():
            for sig in self._previous:
                signal.signal(sig, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        if self.received is None:
            self.received = signum
            log.warning(
                "received %s: the run stops at the next safe point and saves a checkpoint",
                signal.Signals(signum).name,
            )

    def hand_over(self) -> None:
        """Call the handler the guard replaced for the received signal, if it was a program's
        own (submitit's requeue); Python's defaults are left alone — the caller exits."""
        if self.received is None:
            return
        self.__exit__()
        previous = self._replaced.get(self.received)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self.received, None)


_ACTIVE: list[SignalGuard] = []


def active_guard() -> SignalGuard | None:
    """The guard of the run in progress in this process (None outside ``bench.train.run``)."""
    return _ACTIVE[-1] if _ACTIVE else None


class guarded:
    """``with guarded() as guard:`` — a :class:`SignalGuard` that callbacks can find."""

    def __enter__(self) -> SignalGuard:
        self.guard = SignalGuard().__enter__()
        _ACTIVE.append(self.guard)
        return self.guard

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.remove(self.guard)
        self.guard.__exit__(*exc)
