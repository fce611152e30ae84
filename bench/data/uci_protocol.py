"""The published UCI protocol's per-set values as config interpolations: ``${uci:<file>,...}``.

Gal & Ghahramani's grids differ between sets (τ ∈ {0.1, 0.15, 0.2} for Boston, {2.5, 3, 3.5} for
wine ...), as do the hidden width (100 for Protein) and the base epochs; they live in small files
beside each set's data (``tau_values.txt``, ``dropout_rates.txt``, ``n_hidden.txt``,
``n_epochs.txt``). A sweep therefore runs over grid *indices*, and the experiment config reads
the values from the run's own data set, so one command covers several sets with the files as
the single source of the numbers:

    noise_precision: ${uci:tau_values,${protocol.tau_index}}
    trainer: {max_epochs: "${uci:n_epochs,0,${protocol.epochs_factor}}"}
"""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.data.checks import resolve_dir
from bench.data.uci import canonical_name, default_data_dir, read_numbers
from bench.errors import ConfigError

COUNTS = ("n_hidden", "n_epochs", "n_splits")  # whole numbers: returned as int
FILES = (*COUNTS, "dropout_rates", "tau_values")


def protocol_value(file: str, index: int = 0, factor: int = 1, *, _root_: DictConfig) -> float:
    """Entry ``index`` of ``<data_dir>/<dataset.name>/<file>.txt``, times ``factor``: an int
    for the counts (epochs, widths), a float for the grids."""
    if file not in FILES:
        raise ConfigError(f"${{uci:{file}}}: the file must be one of {', '.join(FILES)}")
    dataset = _root_.dataset
    root = resolve_dir(dataset.get("data_dir") or default_data_dir())
    path = root / str(canonical_name(dataset.name)) / f"{file}.txt"
    if not path.is_file():
        raise ConfigError(
            f"dataset.data_dir: {path} not found (the UCI protocol's {file} for ${{uci:}})"
        )
    values = _numbers(str(path))
    if not (isinstance(index, int) and 0 <= index < len(values)):
        raise ConfigError(
            f"${{uci:{file},{index}}}: {path.name} has {len(values)} values (index 0.."
            f"{len(values) - 1})"
        )
    value = float(values[index]) * factor
    return round(value) if file in COUNTS else value


@functools.lru_cache(maxsize=256)
def _numbers(path: str) -> tuple[float, ...]:
    """A protocol file's numbers, read once per process: every job of a 1,300-job sweep resolves
    the same few files several times (its config, its run identity)."""
    return tuple(read_numbers(Path(path)).tolist())


def register_resolvers() -> None:
    """Make ``${uci:...}`` available (idempotent)."""
    if not OmegaConf.has_resolver("uci"):
        OmegaConf.register_new_resolver("uci", protocol_value)
