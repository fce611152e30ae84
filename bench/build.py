"""Building one network's training from the config: regularizers, model, module, trainer.

Every object comes from ``hydra.utils.instantiate`` and a ``_target_``; ``build`` turns a
component's ``ConfigError`` into one line naming its config key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.callbacks.epoch_log import EpochLog, progress_bar_enabled
from bench.callbacks.progress import ThrottledProgressBar
from bench.cluster import cluster_plugins
from bench.errors import ConfigError
from bench.module import BenchModule
from bench.regularizers.base import Regularizer
from bench.results import scrub
from bench.resume.callback import ResumeCheckpoint
from bench.resume.checkpoints import AtomicCheckpointIO


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
    """The configured loggers. One whose ``name`` / ``group`` is null (wandb's, by default) gets
    the run's readable name and, inside a ``--multirun``, its sweep as the group, so that a
    dashboard can group the runs of one sweep and compare them by name."""
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        names = {}
        if "name" in node and node.name is None:
            names["name"] = run_name(cfg)
        if "group" in node and node.group is None:
            names["group"] = sweep_group()
        loggers.append(build(node, f"logger.{key}", **names))
    return loggers


def target_name(node: DictConfig) -> str | None:
    """The name a record carries for a component (``digits``, ``mlp``), without building it."""
    cls = get_class(node._target_)
    if callable(getattr(cls, "record_name", None)):  # one class, several sets (bench/data/uci.py)
        return cls.record_name(node)
    name = getattr(cls, "name", "")
    return name if isinstance(name, str) and name else cls.__name__.lower()


def run_name(cfg: DictConfig) -> str:
    """``digits/mlp/l2(strength=0.0001)+dropout(p_input=0,p_dense=0.5,p_conv=0.1)/s0``."""
    regs = []
    for name, node in (cfg.get("regularizer") or {}).items():
        numbers = [
            f"{k}={v:g}"
            for k, v in node.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        regs.append(f"{name}({','.join(numbers)})" if numbers else name)
    parts = [target_name(cfg.dataset), target_name(cfg.model), "+".join(regs) or "none"]
    return "/".join([*parts, f"s{cfg.seed}"])


def sweep_group() -> str | None:
    """The sweep directory of a ``--multirun`` job (None for a single run or outside Hydra)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().sweep.dir)


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able containers, secrets redacted."""
    return scrub(OmegaConf.to_container(cfg, resolve=True))


def build_network(
    cfg: DictConfig, datamodule: L.LightningDataModule, seed: int
) -> tuple[nn.Module, list[Regularizer]]:
    """A freshly initialized network (from ``seed``) and its regularizers, checked together.

    Shapes are known without reading the data, so combination errors come before loading.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    regularizers = build_regularizers(cfg)
    num_outputs = datamodule.num_outputs * (2 if cfg.heteroscedastic else 1)
    model = build(
        cfg.model, "model", input_shape=tuple(datamodule.input_shape), num_outputs=num_outputs
    )
    for reg in regularizers:
        reg.setup(datamodule, model)
    return model, regularizers


def build_trainer(
    cfg: DictConfig,
    datamodule: L.LightningDataModule,
    model: nn.Module,
    regularizers: list[Regularizer],
    loggers: bool = True,
) -> tuple[BenchModule, L.Trainer]:
    """The LightningModule and its Trainer; the data must be loaded (regression target scale)."""
    module = BenchModule(
        model=model,
        task=datamodule.task,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        regularizers=regularizers,
        heteroscedastic=bool(cfg.heteroscedastic),
        target_std=float(datamodule.target_std),
        hparams=config_record(cfg),
        check_finite_every=cfg.get("check_finite_every"),
        compile=bool(cfg.get("compile", False)),
        channels_last=bool(cfg.get("channels_last", False)),
    )
    callbacks = run_callbacks(cfg, regularizers)
    # auto: the bar on a terminal, one line per epoch in a log file (Slurm, joblib, CI).
    setting = cfg.trainer.get("enable_progress_bar", "auto")
    bar = progress_bar_enabled(setting)
    if setting == "auto" and not bar:  # false: neither bar nor lines (a quiet sweep)
        callbacks.append(EpochLog())
    if bar:  # a few redraws a second, not one per batch (each reads metrics off the device)
        callbacks.append(ThrottledProgressBar())
    # Resumable checkpoints for every network of a run (ensemble members too), last in the list
    # so that Lightning calls it after early stopping and RestoreBest have seen the epoch.
    callbacks.append(resume_checkpoint(cfg))
    logger = (build_loggers(cfg) or False) if loggers else False
    trainer = build(
        cfg.trainer,
        "trainer",
        callbacks=callbacks,
        logger=logger,
        enable_progress_bar=bar,
        plugins=[AtomicCheckpointIO(), *cluster_plugins()],
    )
    return module, trainer


def run_callbacks(cfg: DictConfig, regularizers: list[Regularizer]) -> list[L.Callback]:
    """The configured callbacks, then the regularizers' own (early stopping, MC dropout)."""
    callbacks = [
        build(node, f"callbacks.{name}")
        for name, node in (cfg.get("callbacks") or {}).items()
        if node is not None
    ]
    # A regularizer's callback (dropout's MC evaluation) gives way to a configured one of the
    # same class, so '+callbacks=mc_dropout callbacks.mc_dropout.samples=100' takes effect.
    configured = {type(cb) for cb in callbacks}
    callbacks += [
        cb for reg in regularizers for cb in reg.callbacks() if type(cb) not in configured
    ]
    return callbacks


def resume_checkpoint(cfg: DictConfig) -> ResumeCheckpoint:
    """Checkpoints under ``<run_dir>/checkpoints`` as ``cfg.checkpoint`` says (validated in
    ``bench.validation``)."""
    return checkpoint_callback(cfg, Path(cfg.paths.run_dir) / "checkpoints")


# checkpoint.min_interval_s: null → every epoch for one network; at most every 30 s for a
# population, whose checkpoint holds all its members (100 digits MLPs with Adam: 100 MB) while
# its epochs are as short as one network's times a few: written every epoch, it was ~40 % of
# a 100-member sweep's training.
AUTO_INTERVAL_S = {False: 0.0, True: 30.0}


def checkpoint_callback(
    cfg: DictConfig, directory: Path, population: bool = False
) -> ResumeCheckpoint:
    """A ``ResumeCheckpoint`` writing to ``directory`` with ``cfg.checkpoint``'s settings."""
    ckpt = cfg.checkpoint
    interval = ckpt.get("min_interval_s")
    interval = AUTO_INTERVAL_S[population] if interval is None else float(interval)
    return ResumeCheckpoint(directory, ckpt.every_n_epochs, ckpt.keep, min_interval_s=interval)
