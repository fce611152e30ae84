"""What the final evaluation will do, resolved and checked from ``cfg.evaluation`` before training.

Every bad value here (an unknown OOD partner, a partner whose files are missing when asked for
explicitly, an unknown corruption) is one ``ConfigError`` line before any data is loaded; the
sets themselves are built after training (``EvalPlan.settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench.data.base import resolve_dir
from bench.data.ood import check_ood, load_ood, ood_available
from bench.data.shift import check_corruptions, default_corruptions
from bench.errors import ConfigError
from bench.evaluate import EvalSettings
from bench.uncertainty.base import Predictor

SPLITS = ("train", "val", "test")


@dataclass
class EvalPlan:
    splits: tuple[str, ...]
    partners: tuple[str, ...]
    data_dir: Path | None
    ood_max_samples: int
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    shift_max_samples: int | None
    seed: int
    plots: bool

    def settings(self, datamodule) -> EvalSettings:
        """Build the OOD sets (after training: they need the training statistics)."""
        ood = {
            name: load_ood(datamodule, name, self.data_dir, self.ood_max_samples, self.seed)
            for name in self.partners
        }
        return EvalSettings(
            splits=self.splits,
            ood=ood,
            corruptions=self.corruptions,
            severities=self.severities,
            shift_max_samples=self.shift_max_samples,
            seed=self.seed,
            batch_size=datamodule.eval_batch_size,
        )


def _list(node: Any) -> list:
    return list(OmegaConf.to_object(node)) if OmegaConf.is_config(node) else list(node)


def _positive_int(value: Any, key: str, allow_null: bool = False) -> int | None:
    if allow_null and value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        more = " or null (all)" if allow_null else ""
        raise ConfigError(f"{key} must be an integer >= 1{more}, got {value!r}")
    return value


def plan_evaluation(cfg: DictConfig, datamodule) -> EvalPlan:
    """Resolve ``auto`` settings for this dataset and refuse bad ones, without loading data."""
    ev = cfg.get("evaluation") or {}
    splits = tuple(_list(ev.get("splits", SPLITS)))
    if "test" not in splits or not set(splits) <= set(SPLITS):
        raise ConfigError(
            f"evaluation.splits must be a subset of {list(SPLITS)} containing test, got "
            f"{list(splits)}"
        )
    ood = ev.get("ood") or {}
    data_dir = resolve_dir(ood.get("data_dir"))
    partners = ood.get("partners", "auto")
    if partners == "auto":  # the dataset's partners whose files are here; silently none else
        partners = [p for p in datamodule.ood_partners if ood_available(datamodule, p, data_dir)]
    else:  # asked for explicitly: each must exist
        partners = _list(partners or [])
        check_ood(datamodule, partners, data_dir)
    shift = ev.get("shift") or {}
    corruptions = shift.get("corruptions", "auto")
    if corruptions == "auto":
        corruptions = list(default_corruptions(datamodule))
    else:
        corruptions = _list(corruptions or [])
        check_corruptions(datamodule, corruptions)
    severities = _list(shift.get("severities", [1, 2, 3, 4, 5]))
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 5 for s in severities):
        raise ConfigError(
            f"evaluation.shift.severities must be integers in [0, 5], got {severities}"
        )
    seed = ev.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"evaluation.seed must be an integer >= 0, got {seed!r}")
    return EvalPlan(
        splits=splits,
        partners=tuple(partners),
        data_dir=data_dir,
        ood_max_samples=_positive_int(ood.get("max_samples", 10000), "evaluation.ood.max_samples"),
        corruptions=tuple(corruptions),
        severities=tuple(severities),
        shift_max_samples=_positive_int(
            shift.get("max_samples"), "evaluation.shift.max_samples", allow_null=True
        ),
        seed=seed,
        plots=bool(ev.get("plots", True)),
    )


def build_predictors(cfg: DictConfig, callbacks: list) -> list[Predictor]:
    """The configured predictors, then those contributed by callbacks (MC dropout)."""
    nodes = (cfg.get("evaluation") or {}).get("predictors") or {}
    predictors = [instantiate(node) for node in nodes.values() if node is not None]
    predictors += [cb.predictor() for cb in callbacks if callable(getattr(cb, "predictor", None))]
    return predictors
