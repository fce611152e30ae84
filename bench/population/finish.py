"""Each member's results, written as its job would write them alone.

After the population has trained, the launcher runs one task function per job (inside Hydra's
``run_job``: the job's directory, ``.hydra/``, job callbacks). The function made here scores the
member with the single run's evaluation (``bench.finish.record_run``), its eval-mode passes
served by one stacked pass for all members (``evaluation.SharedOutputs``), writes
``results.json`` (plus the ``population`` field), ``predictions.npz``, plots, the final rows of
its loggers and its weights where a single run keeps them, and returns what ``bench.train.main``
would return to the sweeper.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn

from bench.build import config_record, run_callbacks
from bench.module import BenchModule
from bench.population.evaluation import SharedOutputs
from bench.population.member_logs import MemberLogs
from bench.population.module import PopulationModule
from bench.regularizers.early_stopping import BEST_CHECKPOINT
from bench.resume.checkpoints import LAST, AtomicCheckpointIO, checkpoint_name, link_atomic

if TYPE_CHECKING:
    from bench.population.train import Member

TaskFunction = Callable[[DictConfig], Any]


def finisher(
    m: Member,
    j: int,
    module: PopulationModule,
    logs: MemberLogs,
    info: dict,
    times: tuple,
    final: dict[str, torch.Tensor],
    shared: SharedOutputs,
) -> TaskFunction:
    def finish(_task_cfg: DictConfig) -> Any:
        from bench.finish import close_loggers, record_run
        from bench.train import report

        evaluating = time.time()

        single = BenchModule(
            model=m.network,
            task=m.datamodule.task,
            optimizer=None,
            regularizers=(),
            heteroscedastic=bool(m.cfg.heteroscedastic),
            target_std=float(m.datamodule.target_std),
            hparams=config_record(m.cfg),
        )
        single.regularizers = m.regularizers  # already applied to the network: not again
        single.diverged_at = module.diverged_at[j]
        callbacks = run_callbacks(m.cfg, m.regularizers)
        loggers = logs.loggers[j]
        shared.attach(j, m.network)  # its eval-mode passes: one stacked pass for all members
        try:
            record = record_run(
                m.cfg, m.run_dir, m.datamodule, [single], callbacks, module.epochs_trained[j],
                m.plan, (*times, evaluating), loggers, module.global_step,
                extras={"population": {**info, "member": j}},
            )  # fmt: skip
        except BaseException as exc:
            close_loggers(loggers, exc)
            raise
        finally:
            shared.detach(j, m.network)
        best = weights(m.network) if module.stopping.best[j] is not None else None
        epoch = module.epochs_trained[j]
        write_checkpoints(m.run_dir / "checkpoints", final, best, epoch, module.global_step, record)
        report(record, m.run_dir)
        value = record["metrics"].get(m.cfg.get("optimized_metric") or "")
        return float(value) if value is not None else None

    return finish


def weights(network: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict in the single run's checkpoint naming (``model.<layer>``)."""
    return {f"model.{k}": v.detach().cpu().clone() for k, v in network.state_dict().items()}


def write_checkpoints(
    directory: Path,
    final: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor] | None,
    epoch: int,
    step: int,
    record: dict,
) -> None:
    """The member's weights where a single run keeps them: ``e…-final.ckpt`` (the weights
    training ended with, ``last.ckpt`` points at it) and, with early stopping, ``best.ckpt``.
    Weights only (the optimizer state is the population's, in its group checkpoint); written
    after results.json, so a finished member is never taken for one to resume."""
    io = AtomicCheckpointIO()
    head = {
        "epoch": epoch,
        "global_step": step,
        "pytorch-lightning_version": L.__version__,
        "hyper_parameters": record["config"],
        "bench": {"fit_complete": True, "population": record["population"]},
    }
    name = checkpoint_name(epoch, step, final=True)
    io.save_checkpoint({**head, "state_dict": final}, directory / name)
    link_atomic(directory / LAST, name)
    if best is not None:
        io.save_checkpoint({**head, "state_dict": best}, directory / BEST_CHECKPOINT)


def report_done(record: dict) -> TaskFunction:
    def done(cfg: DictConfig) -> Any:
        value = record.get("metrics", {}).get(cfg.get("optimized_metric") or "")
        return float(value) if value is not None else None

    return done


def report_failed(exc: BaseException) -> TaskFunction:
    def failed(_cfg: DictConfig) -> None:
        return None  # recorded as failed; the leaderboard lists it and the sweep exits 1

    return failed
