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

from bench.build import build, build_network, build_trainer, config_record, target_name
from bench.errors import ConfigError
from bench.eval_plan import EvalPlan, build_predictors, plan_evaluation
from bench.evaluate import Evaluation, evaluate
from bench.members import fit_members, member_seed
from bench.module import BenchModule
from bench.plots import reliability_diagram
from bench.quiet import quiet_libraries
from bench.record import failed_record, flatten, run_record
from bench.regularizers.base import sparsity
from bench.results import (
    RESULTS_FILE,
    read_results,
    scrub,
    versions,
    write_json_atomic,
    write_npz_atomic,
)
from bench.threads import configure_threads
from bench.uncertainty.base import OutputHead
from bench.uncertainty.ensemble import Ensemble
from bench.validation import validate_config

log = logging.getLogger("bench")
# conf/ sits beside the package in the repository (editable install), so bench-train finds it
# from any working directory.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


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
    fitted = time.time()

    predictors = build_predictors(cfg, trainer.callbacks)
    if len(modules) > 1:
        predictors.append(Ensemble())
    networks = [m.model for m in modules]
    head = OutputHead.for_run(networks[0], datamodule.task, bool(cfg.heteroscedastic), datamodule)
    evaluation = evaluate(networks, head, datamodule, predictors, plan.settings(datamodule))
    write_npz_atomic(run_dir / "predictions.npz", evaluation.arrays)
    evaluated = time.time()
    title = f"{datamodule.name} / {model_name(module)}"
    plots = write_plots(evaluation, run_dir, plan.plots, title)
    # Where the time went: set-up (incl. data loading), training, the final evaluation, plots.
    timing = {
        "setup_s": assembled - started,
        "fit_s": fitted - assembled,
        "evaluate_s": evaluated - fitted,
        "plots_s": time.time() - evaluated,
    }

    diverged = [(k, m.diverged_at) for k, m in enumerate(modules) if m.diverged_at is not None]
    epochs = module.diverged_at[0] if module.diverged_at is not None else trainer.current_epoch
    # Every run reports sparsity (weights with ndim >= 2) so leaderboards compare like with like;
    # a regularizer's summary may refine it (l1 with params=all counts biases too) and early
    # stopping replaces best_epoch by the epoch whose weights it restored.
    extras: dict[str, Any] = {"best_epoch": epochs, "sparsity": sparsity(module.model)}
    for reg in module.regularizers:
        extras.update(reg.summary(module.model))
    if len(modules) > 1:
        extras["ensemble"] = {
            "members": len(modules),
            "bootstrap": bool(cfg.ensemble.bootstrap),
            "seeds": [member_seed(int(cfg.seed), k) for k in range(len(modules))],
        }
    if plots:
        extras["plots"] = {name: path.name for name, path in plots.items()}
    extras["timing"] = {k: round(v, 3) for k, v in timing.items()}
    diverged_at = None
    if diverged:
        k, (epoch, step) = diverged[0]
        diverged_at = {"epoch": epoch + 1, "step": step} | ({"member": k} if k else {})
    record = run_record(
        dataset=datamodule.name,
        model=model_name(module),
        regularizers=[reg.name for reg in module.regularizers],
        seed=int(cfg.seed),
        epochs=int(epochs),
        metrics=evaluation.metrics,
        config=dict(module.hparams),
        wall_time_s=round(time.time() - started, 3),
        versions=versions(),
        extras=extras,
        diverged_at=diverged_at,
    )
    write_json_atomic(run_dir / RESULTS_FILE, record)
    finish_loggers(trainer, record, plots)
    return record


def finish_loggers(trainer: L.Trainer, record: dict[str, Any], plots: dict[str, Path]) -> None:
    """Final metrics (and, for wandb, the summary, the flat config and the plots), then close
    each logger's run — a wandb run per job, also in a multirun sweep."""
    for lg in trainer.loggers:
        lg.log_metrics({f"final/{k}": v for k, v in record["metrics"].items()}, trainer.global_step)
        experiment = getattr(lg, "experiment", None)
        if hasattr(experiment, "summary") and hasattr(experiment, "config"):  # wandb
            experiment.config.update(flatten(record["config"]), allow_val_change=True)
            experiment.summary.update(record["metrics"])
        if hasattr(lg, "log_image"):  # wandb
            for name, path in plots.items():
                lg.log_image(key=f"plots/{name}", images=[str(path)])
        lg.save()
        if hasattr(experiment, "finish"):
            experiment.finish()


def model_name(module: BenchModule) -> str:
    return type(module.model).__name__.lower()  # class names match conf/model/<name>.yaml


def write_plots(evaluation: Evaluation, run_dir: Path, enabled: bool, title: str) -> dict:
    """The reliability diagram of every prediction method (classification), as PNG."""
    if not enabled or evaluation.labels.is_floating_point():
        return {}
    path = run_dir / "reliability.png"
    panels = {
        label: (pred.probs.numpy(), evaluation.labels.numpy())
        for label, pred in evaluation.test_predictions.items()
    }
    reliability_diagram(panels, path, title=title)
    return {"reliability": path}


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """``train`` plus the failure record: a crash is written down, never a completed one lost."""
    quiet_libraries()
    configure_threads(cfg)  # parallel jobs share the cores instead of oversubscribing them
    run_dir = Path(cfg.paths.run_dir)
    started = time.time()
    try:
        return train(cfg, run_dir)
    except ConfigError:
        raise  # bad input: nothing was done, nothing is written
    except (Exception, SystemExit) as exc:  # SystemExit: a library calling sys.exit mid-run
        if rank_zero_only.rank != 0:
            raise  # rank 0 records the failure
        record_failure(cfg, run_dir, exc, started)
        raise


def record_failure(cfg: DictConfig, run_dir: Path, exc: BaseException, started: float) -> Path:
    """Write a ``failed`` record (beside a completed one, never over it) and say where."""
    path = run_dir / RESULTS_FILE
    if (read_results(path) or {}).get("status") == "completed":
        path = run_dir / "results.failed.json"
    record = failed_record(
        error=scrub(f"{type(exc).__name__}: {exc}"),
        dataset=target_name(cfg.dataset),
        model=target_name(cfg.model),
        regularizers=list((cfg.get("regularizer") or {}).keys()),
        seed=cfg.get("seed"),
        config=config_record(cfg),
        wall_time_s=round(time.time() - started, 3),
        versions=versions(),
    )
    write_json_atomic(path, record)
    log.error("run failed; recorded in %s", path)
    return path


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
    except ConfigError as exc:
        if not multirun:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        # In a sweep, one bad point must not stop the others (Hydra's basic sweeper re-raises
        # the first failure before on_multirun_end, so no leaderboard would be printed): the
        # job is recorded as failed, the sweep goes on, and the leaderboard callback lists it
        # and makes the multirun exit non-zero.
        log.error("error: %s", exc)
        record_failure(cfg, run_dir, exc, started)
        return None
    except (Exception, SystemExit) as exc:
        if not multirun:
            raise
        log.error("job failed, the sweep goes on: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return None
    if record is None:  # a DDP worker process; rank 0 reports
        return None
    report(record, run_dir)
    value = record["metrics"].get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
