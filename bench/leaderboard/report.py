"""``report.html``: both leaderboards and the plots that explain them, in one file.

Self-contained so it can be mailed, attached to a CI run or opened years later: CSS inline,
images embedded as base64 PNG ``data:`` URIs, no script, no external URL. Every string from a
record — config values, method options, section settings, paths, metric names — goes through
``html.escape``: a run named ``<script>alert(1)</script>`` is shown as text. Numbers read
exactly as in the terminal and Markdown (``bench.leaderboard.format``).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.leaderboard import format as fmt
from bench.leaderboard.model import Board, BoardSection, Leaderboard, Row
from bench.leaderboard.render import summary, write_atomic

if TYPE_CHECKING:  # numpy and matplotlib: imported when plots are made, not before
    from bench.leaderboard.figures import Plot

REPORT_FILE = "report.html"
MAX_PLOT_SECTIONS = 8  # plots for the first sections only: a huge sweep's report stays quick
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; background: #fff;
       max-width: 1900px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 6px; border-bottom: 2px solid #dfe3ea; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; overflow-wrap: anywhere; }
nav a { margin-right: 14px; }
.caption, .note, figcaption { color: #4a5263; max-width: 1100px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; margin: 4px 0 12px; }
th, td { padding: 3px 7px; border-bottom: 1px solid #e4e7ed; white-space: nowrap; }
th { background: #f3f5f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.delta { white-space: normal; min-width: 12em; }
tr.best td { background: #d9f2df; font-weight: 600; }
tr.tied td { background: #eef9f0; }
tr.undecided td { background: #fff7d6; }
tr.unranked td { color: #7a8191; }
.pm { color: #6b7385; font-size: 11.5px; }
.flag { color: #b3261e; font-weight: 600; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border-radius: 3px; }
figure { margin: 14px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e7ed; }
figcaption { margin-top: 4px; }
ul.left { font-size: 13px; color: #4a5263; }
"""


def write_report(lb: Leaderboard, out_dir: str | Path, plots: Sequence[Plot] | None = None) -> Path:
    """``report.html`` in ``out_dir``, atomically; ``plots`` default to ``report_plots(lb)``."""
    if plots is None:
        from bench.leaderboard.figures import report_plots

        plots = report_plots(lb, MAX_PLOT_SECTIONS)
    path = Path(out_dir) / REPORT_FILE
    write_atomic(path, report_html(lb, plots))
    return path


def report_html(lb: Leaderboard, plots: Sequence[Plot]) -> str:
    """The whole page as text (deterministic: same leaderboard and plots, same bytes)."""
    runs = sum(len(e.runs) for e in lb.entries)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>regbench leaderboards</title><style>{STYLE}</style></head><body>",
        "<h1>regbench leaderboards</h1>",
        f'<p class="note">{_e(summary(lb)[0])} Sections: {len(lb.gap.sections)}; {runs} runs.</p>',
        '<nav><a href="#gap">Generalization gap</a><a href="#calibration">Calibration</a>'
        '<a href="#plots">Plots</a><a href="#left-out">Left out</a></nav>',
        '<p class="legend"><span style="background:#d9f2df">best</span>'
        '<span style="background:#eef9f0">tied with the leader</span>'
        '<span style="background:#fff7d6">undecided (n &lt; 2)</span>'
        '<span style="color:#7a8191">not ranked</span></p>',
    ]
    for board in lb.boards:
        parts += _board(lb, board)
    parts += _plots(lb, plots)
    parts += _left_out(lb)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _board(lb: Leaderboard, board: Board) -> list[str]:
    caption = fmt.caption(board, lb.options.select, lb.options.baseline)
    out = [
        f'<section id="{board.name}"><h2>{_e(board.title)}</h2>',
        f'<p class="caption">{_e(caption)}</p>',
    ]
    for part in board.sections:
        out.append(f"<h3>{_e(part.section.label)}</h3>")
        out.append(f'<div class="scroll">{_table(lb, board, part)}</div>')
    out.append("</section>")
    return out


def _table(lb: Leaderboard, board: Board, part: BoardSection) -> str:
    """The same columns, in the same order, as the terminal and Markdown tables."""
    calibration = board.name == "calibration"
    head = ["#", "method", "hparams", *(["prediction"] if calibration else []), "n"]
    head += [*part.columns, f"Δ {board.sort} vs {lb.options.baseline}", "notes"]
    numeric = len(head) - 2 - len(part.columns)
    lines = ["<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead>"]
    lines.append("<tbody>")
    for row in part.rows:
        cells = [str(row.rank), row.method.label, fmt.hparams(row)]
        cells += [row.prediction] if calibration else []
        cells += [str(len(row.seeds)), *(fmt.stat(row.cells[c]) for c in part.columns)]
        tds = [
            f'<td class="num">{_stat(c)}</td>' if i >= numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(cells)
        ]
        tds.append(f'<td class="num delta">{_e(fmt.delta(row.delta.get(board.sort)))}</td>')
        tds.append(f"<td>{_notes(row)}</td>")
        lines.append(f'<tr class="{_row_class(row)}">{"".join(tds)}</tr>')
    lines.append("</tbody></table>")
    return "".join(lines)


def _stat(text: str) -> str:
    """``0.186 ± 0.012`` with the interval in a lighter grey (same text as the terminal)."""
    mean, sep, half = text.partition(" ± ")
    return f'{_e(mean)} <span class="pm">± {_e(half)}</span>' if sep else _e(text)


def _row_class(row: Row) -> str:
    return (
        row.standing
        if row.standing in ("best", "tied", "undecided")
        else ("" if row.ranked else "unranked")
    )


def _notes(row: Row) -> str:
    """fmt.notes, with the underfitting flag in red."""
    text = _e(fmt.notes(row))
    return text.replace("underfits", '<span class="flag">underfits</span>')


def _plots(lb: Leaderboard, plots: Sequence[Plot]) -> list[str]:
    out = ['<section id="plots"><h2>Plots</h2>']
    if not plots:
        out.append(
            '<p class="note">No plot: no section has a swept hyperparameter, shift '
            "metrics or predictions.npz files.</p>"
        )
    hidden = len(lb.gap.sections) - MAX_PLOT_SECTIONS
    current = None
    for plot in plots:
        if plot.section_index != current:
            current = plot.section_index
            out.append(f"<h3>{_e(plot.section)}</h3>")
        data = base64.b64encode(plot.png).decode("ascii")
        out.append(
            f'<figure><img alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{_e(plot.title)}.</b> {_e(plot.caption)}</figcaption></figure>"
        )
    if hidden > 0:
        out.append(
            f'<p class="note">Plots are made for the first {MAX_PLOT_SECTIONS} sections '
            f"only; the tables above hold the other {hidden}.</p>"
        )
    out.append("</section>")
    return out


def _left_out(lb: Leaderboard) -> list[str]:
    lines = summary(lb)
    items = "".join(f"<li>{_e(line[2:])}</li>" for line in lines[1:])
    return [
        '<section id="left-out"><h2>Left out and diverged</h2>',
        f'<p class="note">{_e(lines[0])}</p>',
        f'<ul class="left">{items}</ul>' if items else "",
        "</section>",
    ]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
