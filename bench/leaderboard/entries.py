"""Runs → entries (one per configuration) → one selected hyperparameter point per method.

Selection is the point of the leaderboard: a regularizer at its default strength may simply be
too weak to act, so each method is compared at the hyperparameters with the best mean
**validation** metric over seeds. The test split is never looked at here — ``select`` refuses
any metric that is not a validation metric.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

from bench.errors import ConfigError
from bench.leaderboard.columns import better, direction
from bench.leaderboard.configs import flatten
from bench.leaderboard.model import Entry, Method, Run, Section


def group(runs: Iterable[Run]) -> list[Entry]:
    """One entry per configuration, sorted by section label, method label and hparams."""
    by_config: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_config[run.config_key].append(run)
    groups = [sorted(rs, key=lambda r: r.seed) for rs in by_config.values()]
    sections = _sections(groups)
    methods = _methods(groups)
    entries = [
        Entry(
            section=sections[rs[0].section_key],
            method=methods[rs[0].config_key],
            hparams=rs[0].hparams,
            runs=tuple(r for r in rs if r.status == "completed"),
            diverged=tuple(r for r in rs if r.status != "completed"),
        )
        for rs in groups
    ]
    return sorted(entries, key=entry_order)


def entry_order(e: Entry) -> tuple:
    return (e.section.label, e.section.key, e.method.label, sorted(e.hparams.items()))


def _sections(groups: list[list[Run]]) -> dict[str, Section]:
    """Sections labelled by the settings that tell them apart within a dataset/model."""
    members: dict[str, list[Run]] = defaultdict(list)
    for rs in groups:
        members[rs[0].section_key].append(rs[0])
    first = {key: runs[0] for key, runs in members.items()}
    flat = {key: flatten(json.loads(key)) for key in first}
    by_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, run in first.items():
        by_pair[(run.dataset, run.model)].append(key)
    out = {}
    for keys in by_pair.values():
        varying = _varying([flat[k] for k in keys])
        for key in keys:
            run = first[key]
            settings = {k: flat[key].get(k) for k in varying}
            out[key] = Section(key, run.dataset, run.model, _task(members[key]), settings)
    return out


def _task(runs: list[Run]) -> str:
    has_acc = any(r.metrics.get("test/acc") is not None or "val/acc" in r.metrics for r in runs)
    return "classification" if has_acc else "regression"


def _methods(groups: list[list[Run]]) -> dict[str, Method]:
    """config key -> Method; options and swept hyperparameters compared across the input."""
    by_names: dict[tuple[str, ...], list[Run]] = defaultdict(list)
    for rs in groups:
        by_names[rs[0].regularizers].append(rs[0])
    out = {}
    for names, runs in by_names.items():
        options = _varying([r.options for r in runs])
        swept = _varying([r.hparams for r in runs])
        for run in runs:
            chosen = tuple((k, run.options.get(k, "absent")) for k in options)
            out[run.config_key] = Method(names, chosen, swept)
    return out


def _varying(dicts: list[dict]) -> tuple[str, ...]:
    """The keys whose value is not the same in every dict (missing counts as a value)."""
    keys = sorted({k for d in dicts for k in d})
    missing = object()
    return tuple(k for k in keys if len({repr(d.get(k, missing)) for d in dicts}) > 1)


def select(entries: list[Entry], metric: str, required: bool = True) -> list[Entry]:
    """Mark, per section and method, the entry with the best mean of ``metric`` over seeds.
    (``required=False``: when no record has ``metric``, select nothing rather than refuse.)

    Only validation metrics may select (``val/loss``, ``ts/val/nll``). Configurations with a
    diverged seed are not selectable. Ties go to the first entry in ``entry_order``, so the
    choice is deterministic. Returns the selected entries.
    """
    if "val" not in metric.split(":", 1)[0].split("/")[:-1]:
        raise ConfigError(
            f"--select {metric}: hyperparameters are chosen on validation data only; "
            "use a val/ metric such as val/loss or val/acc"
        )
    way = direction(metric)
    metric = metric.split(":", 1)[0]
    if any(e.runs for e in entries) and not any(e.stat(metric).n for e in entries):
        if not required:
            return []
        raise ConfigError(f"--select {metric}: no record has this metric")
    best: dict[tuple[str, str], Entry] = {}
    for entry in entries:
        entry.selected = False
        mean = entry.stat(metric).mean
        if entry.diverged or mean is None:
            continue
        slot = (entry.section.key, entry.method.label)
        held = best.get(slot)
        if held is None or better(mean, held.stat(metric).mean, way):
            best[slot] = entry
    for entry in best.values():
        entry.selected = True
    return sorted(best.values(), key=entry_order)
