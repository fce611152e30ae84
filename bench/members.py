"""Deep ensembles and bagging inside one run: train K members that differ only in seed.

Member 0 is the run's own network (its seed, its loggers); the others train after it with seeds
derived from (seed, k), checkpoints under ``members/<k>/``, and no loggers of their own.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import lightning as L
import numpy as np
from omegaconf import DictConfig, open_dict

from bench.build import build_network, build_trainer
from bench.module import BenchModule
from bench.resume.callback import ResumeCheckpoint
from bench.resume.checkpoints import latest_valid

log = logging.getLogger("bench")


def member_seed(seed: int, k: int) -> int:
    """Seed of ensemble member ``k``: the run's own seed for member 0 (so ``test/*`` is what the
    same run without an ensemble reports), independent streams of (seed, k) for the others."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0] % 2**31)


def member_config(cfg: DictConfig, run_dir: Path, k: int) -> DictConfig:
    """Member ``k`` of an ensemble: its own seed, checkpoints under ``members/<k>/``."""
    member = copy.deepcopy(cfg)
    with open_dict(member):
        member.seed = member_seed(int(cfg.seed), k)
        member.paths.run_dir = str(run_dir / "members" / str(k))
    return member


def fit_members(cfg: DictConfig, run_dir: Path, datamodule, module, trainer) -> list[BenchModule]:
    """Train the run's network, then (``ensemble.members`` > 1) the other members.

    Members differ only in seed (same splits); with ``ensemble.bootstrap`` each trains on its
    own bootstrap resample of the training split. Only member 0 logs to the run's loggers.
    """
    bootstrap = bool(cfg.ensemble.bootstrap)
    datamodule.set_bootstrap(cfg.seed if bootstrap else None)
    fit(trainer, module, datamodule)
    modules = [module]
    if not trainer.is_global_zero:
        return modules
    for k in range(1, int(cfg.ensemble.members)):
        member = member_config(cfg, run_dir, k)
        model, regularizers = build_network(member, datamodule, member.seed)
        datamodule.set_bootstrap(member.seed if bootstrap else None)
        member_module, member_trainer = build_trainer(
            member, datamodule, model, regularizers, loggers=False
        )
        fit(member_trainer, member_module, datamodule)
        modules.append(member_module)
    datamodule.set_bootstrap(None)
    return modules


def fit(trainer: L.Trainer, module: BenchModule, datamodule: L.LightningDataModule) -> None:
    """``trainer.fit``, from the newest valid checkpoint of this network when there is one.

    A run directory holds checkpoints only when an earlier start of the same run stopped
    (``bench.train.prepare`` clears those of a failed run); ``latest_valid`` raises rather
    than start from nothing when every checkpoint is damaged.
    """
    (callback,) = [cb for cb in trainer.callbacks if isinstance(cb, ResumeCheckpoint)]
    ckpt = latest_valid(callback.dirpath)
    if ckpt is not None:
        log.info("resuming from %s", ckpt)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
