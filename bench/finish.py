"""After fit: evaluate every predictor, write predictions, plots and results.json, and close
the loggers — the second half of a run (``bench.train.train``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from bench.eval_plan import EvalPlan, build_predictors
from bench.evaluate import Evaluation, evaluate
from bench.loggers.wandb import WandbLogger
from bench.members import member_seed
from bench.module import BenchModule
from bench.plots import reliability_diagram
from bench.record import run_record
from bench.regularizers.base import sparsity
from bench.results import RESULTS_FILE, versions, write_json_atomic, write_npz_atomic
from bench.resume.signals import RunInterrupted
from bench.uncertainty.base import OutputHead
from bench.uncertainty.ensemble import Ensemble


def evaluate_and_record(
    cfg: DictConfig,
    run_dir: Path,
    datamodule: L.LightningDataModule,
    modules: list[BenchModule],
    trainer: L.Trainer,
    plan: EvalPlan,
    started: float,
    assembled: float,
) -> dict[str, Any]:
    """Score every predictor, write predictions, plots and results.json, finish the loggers."""
    return record_run(
        cfg, run_dir, datamodule, modules, trainer.callbacks, trainer.current_epoch, plan,
        (started, assembled, time.time()), trainer.loggers, trainer.global_step,
    )  # fmt: skip


def record_run(
    cfg: DictConfig,
    run_dir: Path,
    datamodule: L.LightningDataModule,
    modules: list[BenchModule],
    callbacks: list,
    epochs_run: int,
    plan: EvalPlan,
    times: tuple[float, ...],
    loggers: list,
    step: int,
    extras: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``evaluate_and_record`` from its parts: a population member (``bench.population``) has
    no Trainer of its own. ``times``: when the run started, was assembled, finished training,
    and (optionally) when its evaluation began — a population member waits for those before it."""
    module = modules[0]
    started, assembled, fitted = times[:3]
    evaluating = times[3] if len(times) > 3 else fitted
    predictors = build_predictors(cfg, callbacks)
    if len(modules) > 1:
        predictors.append(Ensemble())
    networks = [m.model for m in modules]
    head = OutputHead.for_run(
        networks[0],
        datamodule.task,
        bool(cfg.heteroscedastic),
        datamodule,
        cfg.get("noise_precision"),
    )
    evaluation = evaluate(networks, head, datamodule, predictors, plan.settings(datamodule))
    write_npz_atomic(run_dir / "predictions.npz", evaluation.arrays)
    evaluated = time.time()
    title = f"{datamodule.name} / {model_name(module)}"
    plots = write_plots(evaluation, run_dir, plan.plots, title)
    # Where the time went: set-up (incl. data loading), training, the final evaluation, plots.
    timing = {
        "setup_s": assembled - started,
        "fit_s": fitted - assembled,
        "evaluate_s": evaluated - evaluating,
        "plots_s": time.time() - evaluated,
    }

    diverged = [(k, m.diverged_at) for k, m in enumerate(modules) if m.diverged_at is not None]
    epochs = module.diverged_at[0] if module.diverged_at is not None else epochs_run
    # Every run reports sparsity (weights with ndim >= 2) so leaderboards compare like with like;
    # a regularizer's summary may refine it (l1 with params=all counts biases too) and early
    # stopping replaces best_epoch by the epoch whose weights it restored.
    fields: dict[str, Any] = {"best_epoch": epochs, "sparsity": sparsity(module.model)}
    for reg in module.regularizers:
        fields.update(reg.summary(module.model))
    fields.update(extras or {})
    extras = fields
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
    finish_loggers(loggers, step, record, plots)
    return record


def finish_loggers(
    loggers: list, step: int, record: dict[str, Any], plots: dict[str, Path]
) -> None:
    """Final metrics for every logger; wandb's run also gets the summary, the flat config and the
    plots, and is finished with the record's status — one wandb run per job, also in a sweep."""
    for lg in loggers:
        lg.log_metrics({f"final/{k}": v for k, v in record["metrics"].items()}, step)
        lg.save()
        if isinstance(lg, WandbLogger):
            lg.finish_run(record, plots)


def close_loggers(loggers: list, exc: BaseException) -> None:
    """A run that stops after fit (in evaluation) closes its wandb run now, marked failed or
    interrupted — Lightning finalizes loggers only for exceptions inside fit."""
    status = "interrupted" if isinstance(exc, RunInterrupted | KeyboardInterrupt) else "failed"
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.close(status, getattr(exc, "exit_code", None))


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
