"""A run's directory from its configuration, so that the same command finds the same directory.

Hydra names output directories by the clock (``runs/2026-12-01/14-05-33``), so running a command
again after a preemption or a Ctrl-C starts over somewhere new. Here a run's directory is a
readable prefix plus a short hash of what the run computes:

    outputs/runs/digits-mlp-l2-s0-80f8b34c/                  a single run
    outputs/multiruns/benchmark-c5958574/digits-mlp-l2-s0-80f8b34c/   a job of a sweep

The hash covers the resolved configuration except what does not change the computation: where
files live (``paths``, any key ending in ``dir``/``path``/``root``), how it is logged
(``logger``, the progress bar), CPU threads, ``resume`` and ``optimized_metric``. A sweep's
directory hashes the command line's overrides (Hydra's launcher/sweeper choices excluded: a
sweep stopped on a laptop resumes on Slurm). ``resume=false`` adds the start time, so a fresh
run goes to a new directory and nothing that exists is touched.

Both are OmegaConf resolvers (``${bench_run_id:}``, ``${bench_sweep_id:}``) used by
``hydra.run.dir``, ``hydra.sweep.dir`` and ``hydra.sweep.subdir`` in ``conf/train.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

HASH_CHARS = 8
# Top-level groups and keys that say how a run is observed, not what it computes.
NOT_IDENTITY = ("hydra", "paths", "logger", "threads", "resume", "checkpoint", "optimized_metric")
NESTED_NOT_IDENTITY = {("trainer", "enable_progress_bar")}
PATH_KEY = re.compile(r"(dir|dirpath|path|root)$", re.IGNORECASE)
DATA_KEYS = ("data_dir",)  # where data is read from: not identity, but values may come from it
_STARTED = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")  # one per process, like Hydra's ${now:}


def identity(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The part of a configuration that determines what a run computes, resolved."""
    data = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    kept = {k: v for k, v in data.items() if k not in NOT_IDENTITY}
    # Resolve without `paths` (its run_dir is the very directory being named); keys that point
    # at files are dropped before resolving, so nothing reaches for the output directory — all
    # but `data_dir`, which values may be read from (${uci:tau_values,1}), dropped after.
    node = OmegaConf.create(_drop_paths(kept, keep=DATA_KEYS))
    resolved = _drop_paths(OmegaConf.to_container(node, resolve=True))
    for group, key in NESTED_NOT_IDENTITY:
        if isinstance(resolved.get(group), dict):
            resolved[group].pop(key, None)
    return resolved


def _drop_paths(value: Any, keep: tuple[str, ...] = ()) -> Any:
    if isinstance(value, dict):
        return {
            k: _drop_paths(v, keep)
            for k, v in value.items()
            if k in keep or not (isinstance(k, str) and PATH_KEY.search(k))
        }
    if isinstance(value, list):
        return [_drop_paths(v, keep) for v in value]
    return value


def config_hash(cfg: DictConfig | dict[str, Any]) -> str:
    """Short, stable hash of :func:`identity` (key order does not matter)."""
    text = json.dumps(identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def readable_prefix(cfg: DictConfig) -> str:
    """``digits-mlp-l2+dropout-s0``: what a person looks for when listing a sweep directory."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    regs = "+".join(str(k) for k in (cfg.get("regularizer") or {})) or "none"
    dataset = str(choices.get("dataset") or "data")
    node = cfg.get("dataset")
    if isinstance(node, DictConfig):  # one config for several sets: uci-yacht-k3
        if isinstance(node.get("name"), str):
            dataset += f"-{node.name}"
        if node.get("split") is not None:
            dataset += f"-k{node.split}"
    parts = [
        dataset,
        choices.get("model") or "model",
        regs,
        f"s{cfg.get('seed')}",
    ]
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", "-".join(str(p) for p in parts))


def run_id(*, _root_: DictConfig) -> str:
    """``<prefix>-<hash>``; a single run with ``resume=false`` also gets its start time."""
    name = f"{readable_prefix(_root_)}-{config_hash(_root_)}"
    multirun = str(OmegaConf.select(_root_, "hydra.mode", default="")) == "RunMode.MULTIRUN"
    if not multirun and not _root_.get("resume", True):
        name += f"-{_STARTED}"
    return name


def sweep_name(config: DictConfig) -> str:
    """``<experiment or 'sweep'>-<hash of the command line's overrides>`` of a multirun's
    (launcher-side) config, whose ``hydra.overrides.task`` still holds ``seed=0,1,2``."""
    overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=None) or [])
    kept = sorted(o for o in overrides if not _is_launch_override(o))
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:HASH_CHARS]
    experiment = OmegaConf.select(config, "hydra.runtime.choices.experiment", default=None)
    name = f"{experiment or 'sweep'}-{digest}".replace("/", "_")
    if not config.get("resume", True):
        name += f"-{_STARTED}"
    return name


_SWEEP: dict[str, str] = {}  # set once per multirun, in the launching process


class SweepIdentity(Callback):
    """Names the sweep directory when a multirun starts (a Hydra callback, conf/train.yaml).

    A job's config holds only its own overrides (``seed=1``), so the name must be computed
    once, from the launcher's config, before the launcher resolves ``hydra.sweep.dir``.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _SWEEP["id"] = sweep_name(config)


def sweep_id() -> str:
    """The resolver behind ``${bench_sweep_id:}``; cached like Hydra's ``${now:}`` (Hydra copies
    the launcher's resolver cache into every job's config, and submitit pickles it along)."""
    return _SWEEP.get("id", "sweep")


def _is_launch_override(override: str) -> bool:
    """Overrides that change how or where a sweep runs, not which runs it holds."""
    key = override.lstrip("+~").split("=", 1)[0]
    top = key.split(".", 1)[0].split("/", 1)[0]
    return top in NOT_IDENTITY or key == "trainer.enable_progress_bar"


def register_resolvers() -> None:
    """Make ``${bench_run_id:}`` and ``${bench_sweep_id:}`` available (idempotent). The run
    id is per job and never cached; the sweep id is cached (see :func:`sweep_id`)."""
    if not OmegaConf.has_resolver("bench_run_id"):
        OmegaConf.register_new_resolver("bench_run_id", run_id)
    if not OmegaConf.has_resolver("bench_sweep_id"):
        OmegaConf.register_new_resolver("bench_sweep_id", sweep_id, use_cache=True)
