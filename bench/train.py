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
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError
from bench.evaluate import evaluate
from bench.module import BenchModule
from bench.regularizers.base import Regularizer, sparsity
from bench.results import (
    RESULTS_FILE,
    read_results,
    scrub,
    versions,
    write_json_atomic,
    write_npz_atomic,
)
from bench.validation import validate_config

log = logging.getLogger("bench")
# conf/ sits beside the package in the repository (editable install), so bench-train finds it
# from any working directory.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def build(node: DictConfig, path: str, **kwargs: Any) -> Any:
    """``instantiate`` that turns a component's ``ConfigError`` into one line naming its key."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ConfigError):
            msg = str(cause)
            raise type(cause)(msg if msg.startswith(f"{path}.") else f"{path}.{msg}") from None
        if isinstance(cause, TypeError) and "argument" in str(cause):
            raise ConfigError(f"{path}: {cause}") from None
        raise


def build_regularizers(cfg: DictConfig) -> list[Regularizer]:
    regs = []
    for name, node in (cfg.get("regularizer") or {}).items():
        reg = build(node, f"regularizer.{name}")
        reg.name = name
        regs.append(reg)
    return regs


def build_loggers(cfg: DictConfig) -> list:
    return [
        build(node, f"logger.{name}")
        for name, node in (cfg.get("logger") or {}).items()
        if node is not None
    ]


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able containers, secrets redacted."""
    return scrub(OmegaConf.to_container(cfg, resolve=True))


def assemble(cfg: DictConfig) -> tuple[L.LightningDataModule, BenchModule, L.Trainer]:
    """Validate and build everything; every bad value or combination fails before data loads."""
    validate_config(cfg)
    datamodule = build(cfg.dataset, "dataset")
    regularizers = build_regularizers(cfg)
    if cfg.heteroscedastic and datamodule.task != "regression":
        raise ConfigError(f"heteroscedastic=true needs a regression dataset, not {datamodule.name}")
    datamodule.check_files()  # a missing dataset is one clear line, before any work

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Shapes are known without reading the data, so combination errors also come before loading.
    num_outputs = datamodule.num_outputs * (2 if cfg.heteroscedastic else 1)
    model = build(
        cfg.model, "model", input_shape=tuple(datamodule.input_shape), num_outputs=num_outputs
    )
    for reg in regularizers:
        reg.setup(datamodule, model)
    datamodule.setup("fit")
    module = BenchModule(
        model=model,
        task=datamodule.task,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        regularizers=regularizers,
        heteroscedastic=bool(cfg.heteroscedastic),
        target_std=float(datamodule.target_std),
        hparams=config_record(cfg),
    )
    callbacks = [
        build(node, f"callbacks.{name}")
        for name, node in (cfg.get("callbacks") or {}).items()
        if node is not None
    ]
    callbacks += [cb for reg in regularizers for cb in reg.callbacks()]
    loggers = build_loggers(cfg)
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Train and evaluate one configuration; write results.json and friends into ``run_dir``."""
    started = time.time()
    datamodule, module, trainer = assemble(cfg)
    trainer.fit(module, datamodule=datamodule)
    if not trainer.is_global_zero:
        return None  # under DDP, rank 0 alone evaluates the whole splits and writes the record

    diverged = module.diverged_at is not None
    epochs = module.diverged_at[0] if diverged else trainer.current_epoch
    # Every run reports sparsity (weights with ndim >= 2) so leaderboards compare like with like;
    # a regularizer's summary may refine it (l1 with params=all counts biases too) and early
    # stopping replaces best_epoch by the epoch whose weights it restored.
    extras: dict[str, Any] = {"best_epoch": epochs, "sparsity": sparsity(module.model)}
    for reg in module.regularizers:
        extras.update(reg.summary(module.model))
    metrics, predictions = evaluate(module, datamodule)
    write_npz_atomic(run_dir / "predictions.npz", predictions)
    record = {
        "status": "diverged" if diverged else "completed",
        "dataset": datamodule.name,
        "model": type(module.model).__name__.lower(),  # class names match conf/model/<name>.yaml
        "regularizers": [reg.name for reg in module.regularizers],
        "seed": int(cfg.seed),
        "epochs": int(epochs),
        **extras,
        "metrics": metrics,
        "wall_time_s": round(time.time() - started, 3),
        "versions": versions(),
        "config": dict(module.hparams),
    }
    if diverged:
        record["diverged_at"] = {"epoch": module.diverged_at[0] + 1, "step": module.diverged_at[1]}
    write_json_atomic(run_dir / RESULTS_FILE, record)
    for lg in trainer.loggers:
        lg.log_metrics({f"final/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
        lg.save()
        if hasattr(lg, "experiment") and hasattr(lg.experiment, "finish"):
            lg.experiment.finish()  # a wandb run per job, also in a multirun sweep
    return record


def _target_name(node: DictConfig) -> str | None:
    """The name a completed record would carry (``digits``, ``mlp``), without building anything."""
    cls = get_class(node._target_)
    name = getattr(cls, "name", "")
    return name if isinstance(name, str) and name else cls.__name__.lower()


def run(cfg: DictConfig) -> dict[str, Any] | None:
    """``train`` plus the failure record: a crash is written down, never a completed one lost."""
    run_dir = Path(cfg.paths.run_dir)
    started = time.time()
    try:
        return train(cfg, run_dir)
    except ConfigError:
        raise  # bad input: nothing was done, nothing is written
    except Exception as exc:
        if rank_zero_only.rank != 0:
            raise  # rank 0 records the failure
        path = run_dir / RESULTS_FILE
        if (read_results(path) or {}).get("status") == "completed":
            path = run_dir / "results.failed.json"
        write_json_atomic(
            path,
            {
                "status": "failed",
                "error": scrub(f"{type(exc).__name__}: {exc}"),
                "dataset": _target_name(cfg.dataset),
                "model": _target_name(cfg.model),
                "regularizers": list((cfg.get("regularizer") or {}).keys()),
                "seed": cfg.get("seed"),
                "epochs": None,
                "best_epoch": None,
                "metrics": {},
                "wall_time_s": round(time.time() - started, 3),
                "versions": versions(),
                "config": config_record(cfg),
            },
        )
        log.error("run failed; recorded in %s", path)
        raise


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
    try:
        record = run(cfg)
    except ConfigError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("error: %s", exc)
            raise  # the sweep goes on; Hydra reports the failed job at the end
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if record is None:  # a DDP worker process; rank 0 reports
        return None
    report(record, run_dir)
    value = record["metrics"].get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
