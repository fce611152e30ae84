"""The two boards: rows per section, ranked, compared with the baseline, ties marked.

- **gap**: one row per selected entry (deterministic predictions), ranked by ``gap/loss`` with
  test accuracy beside it;
- **calibration**: one row per (selected entry, prediction type it has: deterministic, mc, ts,
  ens) plus ``ens-of-seeds`` rows, ranked by test NLL (a proper scoring rule), ECE beside it.

Every difference against the baseline is paired by seed and taken against the baseline
method's deterministic predictions. The leader is the best-ranked selected row; another row
*ties* it when their 95 % intervals overlap. With fewer than two seeds there is no interval and
no winner is declared (``undecided``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from bench.leaderboard.columns import (
    CALIBRATION_COLUMNS,
    DEFAULT_SORT,
    GAP_COLUMNS,
    UNDERFIT,
    direction,
)
from bench.leaderboard.ensembles import SeedEnsemble
from bench.leaderboard.model import (
    ENS_OF_SEEDS,
    PREDICTIONS,
    Board,
    BoardSection,
    Entry,
    Options,
    Row,
    Section,
)
from bench.leaderboard.stats import Stat, paired

TITLES = {"gap": "Generalization gap", "calibration": "Calibration"}
_ORDER = [*PREDICTIONS, ENS_OF_SEEDS]


def build_board(
    name: str,
    entries: Sequence[Entry],
    options: Options,
    ensembles: dict[str, SeedEnsemble] | None = None,
) -> Board:
    """The ``gap`` or ``calibration`` board over ``entries`` (selected ones unless ``all``)."""
    sort = options.sort.get(name) or DEFAULT_SORT[name]
    way = direction(sort)
    sort = sort.split(":", 1)[0]
    by_section: dict[str, list[Entry]] = defaultdict(list)
    sections: dict[str, Section] = {}
    for entry in entries:
        by_section[entry.section.key].append(entry)
        sections[entry.section.key] = entry.section
    built = []
    for key, members in by_section.items():
        section = sections[key]
        defaults = (GAP_COLUMNS if name == "gap" else CALIBRATION_COLUMNS)[section.task]
        columns = options.columns.get(name) or defaults
        baseline = next(
            (e for e in members if e.selected and e.method.label == options.baseline), None
        )
        shown = [e for e in members if e.selected or options.all]
        rows = _rows(name, shown, baseline, (*columns, sort), ensembles or {})
        built.append(BoardSection(section, tuple(columns), _rank(rows, sort, way), baseline))
    return Board(name, TITLES[name], sort, way, tuple(built))


def _rows(
    name: str,
    entries: list[Entry],
    baseline: Entry | None,
    keys: tuple[str, ...],
    ensembles: dict[str, SeedEnsemble],
) -> list[Row]:
    """Unranked rows (rank 0, no standing: both come after sorting)."""
    rows = []
    for entry in entries:
        predictions = ["deterministic"] if name == "gap" else _present(entry)
        for prediction in predictions:
            p = PREDICTIONS[prediction]
            cells = {k: entry.stat(p + k) for k in keys}
            is_base = entry is baseline and prediction == "deterministic"
            delta = {} if baseline is None or is_base else _delta(entry, baseline, p, keys)
            flags = () if baseline is None else _underfits(entry, baseline, p)
            rows.append(Row(entry, prediction, entry.seeds, cells, delta, 0, "", flags))
        ens = ensembles.get(entry.runs[0].config_key) if entry.runs else None
        if name == "calibration" and entry.selected and ens is not None:
            seeds, scores = ens
            cells = {k: Stat(1, scores[k]) if k in scores else Stat(0) for k in keys}
            rows.append(Row(entry, ENS_OF_SEEDS, seeds, cells, {}, 0, ""))
    return rows


def _present(entry: Entry) -> list[str]:
    """The prediction types the entry's runs were scored with."""
    return [
        prediction
        for prediction, p in PREDICTIONS.items()
        if any(
            r.value(f"{p}test/nll") is not None or r.value(f"{p}test/loss") is not None
            for r in entry.runs
        )
    ]


def _delta(entry: Entry, baseline: Entry, p: str, keys: tuple[str, ...]) -> dict[str, Stat]:
    return {k: paired(entry.values(p + k), baseline.values(k)) for k in keys}


def _underfits(entry: Entry, baseline: Entry, p: str) -> tuple[str, ...]:
    """``("underfits",)`` when test accuracy is significantly (95 %) below the baseline's."""
    metric, way = UNDERFIT[entry.section.task]
    d = paired(entry.values(p + metric), baseline.values(metric))
    if not d.has_ci:
        return ()
    worse = d.hi < 0 if way == "max" else d.lo > 0  # type: ignore[operator]
    return ("underfits",) if worse else ()


def _rank(rows: list[Row], sort: str, way: str) -> tuple[Row, ...]:
    """Rows by the mean of ``sort`` (missing last), then by name, deterministic; standings."""

    def order(row: Row) -> tuple:
        mean = row.cells[sort].mean
        value = 0.0 if mean is None else (mean if way == "min" else -mean)
        hparams = sorted(row.entry.hparams.items())
        return (mean is None, value, row.method.label, hparams, _ORDER.index(row.prediction))

    rows = sorted(rows, key=order)
    ranked = [r for r in rows if r.ranked and r.cells[sort].mean is not None]
    marks = dict(zip(map(id, ranked), _standings([r.cells[sort] for r in ranked]), strict=True))
    return tuple(
        replace(r, rank=i, standing=marks.get(id(r), "")) for i, r in enumerate(rows, start=1)
    )


def _standings(stats: list[Stat]) -> list[str]:
    """best / tied / behind / undecided for stats already in rank order (leader first)."""
    if not stats:
        return []
    leader = stats[0]
    if not leader.has_ci:
        return ["undecided"] * len(stats)
    others = [
        "undecided" if not s.has_ci else "tied" if s.overlaps(leader) else "behind"
        for s in stats[1:]
    ]
    return ["best" if all(o == "behind" for o in others) else "tied", *others]
