"""Command-line secrets leave the config before Hydra writes, logs or pickles it.

A value whose key is named like a secret (``bench.results.SECRET_NAME``), given on the command
line (``+extra_api_key=...``), would otherwise be written in clear into ``.hydra/config.yaml``,
``overrides.yaml``, ``hydra.yaml`` (``override_dirname``), ``multirun.yaml``, submitit's pickled
jobs and wandb's recorded command line. Hydra calls ``on_run_start``/``on_multirun_start``
before any of these exist, so this callback moves each such value into an environment variable
(``BENCH_SECRET_<KEY>``) and rewrites the override to ``${oc.env:BENCH_SECRET_<KEY>}``.

Every file then holds the reference; the job resolves the real value when it reads the key.
Jobs in other processes get it the way they get ``WANDB_API_KEY``: from the inherited
environment (submitit's local executor starts children of this process; ``sbatch`` exports the
submitting environment unless a cluster sets ``SBATCH_EXPORT``/``--export`` otherwise).
Because the variable's name holds SECRET, ``bench.results.scrub`` also redacts any value that
contains it (an interpolation such as ``+note=${extra_api_key}``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from bench.errors import ConfigError
from bench.results import SECRET_NAME

ENV_PREFIX = "BENCH_SECRET_"
_EXCLUDE = "hydra.job.config.override_dirname.exclude_keys"


def env_name(key: str) -> str:
    """The environment variable that carries the value of config key ``key``."""
    return ENV_PREFIX + re.sub(r"\W", "_", key).upper()


def env_reference(key: str) -> str:
    return "${oc.env:" + env_name(key) + "}"


def is_secret(override: Override) -> bool:
    """A task override that sets (not deletes) a key named like a secret."""
    return (
        not override.is_hydra_override()
        and override.type != OverrideType.DEL
        and SECRET_NAME.search(override.key_or_group) is not None
    )


def move_to_env(
    lines: list[str], environ: MutableMapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Override lines with each secret value moved into ``environ``; also the keys moved.

    A line that already holds the reference is left alone, so a second call changes nothing.
    """
    environ = os.environ if environ is None else environ
    parsed = OverridesParser.create().parse_overrides(lines)
    out, keys = [], []
    for line, override in zip(lines, parsed, strict=True):
        if not is_secret(override):
            out.append(line)
            continue
        key = override.key_or_group
        if override.is_sweep_override():
            raise ConfigError(
                f"{key} is a secret and cannot be swept ({line}); give one value, "
                "it is passed to the jobs through the environment"
            )
        value = override.value()
        reference = env_reference(key)
        if value != reference:
            if not isinstance(value, str | int | float | bool):
                raise ConfigError(f"{key} is a secret: give one plain value, not {line}")
            environ[env_name(key)] = str(value)
        out.append(f"{override.get_key_element()}={reference}")
        keys.append(key)
    return out, keys


def hide_secrets(config: DictConfig, environ: MutableMapping[str, str] | None = None) -> None:
    """Rewrite the composed ``config`` (task node, Hydra's records) to hold references only."""
    old = _lines(config.hydra.overrides.task)
    new, keys = move_to_env(old, environ)
    if not keys:
        return
    multirun = config.hydra.mode == RunMode.MULTIRUN
    with read_write(config), open_dict(config):
        config.hydra.overrides.task = new
        for key in keys:  # the job resolves the reference when it reads the key
            OmegaConf.update(config, key, env_reference(key), merge=False, force_add=True)
        # override_dirname would hold the reference, which resolves to the value wherever it is
        # read (a sweep subdir named after it): the secret keys are left out of it.
        exclude = sorted({*config.hydra.job.config.override_dirname.exclude_keys, *keys})
        config.hydra.job.config.override_dirname.exclude_keys = exclude
        config.hydra.job.override_dirname = _dirname(config, new)
        if multirun:  # each job is composed anew from these lines: it must exclude them too
            hydra_lines = [s for s in _lines(config.hydra.overrides.hydra) if _EXCLUDE not in s]
            config.hydra.overrides.hydra = [*hydra_lines, f"{_EXCLUDE}=[{','.join(exclude)}]"]
    # Hydra keeps a copy of the hydra node (handed to submitit's pickled jobs): refresh it.
    HydraConfig.instance().set_config(config)
    # wandb records sys.argv; Lightning's DDP re-runs it for the other ranks (which inherit the
    # environment, so the reference resolves there too).
    replace = dict(zip(old, new, strict=True))
    sys.argv[1:] = [replace.get(arg, arg) for arg in sys.argv[1:]]


def _lines(node: Any) -> list[str]:
    """Override lines as typed: iterating the ListConfig would resolve ``${...}`` in them."""
    return [str(s) for s in OmegaConf.to_container(node, resolve=False)]


def _dirname(config: DictConfig, lines: list[str]) -> str:
    """``hydra.job.override_dirname`` as Hydra computes it (config_loader_impl)."""
    settings = config.hydra.job.config.override_dirname
    items = sorted(
        o.input_line
        for o in OverridesParser.create().parse_overrides(lines)
        if o.key_or_group not in settings.exclude_keys
    )
    return settings.item_sep.join(items).replace("=", settings.kv_sep)


class SecretsCallback(Callback):
    """Configured under ``hydra.callbacks.secrets`` in ``conf/train.yaml``."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        hide_secrets(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hide_secrets(config)
