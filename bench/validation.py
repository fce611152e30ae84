"""Checks of the core config values, run before any data is loaded.

Each component validates its own arguments in its constructor (datamodules, models,
regularizers); this table covers the values that are only read later (optimizer, trainer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# key → (predicate, what is allowed). Missing keys are skipped: not every optimizer has momentum.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "resume": (lambda v: isinstance(v, bool), "true or false"),
    "compile": (lambda v: isinstance(v, bool), "true or false"),
    "channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "check_finite_every": (
        lambda v: v is None or (_is_int(v) and v >= 1),
        "null or an integer >= 1",
    ),
    "checkpoint.every_n_epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "checkpoint.keep": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "checkpoint.min_interval_s": (
        lambda v: v is None or (_is_number(v) and v >= 0),
        "null (auto) or a number >= 0 (seconds)",
    ),
    "noise_precision": (
        lambda v: _is_number(v) and 0 < v < float("inf"),
        "null (the training MSE) or a finite number > 0 (τ, original units)",
    ),
    "ensemble.members": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "ensemble.bootstrap": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.max_epochs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "trainer.enable_progress_bar": (
        lambda v: v is True or v is False or v == "auto",
        "auto (a bar on a terminal, one line per epoch otherwise), true or false",
    ),
    "trainer.accumulate_grad_batches": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "optimizer.lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "optimizer.momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.dampening": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.eps": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "optimizer.betas": (
        lambda v: len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
        "two numbers in [0, 1)",
    ),
    "optimizer.weight_decay": (
        lambda v: _is_number(v) and v >= 0,
        "a number >= 0 (use regularizer=[weight_decay] or [l2] to regularize)",
    ),
}


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming the first invalid core key and what it allows."""
    for key, (ok, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if not isinstance(value, str | int | float | bool):
            value = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
        try:
            valid = ok(value)
        except TypeError:
            valid = False
        if not valid:
            raise ConfigError(f"{key} must be {allowed}, got {value!r}")
    if cfg.get("noise_precision") is not None and cfg.get("heteroscedastic"):
        raise ConfigError(
            "noise_precision is the fixed noise of a mean-only regression network; "
            "heteroscedastic=true predicts its own variance: set one of them"
        )
