"""From a record's resolved config to its grouping keys: configuration, section, method.

A *configuration* is the config minus what does not change the result: ``seed`` (runs that
differ only in seed are one entry with n seeds), where the run wrote its files (``paths``, and
every string holding the record's own run directory — checkpoint dirpath, logger save_dir,
trainer default_root_dir), where the data is read from (``data_dir`` keys) and how it is logged
(``logger``: wandb names and groups differ per run and per sweep) and which published table it
reproduces (``published``: a paper's numbers, not a setting). A *section* is the
configuration minus ``regularizer``; a *method* is the regularizer set, whose numeric options
are its hyperparameters.
"""

from __future__ import annotations

import json
from typing import Any

from bench.record import flatten

__all__ = ["canonical", "flatten", "run_dirs", "split_regularizers", "strip"]

IGNORED_TOP = ("seed", "paths", "logger", "published")
IGNORED_ANYWHERE = ("data_dir",)


def canonical(obj: Any) -> str:
    """One string per distinct value: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def run_dirs(config: dict[str, Any], *found: str) -> tuple[str, ...]:
    """The spellings of the record's own run directory (as found, and as configured)."""
    paths = config.get("paths")
    configured = paths.get("run_dir") if isinstance(paths, dict) else None
    dirs = set(found)
    if isinstance(configured, str):
        dirs.add(configured)
    # A relative or root directory would be a substring of unrelated values.
    return tuple(sorted(d for d in dirs if len(d.strip("/.")) > 1))


def strip(config: dict[str, Any], dirs: tuple[str, ...]) -> dict[str, Any]:
    """The configuration without seed, logger, paths, data_dir keys and run-dir strings."""
    return {
        k: _strip(v, dirs) for k, v in config.items() if k not in IGNORED_TOP and _keep(k, v, dirs)
    }


def _keep(key: str, value: Any, dirs: tuple[str, ...]) -> bool:
    if key in IGNORED_ANYWHERE:
        return False
    return not (isinstance(value, str) and any(d in value for d in dirs))


def _strip(value: Any, dirs: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, dirs) for k, v in value.items() if _keep(k, v, dirs)}
    if isinstance(value, list):
        return [_strip(v, dirs) for v in value if _keep("", v, dirs)]
    return value


def split_regularizers(
    node: Any,
) -> tuple[tuple[str, ...], dict[str, float], dict[str, str]]:
    """(sorted names, numeric options as hyperparameters, other options as JSON text).

    ``_target_`` is left out (it follows from the name). Booleans are options, not
    hyperparameters: ``dropout.mc`` switches a variant on or off, it has no strength.
    """
    if not isinstance(node, dict):
        return (), {}, {}
    hparams: dict[str, float] = {}
    options: dict[str, str] = {}
    for name in sorted(node):
        for key, value in sorted(flatten(node[name], name).items()):
            if key.endswith("._target_"):
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                hparams[key] = value
            else:
                options[key] = canonical(value)
    return tuple(sorted(node)), hparams, options
