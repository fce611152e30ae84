"""A Hydra sweeper that searches a grid on validation data, then refits the chosen point.

The protocol of most published tables (Gal & Ghahramani's UCI experiments, scikit-learn's
``GridSearchCV(refit=True)``): for every combination of the *other* swept keys (a data split, a
seed), every point of the ``search`` keys trains and is scored on validation data; the best
point is then trained again with the ``refit`` overrides (typically on the whole training set,
validation folded in) and only those refits are reported. Both phases are ordinary jobs of one
sweep, launched through the configured launcher (``hydra/launcher=population`` trains each
phase as one batched program), so the same command resumes either phase where it stopped.

The choices, with every candidate's score, are written to ``refit.json`` in the sweep directory.
A grid job without the metric (failed, diverged) is not a candidate; a combination with no
candidate gets no refit, and says so.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve string annotations.
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from bench.atomic import write_text_atomic  # standard library only

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"  # the app's record of a job; ``metrics`` holds ``select``
CHOICES_FILE = "refit.json"
MODES = ("min", "max")


def key_of(override: str) -> str:
    """``dataset.split`` of ``dataset.split=3``, ``+protocol.p=1`` or ``~x``."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(value: Any) -> str:
    """A config value as Hydra's override grammar writes it (``false``, ``null``, ``0.5``,
    ``[val,test]``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    return str(value)


class RefitSweeper(BasicSweeper):
    """Hydra's basic sweeper for the grid (same ``params``, grammar and batching), then one
    refit job per combination of the non-searched keys."""

    def __init__(
        self,
        params: dict[str, str] | None = None,
        max_batch_size: int | None = None,
        search: list[str] | None = None,
        select: str = "val/loss",
        mode: str = "min",
        refit: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        if mode not in MODES:
            raise ConfigCompositionException(
                f"hydra.sweeper.mode must be one of {MODES}, got {mode!r}"
            )
        self.search = [str(k) for k in (search or [])]
        self.select, self.mode = select, mode
        refit = OmegaConf.to_container(refit) if OmegaConf.is_config(refit) else refit
        self.refit = {str(k): v for k, v in (refit or {}).items()}

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        swept = {
            o.get_key_element().lstrip("+~")
            for o in parser.parse_overrides([*self._parse_config(), *arguments])
            if o.is_sweep_override()
        }
        missing = [k for k in self.search if k not in swept]
        if not self.search or missing:
            raise ConfigCompositionException(
                f"hydra.sweeper.search must name swept keys (swept: {sorted(swept)}); "
                f"not swept: {missing or 'none named'}"
            )
        grid = super().sweep(arguments)  # every grid job, batch by batch
        jobs = [job for batch in grid for job in batch]
        choices = self.choose(jobs)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        text = json.dumps(self.describe(choices), indent=2) + "\n"
        write_text_atomic(sweep_dir / CHOICES_FILE, text)  # a crash never leaves half a file
        refits = [self.refit_overrides(c["overrides"], c["point"]) for c in choices if c["point"]]
        if not refits:
            log.error("refit: no grid point has %s; nothing to refit", self.select)
            return grid
        log.info(f"refit: {len(refits)} jobs, each the best of {self.search} by {self.select}")
        results = self.launcher.launch(refits, initial_job_idx=len(jobs))
        return [*grid, results]

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Skipped: Hydra's basic sweeper composes every job once here and the launcher once
        more to run it. A grid search is hundreds of jobs (a UCI reproduction 1,300, 0.1–0.4 s
        each); the population launcher composes them all before training any, so an error
        still comes first, and Hydra's other launchers report it at that job."""

    def choose(self, jobs: Sequence[JobReturn]) -> list[dict[str, Any]]:
        """The best grid point of each combination of the other swept keys, in job order."""
        groups: dict[tuple, dict[str, Any]] = {}
        for job in jobs:
            overrides = list(job.overrides or [])
            rest = tuple(o for o in overrides if key_of(o) not in self.search)
            point = [o for o in overrides if key_of(o) in self.search]
            group = groups.setdefault(rest, {"overrides": list(rest), "candidates": []})
            run_dir = str(OmegaConf.select(job.hydra_cfg, "hydra.runtime.output_dir"))
            value = read_metric(Path(run_dir) / RESULTS_FILE, self.select)
            group["candidates"].append({"point": point, "value": value, "run_dir": run_dir})
        sign = 1.0 if self.mode == "min" else -1.0
        for group in groups.values():
            scored = [c for c in group["candidates"] if c["value"] is not None]
            best = min(scored, key=lambda c: sign * c["value"]) if scored else None
            group["point"] = best["point"] if best else None
            group["value"] = best["value"] if best else None
            if best is None:
                log.error("refit: no grid point of %s has %s", " ".join(group["overrides"]),
                          self.select)  # fmt: skip
        return list(groups.values())

    def refit_overrides(self, rest: Sequence[str], point: Sequence[str]) -> list[str]:
        """The group's overrides with the chosen point, then the refit overrides (replacing a
        swept or command-line value of the same key, appended otherwise)."""
        replaced = {key_of(o) for o in rest} & set(self.refit)
        out = [o for o in rest if key_of(o) not in replaced] + list(point)
        out += [f"{k}={override_value(v)}" for k, v in self.refit.items()]
        return out

    def describe(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "select": self.select,
            "mode": self.mode,
            "search": self.search,
            "refit": self.refit,
            "groups": choices,
        }


def read_metric(path: Path, key: str) -> float | None:
    """``metrics[key]`` of a job's record; None when absent, unreadable or not finite."""
    try:
        value = json.loads(path.read_text()).get("metrics", {}).get(key)
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("refit: %s unreadable (%s); not a candidate", path, exc)
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
