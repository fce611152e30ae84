"""How many CPU threads torch may use in this job, so that parallel jobs share the cores.

torch starts one intra-op thread per core in every process. Run alone that is right; run as one
of N parallel jobs (joblib, submitit) on the same cores, N x cores threads fight over the cores
and each job runs slower than alone. ``threads: null`` (auto) keeps torch's default for a single
or sequential run and gives each parallel job its share; an integer sets it for every job.
"""

from __future__ import annotations

import logging
import os

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bench.errors import ConfigError

log = logging.getLogger("bench")


def available_cores() -> int:
    """The cores this process may run on (a Slurm or taskset mask counts, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def launcher_share(launcher: DictConfig, cores: int) -> tuple[int, str] | None:
    """Threads per job under Hydra's launcher ``launcher`` and why; None: torch's default.

    joblib runs ``n_jobs`` jobs at once (negative: ``cores + 1 + n_jobs``, joblib's meaning), so
    each gets ``cores // n_jobs``. submitit jobs get the ``cpus_per_task`` they asked for (Slurm
    allocates exactly that many). The basic launcher runs one job at a time: the default.
    """
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        n_jobs = int(launcher.get("n_jobs") or -1)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // parallel), f"joblib n_jobs={parallel} on {cores} cores"
    if "submitit_launcher" in target and launcher.get("cpus_per_task"):
        cpus = int(launcher.cpus_per_task)
        return max(1, min(cpus, cores)), f"submitit cpus_per_task={cpus}"
    return None


def configure_threads(cfg: DictConfig) -> int:
    """Apply ``cfg.threads`` (null: auto) with ``torch.set_num_threads``; return the count.

    The count is logged at INFO so that a job's ``train.log`` says what it ran with.
    """
    threads = cfg.get("threads")
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise ConfigError(f"threads must be null (auto) or an integer >= 1, got {threads!r}")
    reason = "threads=" + str(threads)
    if threads is None:
        share = None
        if HydraConfig.initialized():  # tests call run() without Hydra: a single run
            share = launcher_share(HydraConfig.get().launcher, available_cores())
        threads, reason = share or (torch.get_num_threads(), "torch's default, one job at a time")
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%s) in process %d", threads, reason, os.getpid())
    return threads
