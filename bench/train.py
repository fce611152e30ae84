"""Entry point: config → datamodule + model + regularizers → LightningModule → Trainer → record.

``bench-train`` (or ``python -m bench.train``) composes ``conf/train.yaml`` with Hydra; ``run``
does the work and is what tests call in-process.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from bench.build import build, build_network, build_trainer
from bench.data.uci_protocol import register_resolvers as register_uci_resolvers
from bench.errors import ConfigError
from bench.eval_plan import EvalPlan, plan_evaluation
from bench.finish import close_loggers, evaluate_and_record
from bench.members import fit_members
from bench.module import BenchModule
from bench.quiet import quiet_libraries
from bench.results import (
    RESULTS_FILE,
    read_results,
    write_json_atomic,
)
from bench.resume.checkpoints import CheckpointError
from bench.resume.identity import register_resolvers
from bench.resume.run_dir import prepare, record_failure, record_interrupted
from bench.resume.signals import RunInterrupted, guarded
from bench.threads import configure_threads
from bench.validation import validate_config

log = logging.getLogger("bench")
# conf/ sits beside the package in the repository (editable install), so bench-train finds it
# from any working directory.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register_resolvers()  # ${bench_run_id:} and ${bench_sweep_id:} name the output directories
register_uci_resolvers()  # ${uci:tau_values,1}: the published UCI protocol's per-set values


def assemble(
    cfg: DictConfig,
) -> tuple[L.LightningDataModule, BenchModule, L.Trainer, EvalPlan]:
    """Validate and build everything; every bad value or combination fails before data loads."""
    validate_config(cfg)
    datamodule = build(cfg.dataset, "dataset")
    if cfg.heteroscedastic and datamodule.task != "regression":
        raise ConfigError(f"heteroscedastic=true needs a regression dataset, not {datamodule.name}")
    if cfg.ensemble.members > 1 and OmegaConf.select(cfg, "trainer.devices", default=1) != 1:
        raise ConfigError(
            "ensemble.members > 1 trains its members one after another in one process; "
            f"use trainer.devices=1 (got {cfg.trainer.devices})"
        )
    datamodule.check_files()  # a missing dataset is one clear line, before any work
    plan = plan_evaluation(cfg, datamodule)
    model, regularizers = build_network(cfg, datamodule, cfg.seed)
    datamodule.setup("fit")
    module, trainer = build_trainer(cfg, datamodule, model, regularizers)
    return datamodule, module, trainer, plan


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Train and evaluate one configuration; write results.json and friends into ``run_dir``."""
    started = time.time()
    datamodule, module, trainer, plan = assemble(cfg)
    assembled = time.time()
    modules = fit_members(cfg, run_dir, datamodule, module, trainer)
    if not trainer.is_global_zero:
        return None  # under DDP, rank 0 alone evaluates the whole splits and writes the record
    try:
        return evaluate_and_record(
            cfg, run_dir, datamodule, modules, trainer, plan, started, assembled
        )
    except BaseException as exc:
        close_loggers(trainer.loggers, exc)
        raise


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """``train`` inside a signal guard, plus what the run directory says and gets written:
    a finished run is skipped, a stopped one resumed; a crash is written down as ``failed``, a
    signal as ``interrupted`` — never a completed record lost."""
    quiet_libraries()
    configure_threads(cfg)  # parallel jobs share the cores instead of oversubscribing them
    run_dir = Path(cfg.paths.run_dir)
    started = time.time()
    with guarded() as guard:
        finished = prepare(run_dir)
        if finished is not None:
            log.info(
                "%s: already %s; skipped (resume=false runs it again)", run_dir, finished["status"]
            )
            return finished
        try:
            record = train(cfg, run_dir)
        except (ConfigError, CheckpointError):
            raise  # bad input, or nothing valid to resume from: one line, nothing written
        except RunInterrupted as exc:
            if rank_zero_only.rank == 0:
                record_interrupted(cfg, run_dir, exc, started)
            exc.guard = guard
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # SystemExit: a library calling sys.exit mid-run; KeyboardInterrupt: raised by code,
            # not by Ctrl-C (the guard turns that into RunInterrupted) — unless it is the second
            # Ctrl-C, a person who wants out now: then nothing is written, the checkpoints stay.
            if rank_zero_only.rank != 0 or (
                isinstance(exc, KeyboardInterrupt) and guard.received is not None
            ):
                raise
            record_failure(cfg, run_dir, exc, started)
            exc.bench_recorded = True  # type: ignore[union-attr]
            raise
        if guard.received is not None:  # a signal during evaluation: the run finished anyway
            stop = RunInterrupted(guard.received, None, None, None)
            stop.guard = guard
            raise stop
        return record


