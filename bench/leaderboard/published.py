"""Reproductions: our figures next to a paper's, with the difference in standard errors.

An experiment that reproduces a table declares the published figures in its config (the
``published`` node, see ``conf/experiment/gal2016_uci.yaml``): the table's id and source, which
row a run belongs to, which runs count (``runs``: config values they must have, e.g. only the
refits of a grid search), and per row the metrics as ``[mean, ±]`` or a bare number. Every
record carries that node in its config; nothing published is ever stored as a result. Here the
runs of one (table, row) are pooled — over splits and seeds, whichever the table replicates —
into our mean and standard error, and each metric gets

    Δ/SE = (ours − published) / √(SE_ours² + SE_published²)

the number of standard errors between the two (|Δ/SE| ≤ 2: agreement at about 95 %). A
published ± that is a standard deviation (``spread: sd``) becomes a standard error through the
paper's number of replicates ``n``; ``spread: none`` means the paper gives no uncertainty.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.leaderboard.columns import lookup
from bench.leaderboard.configs import flatten
from bench.leaderboard.stats import summarize

if TYPE_CHECKING:
    from bench.leaderboard.model import Run

SPREADS = ("se", "sd", "none")
AGREE_SE = 2.0  # |Δ/SE| within this: the figures agree


@dataclass(frozen=True)
class Comparison:
    """One metric of one row: ours over ``n`` runs, the paper's, and their distance."""

    row: str
    metric: str
    n: int
    ours: float | None
    ours_se: float | None  # sd/√n over the runs; None for fewer than two
    published: float
    published_se: float | None  # None: the paper gives none
    difference_se: float | None  # Δ/SE; None when neither side has a standard error
    diverged: int = 0  # runs of the row that diverged: not in ``ours``, counted here

    @property
    def agrees(self) -> bool | None:
        return None if self.difference_se is None else abs(self.difference_se) <= AGREE_SE


@dataclass(frozen=True)
class PublishedTable:
    table: str
    source: str
    rows: tuple[Comparison, ...]
    runs: int  # runs that counted toward the table


def published_tables(runs: Iterable[Run]) -> tuple[PublishedTable, ...]:
    """Every table some completed run reproduces, its rows in the paper's order."""
    by_table: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        spec = run.published
        if spec and spec.get("table") and _counts(run, spec):
            by_table[str(spec["table"])].append(run)
    return tuple(_table(name, members) for name, members in sorted(by_table.items()))


def _counts(run: Run, spec: dict[str, Any]) -> bool:
    """Whether the run has every config value ``spec["runs"]`` asks for."""
    wanted = spec.get("runs") or {}
    if not wanted:
        return True
    config = flatten(json.loads(run.config_key))
    return all(config.get(key) == value for key, value in wanted.items())


def _table(name: str, runs: list[Run]) -> PublishedTable:
    """Completed runs make our figures; diverged ones are counted beside them."""
    spec = runs[0].published or {}
    figures: dict[str, dict[str, Any]] = spec.get("figures") or {}
    by_row: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_row[str((run.published or {}).get("row"))].append(run)
    order = [r for r in figures if r in by_row] + sorted(r for r in by_row if r not in figures)
    rows = []
    for row in order:
        done = [r for r in by_row[row] if r.status == "completed"]
        diverged = len(by_row[row]) - len(done)
        for metric, figure in (figures.get(row) or {}).items():
            rows.append(compare(row, metric, figure, done, spec, diverged))
    return PublishedTable(name, str(spec.get("source", "")), tuple(rows), len(runs))


def compare(
    row: str,
    metric: str,
    figure: Any,
    runs: list[Run],
    spec: dict[str, Any],
    diverged: int = 0,
) -> Comparison:
    """Our mean ± SE of ``metric`` over ``runs`` against the paper's ``figure``: a number,
    ``[mean, ±]``, or ``[mean, ±, n]`` when this row rests on other replicates than ``spec.n``
    (Protein's 5 splits among 20-split sets)."""
    figure = list(figure) if isinstance(figure, list | tuple) else [figure]
    mean, spread = figure[0], figure[1] if len(figure) > 1 else None
    n_published = figure[2] if len(figure) > 2 else spec.get("n")
    published_se = _published_se(spread, spec.get("spread", "se"), n_published)
    values = [v for v in (lookup(r.metrics, r.fields, metric) for r in runs) if v is not None]
    stat = summarize(values)  # mean and sd (ddof 1), as every board's cells
    ours_se = None if stat.sd is None else stat.sd / math.sqrt(stat.n)
    scale = math.hypot(ours_se or 0.0, published_se or 0.0)
    ours = stat.mean
    difference = (ours - float(mean)) / scale if ours is not None and scale > 0 else None
    return Comparison(
        row, metric, stat.n, ours, ours_se, float(mean), published_se, difference, diverged
    )


def _published_se(spread: Any, kind: str, n: Any) -> float | None:
    if spread is None or kind == "none":
        return None
    if kind == "sd":
        return float(spread) / math.sqrt(float(n))
    return float(spread)


# --- text ------------------------------------------------------------------------------------
HEADER = ("row", "metric", "n", "ours", "± SE", "published", "± SE", "Δ/SE", "within 2 SE")
HEADER += ("diverged",)


def cells(c: Comparison) -> list[str]:
    """One comparison as the table's text cells (4 significant digits)."""
    agrees = {True: "yes", False: "no", None: "–"}[c.agrees]
    return [
        c.row,
        c.metric,
        str(c.n),
        _num(c.ours),
        _num(c.ours_se),
        _num(c.published),
        _num(c.published_se),
        "–" if c.difference_se is None else f"{c.difference_se:+.2f}",
        agrees,
        str(c.diverged),
    ]


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def markdown(tables: Iterable[PublishedTable]) -> str:
    lines = ["## Reproductions: ours vs published", ""]
    for t in tables:
        lines += [f"### {t.table}", "", f"{t.source} ({t.runs} runs)", ""]
        lines += ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
        lines += ["| " + " | ".join(cells(c)) + " |" for c in t.rows]
        lines.append("")
    return "\n".join(lines)


def as_dicts(tables: Iterable[PublishedTable]) -> list[dict[str, Any]]:
    """Flat rows (numbers unrounded) for CSV and JSON."""
    return [
        {
            "table": t.table,
            "source": t.source,
            "row": c.row,
            "metric": c.metric,
            "n": c.n,
            "ours": c.ours,
            "ours_se": c.ours_se,
            "published": c.published,
            "published_se": c.published_se,
            "difference_se": c.difference_se,
            "agrees": c.agrees,
            "diverged": c.diverged,
        }
        for t in tables
        for c in t.rows
    ]
