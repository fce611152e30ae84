"""Fault injection for the resume tests: a real signal sent to the running process from inside
training, at an exact (epoch, batch), through a Lightning callback; a writer process killed
(SIGKILL) in the middle of an atomic write; a disk that fills up during a checkpoint save."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from bench.regularizers.base import Regularizer


class SignalAt(L.Callback):
    """Send ``signum`` to this process when batch ``batch`` of epoch ``epoch`` (0-based) is about
    to train, or — ``batch=None`` — when that epoch's validation starts. Once only.

    ``fit``: only in the fit-th ``trainer.fit`` of the process since ``SignalAt.fits`` was
    reset (0: the run's own network, k: ensemble member k).
    """

    fits = 0  # fits started in this process; a test resets it

    def __init__(
        self, epoch: int, batch: int | None, signum: int = signal.SIGTERM, fit: int | None = None
    ) -> None:
        self.epoch, self.batch, self.signum, self.fit = epoch, batch, int(signum), fit
        self.sent = False
        self.armed = fit is None

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.fit is not None:
            self.armed = SignalAt.fits == self.fit
        SignalAt.fits += 1

    def _send(self) -> None:
        if self.armed and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self._send()

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and self.batch is None:
            self._send()


# --------------------------------------------------------------------------- kills mid-write
# What a writer process runs first. bench.atomic writes every byte to a temporary file, then
# fsyncs it, then renames it into place: the n-th fsync is the moment between "written" and
# "in place", where the writer stalls until the test kills it.
STALL_AT_FSYNC = '''
import os, stat, sys, time


def stall_at_fsync(n, half=False):
    """The n-th os.fsync of a file from now on prints the file it syncs (cut to half its bytes
    when ``half``, as a write the kill interrupted would leave it) and waits to be killed;
    fsyncs of directories (the rename made durable) are not counted."""
    real, calls = os.fsync, [0]

    def fsync(fd):
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return real(fd)
        calls[0] += 1
        if calls[0] == n:
            if half:
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
            print("STALLED", os.readlink(f"/proc/self/fd/{fd}"), flush=True)
            time.sleep(120)
        real(fd)

    os.fsync = fsync
'''
STALLED = "STALLED "
REPO = Path(__file__).resolve().parents[1]


def kill_mid_write(
    script: str, *args: str, during: Callable[[Path], None] | None = None, timeout: float = 120
) -> Path:
    """Run ``script`` (:data:`STALL_AT_FSYNC` plus code that calls ``stall_at_fsync``) in a fresh
    interpreter; when it stalls, call ``during`` with the temporary file (a reader looking on),
    then SIGKILL the writer — no handler, no ``finally`` runs. Returns the temporary file."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child cannot block
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        watchdog = threading.Timer(timeout, proc.kill)  # a writer that never stalls
        watchdog.start()
        try:
            stalled = next((line for line in proc.stdout if line.startswith(STALLED)), None)
            if stalled is not None:
                tmp = Path(stalled.removeprefix(STALLED).strip())
                if during is not None:
                    during(tmp)
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            watchdog.cancel()
            proc.kill()  # a no-op once it has exited
            proc.stdout.close()
        err.seek(0)
        if stalled is None or proc.returncode != -signal.SIGKILL:
            raise AssertionError(
                f"the writer was not killed mid-write (exit {proc.returncode}):\n"
                + err.read().decode(errors="replace")[-3000:]
            )
    return tmp


# --------------------------------------------------------------------------- a full disk
def temp_target(tmp: Path) -> str:
    """The file a ``bench.atomic`` temporary file becomes: ``.NAME.<random>.tmp`` → NAME."""
    return tmp.name.removeprefix(".").removesuffix(".tmp").rsplit(".", 1)[0]


class FullDisk:
    """A stand-in for ``os.fsync``: from the ``from_save``-th checkpoint written to
    ``directory`` on, the checkpoint's fsync fails with ENOSPC, as on a full disk (its small
    checksum, written first, still fits). Other files sync as usual.

    ``written`` maps each checkpoint that got through to the SHA-256 of the bytes it was
    written with — what must still be there afterwards.
    """

    def __init__(self, directory: Path, from_save: int) -> None:
        self.directory = Path(directory).resolve()
        self.from_save = from_save
        self.saves = 0
        self.written: dict[str, str] = {}
        self._fsync = os.fsync

    def __call__(self, fd: int) -> None:
        tmp = Path(os.readlink(f"/proc/self/fd/{fd}"))
        target = temp_target(tmp)
        if tmp.parent == self.directory and target.endswith(".ckpt"):
            self.saves += 1
            if self.saves >= self.from_save:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
            self.written[target] = hashlib.sha256(tmp.read_bytes()).hexdigest()
        self._fsync(fd)


class Pace(L.Callback):
    """Sleep ``seconds`` after every training batch: wall time that does not depend on how fast
    (or how shared) the CPU is, and costs it nothing. It changes no result."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


class NanAt(Regularizer):
    """A regularizer whose penalty is NaN at training step ``step`` (0-based): a loss that
    diverges at a known step (``+regularizer.nan._target_=tests.faults.NanAt``)."""

    name = "nan"

    def __init__(self, step: int = 4) -> None:
        self.step = step
        self.calls = 0

    def penalty(self, model):
        self.calls += 1
        return torch.tensor(float("nan")) if self.calls == self.step + 1 else None