def report(record: dict[str, Any], run_dir: Path) -> None:
    """The lines a user reads at the end of a run."""
    m = record["metrics"]
    print(f"results: {run_dir / RESULTS_FILE}")
    if record["status"] == "diverged":
        print(
            f"warning: the loss became non-finite at epoch {record['diverged_at']['epoch']}; "
            "recorded as status=diverged",
            file=sys.stderr,
        )
    fields = (
        ["test/acc", "test/ece", "gap/acc", "gap/loss"]
        if "test/acc" in m
        else ["test/rmse", "test/nll", "gap/loss"]
    )
    print("  ".join(f"{k}={m[k]:.4f}" if m.get(k) is not None else f"{k}=nan" for k in fields))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(cfg.paths.run_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    started = time.time()
    try:
        record = run(cfg)
    except (ConfigError, CheckpointError) as exc:
        if not multirun:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        # In a sweep, one bad point must not stop the others (Hydra's basic sweeper re-raises
        # the first failure before on_multirun_end, so no leaderboard would be printed): the
        # job is recorded as failed, the sweep goes on, and the leaderboard callback lists it
        # and makes the multirun exit non-zero. A damaged checkpoint is left as it is.
        log.error("error: %s", exc)
        if isinstance(exc, ConfigError):
            record_failure(cfg, run_dir, exc, started)
        return None
    except RunInterrupted as exc:
        # The run saved and recorded itself. Whoever sent the signal gets the process back:
        # inside a submitit job its handler requeues the job (and exits); otherwise the process
        # exits with 128 + the signal, which also ends a sequential sweep (Ctrl-C means stop).
        try:
            hand_over(exc)
        except Exception:  # submitit refused the requeue; hand_over recorded the job as failed
            if not multirun:
                raise
            return None  # the sweep goes on; its leaderboard lists the job and exits 1
        sys.exit(exc.exit_code)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        if not multirun or not getattr(exc, "bench_recorded", isinstance(exc, Exception)):
            raise
        log.error("job failed, the sweep goes on: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return None
    if record is None:  # a DDP worker process; rank 0 reports
        return None
    report(record, run_dir)
    value = record["metrics"].get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


def hand_over(exc: RunInterrupted) -> None:
    """Give the signal to the handler the run's guard replaced (submitit's requeue), if any.

    submitit refuses a requeue after ``max_num_timeout`` timeouts by raising; then the job is
    over for good and its record says ``failed``, not ``interrupted``.
    """
    guard = getattr(exc, "guard", None)
    if guard is None:
        return
    try:
        guard.hand_over()
    except Exception as refusal:  # submitit's UncompletedJobError: no more requeues
        cfg_dir = Path(HydraConfig.get().runtime.output_dir)
        record = read_results(cfg_dir / RESULTS_FILE) or {}
        log.error("not requeued: %s", refusal)
        if record.get("status") == "interrupted":
            record.update(status="failed", error=f"{exc}; not requeued: {refusal}")
            write_json_atomic(cfg_dir / RESULTS_FILE, record)
        raise


if __name__ == "__main__":
    main()
