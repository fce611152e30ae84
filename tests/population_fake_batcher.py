"""A batcher for the population launcher's tests:
``hydra.launcher.batcher=tests.population_fake_batcher``.

Jobs with the same ``group`` key train together; a job without one runs on its own. Each
``train_group`` call appends what it saw to ``calls_file`` (one JSON line), so a test reads back
which jobs shared a program; ``fail: true`` makes training raise. The task functions it returns
say which path ran, for which job, with which HydraConfig set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def group_key(cfg: DictConfig) -> tuple[Hashable | None, str]:
    group = cfg.get("group")
    if group is None:
        return None, "no `group` key"
    return ("fake", group), f"fake group {group}"


def member_memory_mb(cfg: DictConfig) -> float:
    return float(cfg.get("member_mb", 1000))


def train_group(configs: list[DictConfig]) -> list[Callable[[DictConfig], Any]]:
    first = configs[0]
    seen = {
        "jobs": [int(c.hydra.job.num) for c in configs],
        "hydra_job": int(HydraConfig.get().job.num),  # the FIRST job's, says the protocol
        "dirs": [str(c.hydra.runtime.output_dir) for c in configs],
        "where": str(first.where),  # ${hydra:runtime.output_dir}, resolved for the first job
        "dirs_exist": [Path(c.hydra.runtime.output_dir).exists() for c in configs],
    }
    with open(first.calls_file, "a") as f:
        f.write(json.dumps(seen) + "\n")
    if any(c.get("fail") for c in configs):
        raise RuntimeError("fake training failed")
    return [_task(cfg, len(configs)) for cfg in configs]


def _task(cfg: DictConfig, population: int) -> Callable[[DictConfig], Any]:
    def task(task_cfg: DictConfig) -> dict[str, Any]:
        job = int(HydraConfig.get().job.num)
        (Path(HydraConfig.get().runtime.output_dir) / "batched.txt").write_text(str(job))
        # trained_x: what train_group saw for this function; x: what run_job handed it
        return {
            "path": "batched",
            "trained_x": cfg.x,
            "x": task_cfg.x,
            "job": job,
            "of": population,
        }

    return task
