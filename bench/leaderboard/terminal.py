"""The boards as rich tables in the terminal (and readable in a CI log, where rich drops the
colours but keeps the layout)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from bench.leaderboard import format as fmt
from bench.leaderboard.model import Board, Leaderboard
from bench.leaderboard.render import summary

STYLE = {"best": "bold green", "tied": "green", "undecided": "yellow"}


def print_boards(lb: Leaderboard, boards: list[Board], file: TextIO | None = None) -> None:
    """One table per section of every board, then the summary of what was read."""
    from rich.console import Console  # ~50 ms to import: only when a table is printed
    from rich.table import Table

    file = file or sys.stdout
    # Outside a terminal rich would wrap at 80 columns; a log has room for the whole table.
    wide = None if file.isatty() or "COLUMNS" in os.environ else 200
    console = Console(file=file, width=wide, highlight=False, soft_wrap=False)
    for board in boards:
        console.print(f"[bold]{board.title}[/bold]")
        console.print(fmt.caption(board, lb.options.select, lb.options.baseline), style="dim")
        calibration = board.name == "calibration"
        for part in board.sections:
            table = Table(title=part.section.label, title_justify="left")
            for name in ("#", "method", "hparams", *(["pred."] if calibration else []), "n"):
                table.add_column(name, no_wrap=True)
            for col in part.columns:
                table.add_column(col, justify="right", no_wrap=True)
            table.add_column(f"Δ {board.sort} vs {lb.options.baseline}", justify="right")
            table.add_column("notes")
            for row in part.rows:
                cells = [str(row.rank), row.method.label, fmt.hparams(row)]
                cells += [row.prediction] if calibration else []
                cells += [str(len(row.seeds)), *(fmt.stat(row.cells[c]) for c in part.columns)]
                cells += [fmt.delta(row.delta.get(board.sort)), fmt.notes(row)]
                style = STYLE.get(row.standing, "" if row.entry.selected else "dim")
                table.add_row(*(_plain(c) for c in cells), style=style)
            console.print(table)
    for line in summary(lb, limit=20):
        console.print(_plain(line))


def _plain(text: str) -> str:
    """Config strings are data, not rich markup: ``[mc=false]`` must print as written."""
    from rich.markup import escape

    return escape(text)
