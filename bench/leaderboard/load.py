"""Find every ``results.json`` below the given paths and load the usable ones.

Nothing a sweep leaves behind may crash the leaderboard: a truncated, empty, foreign, failed or
duplicated file becomes a :class:`Problem` (path and reason) and is left out. Only a path that
does not exist, or holds no record at all, stops it — with one line.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.leaderboard import configs
from bench.leaderboard.model import Problem, Run
from bench.record import RESULTS_FILE, read_record

_GLOB_CHARS = "*?["
_FIELDS = ("best_epoch", "sparsity", "epochs", "stopped_epoch", "wall_time_s", "diverged_at")


def find_files(paths: Sequence[str]) -> list[str]:
    """Every results.json below ``paths`` (directories, files or globs), sorted, once each."""
    if not paths:
        raise ConfigError("bench-leaderboard needs at least one DIR, file or GLOB")
    found: dict[str, str] = {}
    for arg in paths:
        matches = sorted(glob.glob(arg, recursive=True)) if _is_glob(arg) else [arg]
        if _is_glob(arg) and not matches:
            raise ConfigError(f"no path matches {arg}")
        files = [f for m in matches for f in _walk(m)]
        if not files:
            raise ConfigError(f"no {RESULTS_FILE} under {arg}")
        for f in files:
            found.setdefault(os.path.abspath(f), f)  # overlapping arguments
    return sorted(found.values())


def _is_glob(arg: str) -> bool:
    return any(c in arg for c in _GLOB_CHARS) and not os.path.exists(arg)


def _walk(path: str) -> Iterable[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ConfigError(f"no such file or directory: {path}")
    out = []
    for root, dirs, files in os.walk(path):
        if RESULTS_FILE in files:
            out.append(os.path.join(root, RESULTS_FILE))
            dirs.clear()  # a run directory is a leaf: below it lie checkpoints, wandb, .hydra
    return out


def load_runs(files: Sequence[str]) -> tuple[list[Run], list[Problem]]:
    """The usable runs (completed or diverged) and a problem for every other file.

    Of several runs with the same configuration and seed the first by path is kept and the
    others are reported as duplicates — averaging both would count one seed twice.
    """
    runs: list[Run] = []
    problems: list[Problem] = []
    first: dict[tuple[str, int], str] = {}
    for path in sorted(files):
        record, reason = read_record(path)
        if record is None:
            kind = "foreign" if reason.startswith("not a regbench") else _kind(reason)
            problems.append(Problem(path, kind, reason))
            continue
        if record["status"] == "failed":
            problems.append(Problem(path, "failed", f"failed run: {_line(record['error'])}"))
            continue
        if record["status"] == "interrupted":
            at = record["interrupted"]
            why = f"interrupted by {at.get('signal')} at epoch {at['epoch']}; run again to resume"
            problems.append(Problem(path, "interrupted", why))
            continue
        run = to_run(record, path)
        key = (run.config_key, run.seed)
        if key in first:
            reason = f"duplicate of {first[key]} (same configuration and seed {run.seed})"
            problems.append(Problem(path, "duplicate", reason))
            continue
        first[key] = path
        runs.append(run)
    return runs, problems


def to_run(record: dict[str, Any], path: str) -> Run:
    """A valid completed/diverged record as a :class:`Run` (the config reduced to its keys)."""
    run_dir = str(Path(path).parent)
    config = record["config"]
    stripped = configs.strip(config, configs.run_dirs(config, run_dir, os.path.abspath(run_dir)))
    if "regularizer" not in stripped:  # a hand-made config: the record's list is the method
        stripped["regularizer"] = {name: {} for name in record["regularizers"]}
    names, hparams, options = configs.split_regularizers(stripped["regularizer"])
    section = {k: v for k, v in stripped.items() if k != "regularizer"}
    return Run(
        path=path,
        run_dir=run_dir,
        status=record["status"],
        seed=record["seed"],
        dataset=record["dataset"],
        model=record["model"],
        config_key=configs.canonical(stripped),
        section_key=configs.canonical(section),
        regularizers=names,
        hparams=hparams,
        options=options,
        metrics=record["metrics"],
        fields={k: record[k] for k in _FIELDS if k in record},
        published=config.get("published") if isinstance(config.get("published"), dict) else None,
    )


def _kind(reason: str) -> str:
    return "unreadable" if reason.startswith("unreadable") else "malformed"


def _line(text: str, limit: int = 160) -> str:
    first = (text.strip().splitlines() or [""])[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."
