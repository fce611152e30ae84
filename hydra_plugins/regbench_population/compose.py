"""Hydra's per-job composition, once per config-group structure instead of once per job.

A sweep's jobs usually differ only in values (``seed=3``, ``dataset.split=7``): their defaults
trees are identical, yet ``ConfigLoader.load_sweep_config`` rebuilds the tree, reads and merges
every yaml for each job — 0.15–0.45 s a job here, minutes for the 1,300 jobs of a reproduction.
Hydra itself splits an override list in two: overrides that choose config groups (they shape
the defaults tree) and the rest, which it applies to the composed config afterwards
(``_apply_overrides_to_config``). ``SweepComposer`` does the same, caching the first part:
the config is composed once per distinct set of group overrides (the *template*), then each job
gets a copy with its value overrides applied by Hydra's own function, and the job fields Hydra
derives from the override list (``hydra.overrides.task``, ``hydra.job.override_dirname``) set
as Hydra sets them. The result equals ``load_sweep_config``'s (tests/test_perf_reproduction.py
compares them); anything unusual (deletions, Hydra's own keys) takes the full path.
"""

# No `from __future__ import annotations`: Hydra's plugin scan imports this package's modules.
import copy
from collections.abc import Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict


class SweepComposer:
    """``compose(overrides)`` == ``loader.load_sweep_config(master, overrides)``, faster."""

    def __init__(self, loader: ConfigLoaderImpl, master: DictConfig) -> None:
        self.loader, self.master = loader, master
        self.parser = OverridesParser.create(config_loader=loader)
        self.templates: dict[tuple[str, ...], DictConfig] = {}

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        if any(self._needs_full_path(o) for o in parsed):
            return self.loader.load_sweep_config(self.master, list(overrides))
        groups = tuple(o.input_line for o in parsed if self._is_group(o))
        values = [o for o in parsed if not self._is_group(o)]
        if groups not in self.templates:
            self.templates[groups] = self.loader.load_sweep_config(self.master, list(groups))
        cfg = copy.deepcopy(self.templates[groups])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in parsed]
            job.override_dirname = get_overrides_dirname(
                overrides=parsed,
                kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=job.config.override_dirname.exclude_keys,
            )
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg

    def _is_group(self, override: Override) -> bool:
        """Chooses a config (``dataset=uci``, ``+grid=l2``, ``model@x=mlp``) rather than a value."""
        return override.package is not None or self.loader.repository.group_exists(
            override.key_or_group
        )

    @staticmethod
    def _needs_full_path(override: Override) -> bool:
        """Deletions and Hydra's own keys: left to Hydra's composition, job by job."""
        return override.is_delete() or override.key_or_group.split(".")[0].startswith("hydra")
