"""How a statistic, a difference or a row's notes read as text — one convention for the
terminal, Markdown and the HTML report, so the same number never reads two ways."""

from __future__ import annotations

from bench.leaderboard.columns import direction
from bench.leaderboard.model import Board, Row
from bench.leaderboard.stats import Stat

DASH = "–"


def number(x: float | None, digits: int = 4) -> str:
    """Integers as integers (epochs), everything else to ``digits`` significant digits."""
    if x is None:
        return ""
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def stat(s: Stat) -> str:
    """``0.186 ± 0.012`` (± the 95 % CI half-width), ``0.186`` for one seed, ``–`` for none."""
    if s.mean is None:
        return DASH
    if not s.has_ci:
        return number(s.mean)
    return f"{number(s.mean)} ± {number((s.hi - s.lo) / 2, 2)}"  # type: ignore[operator]


def delta(s: Stat | None) -> str:
    """``+0.012 [-0.004, +0.028]``: a paired difference with its 95 % CI; '' when there is none."""
    if s is None or s.mean is None:
        return ""
    text = _signed(s.mean)
    if s.has_ci:
        text += f" [{_signed(s.lo)}, {_signed(s.hi)}]"
    return text


def _signed(x: float | None) -> str:
    text = number(x, 3)
    return text if text.startswith("-") else f"+{text}"


def hparams(row: Row) -> str:
    """The swept hyperparameters of the row's entry: ``strength=0.001``."""
    return ", ".join(f"{k}={number(v)}" for k, v in row.entry.shown_hparams().items())


def notes(row: Row) -> str:
    """Standing, flags, diverged seeds and selection, in words."""
    parts = [] if row.standing in ("", "behind") else [row.standing]
    parts += list(row.flags)
    if row.entry.diverged:
        parts.append(f"{len(row.entry.diverged)} diverged")
    if not row.entry.selected:
        parts.append("not selected")
    return ", ".join(parts)


def caption(board: Board, select: str, baseline: str) -> str:
    """What the board shows and how to read it, in one paragraph."""
    better = "lower" if board.direction == "min" else "higher"
    return (
        f"Ranked by {board.sort} ({better} is better). Each method's hyperparameters are the "
        f"ones with the best mean {select} over seeds ({_way(select)}); test metrics are "
        f"reported for them. ± is the 95 % Student-t half-width over n seeds; Δ is the paired "
        f"per-seed difference to {baseline} (its deterministic predictions) with its 95 % CI. "
        "tied: the interval overlaps the leader's; undecided: fewer than two seeds, no "
        "interval, no winner; underfits: test accuracy significantly below the baseline's."
    )


def _way(metric: str) -> str:
    return "lowest" if direction(metric) == "min" else "highest"
