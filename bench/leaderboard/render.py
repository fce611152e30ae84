"""The boards as Markdown, CSV and JSON text, and as files written atomically.

Same input, same bytes: rows are already in a deterministic order, floats are written with
``repr`` (CSV, JSON) or fixed significant digits (Markdown), and nothing depends on the clock.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.atomic import write_text_atomic
from bench.leaderboard import format as fmt
from bench.leaderboard import published
from bench.leaderboard.model import Board, Leaderboard, Row
from bench.leaderboard.stats import Stat

FORMATS = ("md", "csv", "json")


def markdown(lb: Leaderboard, board: Board) -> str:
    """A heading, the caption, one table per section, then what was left out."""
    opts = lb.options
    lines = [f"## {board.title}", "", fmt.caption(board, opts.select, opts.baseline), ""]
    calibration = board.name == "calibration"
    for part in board.sections:
        head = ["#", "method", "hparams", *(["prediction"] if calibration else []), "n"]
        head += [*part.columns, f"Δ {board.sort} vs {opts.baseline}", "notes"]
        lines += [f"### {_md(part.section.label)}", "", _md_row(head), _md_row(["---"] * len(head))]
        for row in part.rows:
            cells = [str(row.rank), row.method.label, fmt.hparams(row)]
            cells += [row.prediction] if calibration else []
            cells += [str(len(row.seeds)), *(fmt.stat(row.cells[c]) for c in part.columns)]
            cells += [fmt.delta(row.delta.get(board.sort)), fmt.notes(row)]
            lines.append(_md_row(cells))
        lines.append("")
    lines += summary(lb)
    return "\n".join(lines).rstrip("\n") + "\n"


def summary(lb: Leaderboard, limit: int | None = None) -> list[str]:
    """What was read, what diverged and what was left out (each with path and reason)."""
    runs = sum(len(e.runs) for e in lb.entries)
    lines = [
        f"{lb.files} results.json files: {runs} completed runs in {len(lb.entries)} "
        f"configurations, {len(lb.diverged)} diverged, {len(lb.problems)} left out."
    ]
    for run in lb.diverged[:limit]:
        at = run.fields.get("diverged_at") or {}
        lines.append(f"- diverged: {run.path} (epoch {at.get('epoch', '?')})")
    for p in lb.problems[:limit]:
        lines.append(f"- left out ({p.kind}): {p.path}: {p.reason}")
    hidden = len(lb.diverged) + len(lb.problems) - (len(lines) - 1)
    if hidden > 0:
        lines.append(f"- ... and {hidden} more (see leaderboard_*.json)")
    return lines


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def table_rows(board: Board) -> list[dict[str, Any]]:
    """Flat rows (one dict per Row, numbers unrounded) for CSV and wandb tables."""
    out = []
    for part in board.sections:
        for row in part.rows:
            flat: dict[str, Any] = {
                "board": board.name,
                "section": part.section.label,
                "dataset": part.section.dataset,
                "model": part.section.model,
                "rank": row.rank,
                "method": row.method.label,
                "prediction": row.prediction,
                "hparams": json.dumps(row.entry.hparams, sort_keys=True),
                "seeds": " ".join(map(str, row.seeds)),
                "n": len(row.seeds),
                "diverged": len(row.entry.diverged),
                "selected": row.entry.selected,
                "standing": row.standing,
                "flags": " ".join(row.flags),
            }
            for col in part.columns:
                s = row.cells[col]
                flat.update({col: s.mean, f"{col} sd": s.sd, f"{col} lo": s.lo, f"{col} hi": s.hi})
            d = row.delta.get(board.sort) or Stat(0)
            flat.update({f"Δ {board.sort}": d.mean, f"Δ {board.sort} lo": d.lo})
            flat[f"Δ {board.sort} hi"] = d.hi
            out.append(flat)
    return out


def csv_text(boards: Sequence[Board]) -> str:
    """One CSV over ``boards`` (a ``board`` column tells them apart); union of the columns."""
    rows = [r for b in boards for r in table_rows(b)]
    header = list(dict.fromkeys(k for r in rows for k in r)) or ["board"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buffer.getvalue()


def board_dict(lb: Leaderboard, board: Board) -> dict[str, Any]:
    """Everything about one board as JSON-able data, including what was left out."""
    return {
        "board": board.name,
        "title": board.title,
        "sort": board.sort,
        "direction": board.direction,
        "select": lb.options.select,
        "baseline": lb.options.baseline,
        "sections": [
            {
                "section": part.section.label,
                "dataset": part.section.dataset,
                "model": part.section.model,
                "task": part.section.task,
                "settings": part.section.settings,
                "columns": list(part.columns),
                "rows": [_row_dict(row) for row in part.rows],
            }
            for part in board.sections
        ],
        "files": lb.files,
        "diverged": [
            {"path": r.path, "diverged_at": r.fields.get("diverged_at")} for r in lb.diverged
        ],
        "problems": [{"path": p.path, "kind": p.kind, "reason": p.reason} for p in lb.problems],
    }


def _row_dict(row: Row) -> dict[str, Any]:
    return {
        "rank": row.rank,
        "method": row.method.label,
        "regularizers": list(row.method.regularizers),
        "prediction": row.prediction,
        "hparams": row.entry.hparams,
        "seeds": list(row.seeds),
        "selected": row.entry.selected,
        "standing": row.standing,
        "flags": list(row.flags),
        "diverged": len(row.entry.diverged),
        "cells": {k: _stat_dict(s) for k, s in row.cells.items()},
        "delta": {k: _stat_dict(s) for k, s in row.delta.items()},
        "run_dirs": [r.run_dir for r in row.entry.runs if r.seed in row.seeds],
    }


def _stat_dict(s: Stat) -> dict[str, Any]:
    return {"n": s.n, "mean": s.mean, "sd": s.sd, "lo": s.lo, "hi": s.hi}


def json_text(lb: Leaderboard, boards: Sequence[Board]) -> str:
    data = (
        board_dict(lb, boards[0])
        if len(boards) == 1
        else {b.name: board_dict(lb, b) for b in boards}
    )
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def text(lb: Leaderboard, boards: Sequence[Board], kind: str) -> str:
    """``md``, ``csv`` or ``json`` text of ``boards``."""
    if kind == "md":
        return "\n".join(markdown(lb, b) for b in boards)
    if kind == "csv":
        return csv_text(boards)
    return json_text(lb, boards)


def write_files(lb: Leaderboard, out_dir: str | Path) -> list[Path]:
    """``leaderboard_{gap,calibration}.{md,csv,json}`` in ``out_dir``, each atomically, and
    ``leaderboard_published.*`` when some run reproduces a published table."""
    paths = []
    for board in lb.boards:
        for kind in FORMATS:
            path = Path(out_dir) / f"leaderboard_{board.name}.{kind}"
            write_atomic(path, text(lb, [board], kind))
            paths.append(path)
    if lb.published:
        for kind in FORMATS:
            path = Path(out_dir) / f"leaderboard_published.{kind}"
            write_atomic(path, published_text(lb, kind))
            paths.append(path)
    return paths


def published_text(lb: Leaderboard, kind: str) -> str:
    """The reproductions board (``bench.leaderboard.published``) as ``md``, ``csv`` or ``json``."""
    if kind == "md":
        return published.markdown(lb.published)
    rows = published.as_dicts(lb.published)
    if kind == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def write_atomic(path: Path, content: str) -> None:
    """Readers never see half a file (``bench.atomic``, standard library only)."""
    write_text_atomic(path, content)
