"""What a run directory holds decides what starting the run does, and what a stop leaves there.

- ``results.json`` completed or diverged: the start skips the run and reports the record;
- ``results.json`` interrupted, or none, and checkpoints: it resumes from the newest valid one;
- ``results.json`` failed: kept as ``results.failed.json``, checkpoints cleared, a fresh start
  (unless it had stopped cleanly at a checkpoint and only ran out of requeues: then it resumes);
- nothing: a fresh start.

A stop by a signal writes an ``interrupted`` record (epoch, step, the checkpoint to resume
from); an exception a ``failed`` one, beside a completed record and never over it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from bench.build import config_record, target_name
from bench.record import failed_record, interrupted_record
from bench.results import RESULTS_FILE, read_results, scrub, versions, write_json_atomic
from bench.resume import checkpoints
from bench.resume.signals import RunInterrupted

log = logging.getLogger("bench")

FAILED_FILE = "results.failed.json"
DONE = ("completed", "diverged")


def prepare(run_dir: Path) -> dict[str, Any] | None:
    """The finished record to report instead of running (None: run, resuming if possible)."""
    path = run_dir / RESULTS_FILE
    for stray in run_dir.glob(".*.tmp"):  # an atomic write that was killed (bench.atomic)
        stray.unlink(missing_ok=True)
    record = read_results(path)
    status = (record or {}).get("status")
    if status in DONE:
        return record
    if status == "failed":
        os.replace(path, run_dir / FAILED_FILE)
        if (record or {}).get("interrupted"):  # stopped cleanly; only the requeue was refused
            log.info("resuming a run that ran out of requeues; record kept as %s", FAILED_FILE)
            return None
        for directory in checkpoint_dirs(run_dir):
            checkpoints.clear(directory)
        log.info("re-running a failed run; its record is kept as %s", FAILED_FILE)
    return None


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """The run's own checkpoint directory and those of its ensemble members."""
    return [run_dir / "checkpoints", *sorted(run_dir.glob("members/*/checkpoints"))]


def _identity(cfg: DictConfig) -> dict[str, Any]:
    return {
        "dataset": target_name(cfg.dataset),
        "model": target_name(cfg.model),
        "regularizers": list((cfg.get("regularizer") or {}).keys()),
        "seed": cfg.get("seed"),
        "config": config_record(cfg),
        "versions": versions(),
    }


def record_failure(cfg: DictConfig, run_dir: Path, exc: BaseException, started: float) -> Path:
    """Write a ``failed`` record (beside a completed one, never over it) and say where."""
    path = run_dir / RESULTS_FILE
    if (read_results(path) or {}).get("status") in DONE:
        path = run_dir / FAILED_FILE
    record = failed_record(
        error=scrub(f"{type(exc).__name__}: {exc}"),
        wall_time_s=round(time.time() - started, 3),
        **_identity(cfg),
    )
    write_json_atomic(path, record)
    log.error("run failed; recorded in %s", path)
    return path


def record_interrupted(cfg: DictConfig, run_dir: Path, exc: RunInterrupted, started: float) -> Path:
    """Write an ``interrupted`` record naming the checkpoint the next start resumes from."""
    path = run_dir / RESULTS_FILE
    checkpoint = exc.checkpoint
    if checkpoint is not None:
        checkpoint = os.path.relpath(checkpoint, run_dir)
    record = interrupted_record(
        signal=signal.Signals(exc.signum).name,
        epoch=exc.epoch,
        step=exc.step,
        checkpoint=checkpoint,
        wall_time_s=round(time.time() - started, 3),
        **_identity(cfg),
    )
    write_json_atomic(path, record)
    log.warning("%s; recorded in %s — run the same command again to resume", exc, path)
    return path
