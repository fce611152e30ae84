"""Train the jobs of one group as a population, then write each job's results as if it ran alone.

``train_group`` is what the ``population`` launcher calls with the group's composed configs.
Every member is built as its job would build itself (``bench.train.assemble``'s steps: validate,
datamodule, seed, network, regularizers), so its initial weights and batch order are the single
run's; the networks are stacked (``stack.py``), trained by one Trainer with resumable checkpoints
under ``<sweep>/.population/<group>/``, unstacked, and each job's directory gets the
``results.json``, ``predictions.npz``, CSV/wandb logs and checkpoints a single run writes (plus a
``population`` field), from the same evaluation code (``bench.finish.record_run``).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from bench.build import (
    build,
    build_loggers,
    build_network,
    checkpoint_callback,
    run_callbacks,
)
from bench.data.base import ArrayDataModule
from bench.errors import ConfigError
from bench.eval_plan import EvalPlan, plan_evaluation
from bench.population.data import PopulationData
from bench.population.evaluation import SharedOutputs
from bench.population.finish import finisher, report_done, report_failed, weights
from bench.population.member_logs import MemberLogs
from bench.population.module import PopulationModule
from bench.population.stack import restack, stack_networks, unstack
from bench.population.stacking import stack_regularizers
from bench.population.stopping import MemberStopping
from bench.quiet import quiet_libraries
from bench.regularizers.base import Regularizer
from bench.resume.checkpoints import (
    AtomicCheckpointIO,
    latest_valid,
)
from bench.resume.run_dir import prepare, record_failure, record_interrupted
from bench.resume.signals import RunInterrupted, guarded
from bench.threads import configure_threads
from bench.validation import validate_config

log = logging.getLogger("bench")
TaskFunction = Callable[[DictConfig], Any]


@dataclass
class Member:
    """One job of the group, built exactly as it would build itself."""

    index: int  # position in the group
    cfg: DictConfig
    run_dir: Path
    datamodule: ArrayDataModule
    plan: EvalPlan
    network: Any  # its own nn.Sequential (weights copied back after training)
    regularizers: list[Regularizer]
    loggers: list = field(default_factory=list)


def train_group(configs: list[DictConfig]) -> list[TaskFunction]:
    """Train ``configs`` as one population; one task function per job (writes its results)."""
    started = time.time()
    quiet_libraries()
    configure_threads(configs[0])
    tasks: list[TaskFunction | None] = [None] * len(configs)
    members: list[Member] = []
    splits: dict[str, ArrayDataModule] = {}
    for k, cfg in enumerate(configs):
        run_dir = Path(_own_run_dir(cfg))
        run_dir.mkdir(parents=True, exist_ok=True)
        done = prepare(run_dir)
        if done is not None:
            log.info("%s: already %s; skipped", run_dir, done["status"])
            tasks[k] = report_done(done)
            continue
        try:
            members.append(_assemble(k, cfg, run_dir, splits))
        except ConfigError as exc:  # this job is refused, the others train
            log.error("error: %s", exc)
            record_failure(cfg, run_dir, exc, started)
            tasks[k] = report_failed(exc)
    if members:
        for k, task in _train(members, started).items():
            tasks[k] = task
    return [t for t in tasks if t is not None]


def _own_run_dir(cfg: DictConfig) -> str:
    """The job's own directory. Hydra's job config points ``${hydra:runtime.output_dir}`` at the
    job being run, which during the group's training is the first job: the launcher has set
    each config's ``hydra.runtime.output_dir``, and ``paths.run_dir`` is pinned to it here."""
    own = OmegaConf.select(cfg, "hydra.runtime.output_dir", default=None)
    with open_dict(cfg):
        if own:
            cfg.paths.run_dir = str(own)
        cfg.pop("hydra", None)  # as the app's task function sees it: no hydra node
    return str(cfg.paths.run_dir)


def _assemble(k: int, cfg: DictConfig, run_dir: Path, splits: dict[str, ArrayDataModule]) -> Member:
    validate_config(cfg)
    key = str(sorted(OmegaConf.to_container(cfg.dataset, resolve=True).items()))
    if key not in splits:  # one datamodule per distinct split: loaded once, shared
        splits[key] = build(cfg.dataset, "dataset")
        splits[key].check_files()
    datamodule = splits[key]
    plan = plan_evaluation(cfg, datamodule)
    network, regularizers = build_network(cfg, datamodule, int(cfg.seed))
    for reg in regularizers:  # as BenchModule.__init__ does (dropout swaps its slots)
        network = reg.configure_model(network)
    return Member(k, cfg, run_dir, datamodule, plan, network, regularizers)


