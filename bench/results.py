"""The results record: one ``results.json`` per run, written atomically, free of secrets.

Leaderboards read these files, so a half-written or secret-bearing file must never exist:
every write goes to a temporary file in the same directory and is renamed into place.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import write_bytes_atomic
from bench.record import RESULTS_FILE  # defined once, with the schema

__all__ = ["RESULTS_FILE", "read_results", "scrub", "versions", "write_json_atomic"]

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
REDACTED = "<redacted>"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Strict JSON (non-finite floats become null), then an atomic rename."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=False, allow_nan=False)
    write_bytes_atomic(Path(path), (text + "\n").encode())


def write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(Path(path), buffer.getvalue())


def read_results(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if there is none (or it is unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def secret_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of environment variables whose names say they are secrets."""
    environ = os.environ if environ is None else environ
    return {v for k, v in environ.items() if SECRET_NAME.search(k) and len(v) >= 4}


def scrub(obj: Any, secrets: set[str] | None = None) -> Any:
    """Redact secret-named keys and any value that contains a secret environment value."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {
            k: (
                REDACTED
                if SECRET_NAME.search(str(k)) and v not in (None, "")
                else scrub(v, secrets)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str) and any(s in obj for s in secrets):
        return REDACTED
    return obj


def versions() -> dict[str, str]:
    """Versions of Python and of the packages whose behaviour the numbers depend on."""
    out = {"python": platform.python_version()}
    for dist in (
        "regbench",
        "torch",
        "torchvision",
        "lightning",
        "hydra-core",
        "torchmetrics",
        "numpy",
        "scikit-learn",
        "wandb",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
