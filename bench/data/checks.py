"""Small helpers for validating ``dataset.*`` config values and resolving the data directory."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from bench.errors import ConfigError


def resolve_dir(path: str | Path | None) -> Path | None:
    """Absolute data directory: ``~`` expanded, relative paths taken from the working directory.

    Hydra in this project does not change the working directory, so ``./data`` means the folder
    the command was started from.
    """
    if path is None:
        return None
    return (Path.cwd() / Path(path).expanduser()).resolve()


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(ok: bool, key: str, allowed: str, value: Any) -> None:
    """Raise a one-line ``ConfigError`` naming ``dataset.<key>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"dataset.{key} must be {allowed}; got {value!r}")