def group_dir(members: list[Member]) -> Path:
    """``<sweep dir>/.population/<hash of the members' job directories>``: the same group, run
    again, finds its checkpoints."""
    names = "\n".join(sorted(m.run_dir.name for m in members))
    digest = hashlib.sha256(names.encode()).hexdigest()[:8]
    return members[0].run_dir.parent / ".population" / f"{len(members)}-{digest}"


def _train(members: list[Member], started: float) -> dict[int, TaskFunction]:
    cfg = members[0].cfg
    directory = group_dir(members)
    datamodules = list({id(m.datamodule): m.datamodule for m in members}.values())
    data = PopulationData(
        datamodules,
        split_of=[datamodules.index(m.datamodule) for m in members],
        seeds=[int(m.cfg.seed) for m in members],
    )
    logs = MemberLogs(
        [build_loggers(m.cfg) for m in members],
        [m.run_dir for m in members],
        [m.regularizers for m in members],
        [m.network for m in members],
    )
    with guarded() as guard:
        try:
            data.setup("fit")
            network = stack_networks([m.network for m in members])
            module = PopulationModule(
                network,
                task=datamodules[0].task,
                optimizer=build(cfg.optimizer, "optimizer"),
                scheduler=build(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None,
                regularizers=stack_regularizers([m.regularizers for m in members]),
                stopping=MemberStopping([m.regularizers for m in members]),
                heteroscedastic=bool(cfg.heteroscedastic),
                target_stds=data.target_stds(),
                on_epoch=logs.epoch,
                member_networks=[m.network for m in members],
                on_resume=logs.resume_at,
            )
            checkpoints = checkpoint_callback(cfg, directory / "checkpoints", population=True)
            trainer = build(
                cfg.trainer,
                "trainer",
                default_root_dir=str(directory),
                callbacks=[*_configured_callbacks(cfg), checkpoints],
                logger=False,
                enable_progress_bar=False,
                plugins=[AtomicCheckpointIO()],
            )
            assembled = time.time()
            ckpt = latest_valid(checkpoints.dirpath)
            if ckpt is not None:
                log.info("population: resuming from %s", ckpt)
            logs.start()  # wandb runs open and rows are written in the background
            log.info("population of %d: training %s", len(members), directory)
            trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        except RunInterrupted as exc:
            for m in members:
                record_interrupted(m.cfg, m.run_dir, exc, started)
            logs.close(exc)
            exc.guard = guard
            log.error("population interrupted (%s); the same command resumes it", exc)
            sys.exit(exc.exit_code)
        except (ConfigError, Exception) as exc:
            logs.close(exc)
            for m in members:
                record_failure(m.cfg, m.run_dir, exc, started)
            log.error("population failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
            return {m.index: report_failed(exc) for m in members}
    try:
        logs.flush()  # every epoch row written before the members' final rows
    except Exception as exc:  # a logger failed (wandb failures are already warnings)
        log.warning("member logs: %s: %s", type(exc).__name__, exc)
    fitted = time.time()
    unstack(module.model, [m.network for m in members])
    final = {m.index: weights(m.network) for m in members}  # before best weights go back
    for j, m in enumerate(members):
        module.stopping.restore_best(j, m.network)
    restack(module.model, [m.network for m in members])  # what each member is scored with
    shared = SharedOutputs(module.model)
    info = {"group": directory.name, "size": len(members)}
    return {
        m.index: finisher(
            m, j, module, logs, info, (started, assembled, fitted), final[m.index], shared
        )
        for j, m in enumerate(members)
    }


def _configured_callbacks(cfg: DictConfig) -> list:
    """The group's configured callbacks (``+callbacks=...``, the same in every member) train
    the population too, except those that only contribute a predictor (MC dropout): those act
    per member, at evaluation."""
    return [cb for cb in run_callbacks(cfg, []) if not callable(getattr(cb, "predictor", None))]
