"""``bench-leaderboard DIR [DIR...|GLOB]``: both leaderboards of a sweep, in the terminal, as
files (``leaderboard_*``, ``report.html``) and, with ``--wandb``, in one wandb run. Exit
status: 0 done; 2 bad input (one ``error:`` line); 1 no usable record or a failed write."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bench.errors import ConfigError
from bench.leaderboard import build_leaderboard
from bench.leaderboard.columns import direction
from bench.leaderboard.model import Leaderboard, Options
from bench.leaderboard.render import published_text, summary, text, write_files

if TYPE_CHECKING:  # numpy and matplotlib: only when a report or wandb run is made
    from bench.leaderboard.figures import Plot

BOARDS = ("gap", "calibration")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line, like every other bad input in regbench (argparse prints the usage too)."""
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="bench-leaderboard",
        description="Both leaderboards of a sweep (generalization gap, calibration) from every "
        "results.json below the given paths. Exit status: 0 done, 1 no usable record, "
        "2 bad input.",
    )
    p.add_argument("paths", nargs="+", metavar="DIR|GLOB", help="searched for results.json")
    p.add_argument(
        "--select",
        default="val/loss",
        help="validation metric that chooses each method's hyperparameters "
        "(default val/loss; val/acc, ts/val/nll, ...)",
    )
    p.add_argument("--baseline", default=None, help="method the Δ columns compare with (none)")
    p.add_argument(
        "--sort",
        action="append",
        default=[],
        metavar="[BOARD:]KEY[:min|:max]",
        help="ranking key (gap: gap/loss, calibration: test/nll)",
    )
    p.add_argument(
        "--columns",
        action="append",
        default=[],
        metavar="[BOARD:]KEY,KEY,...",
        help="columns shown instead of the defaults",
    )
    p.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    p.add_argument("--all", action="store_true", help="also rows for unselected points")
    p.add_argument(
        "--out",
        default=None,
        help="where the leaderboard_* files, report.html and the --wandb run go "
        "(default: the directory given, or the common parent of several)",
    )
    p.add_argument(
        "--no-files", action="store_true", help="write no leaderboard_* files and no report.html"
    )
    p.add_argument(
        "--no-ensembles",
        action="store_true",
        help="no ens-of-seeds rows (skips reading predictions.npz)",
    )
    p.add_argument(
        "--wandb",
        action="store_true",
        help="also log both boards (tables) and the plots to one wandb run of job type "
        "leaderboard, below the output directory (offline unless WANDB_MODE says otherwise)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        lb = build_leaderboard(args.paths, options(args))
        if args.baseline is not None and not any(
            e.method.label == args.baseline for e in lb.entries
        ):
            methods = ", ".join(sorted({e.method.label for e in lb.entries}))
            raise ConfigError(f"--baseline {args.baseline}: no such method here ({methods})")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not lb.entries:
        for line in summary(lb, limit=20):
            print(line, file=sys.stderr)
        print(f"error: none of the {lb.files} results.json files is usable", file=sys.stderr)
        return 1
    for board in lb.boards:
        for column in lb.options.columns.get(board.name, ()):
            if not any(r.cells[column].n for part in board.sections for r in part.rows):
                print(f"warning: --columns {column}: no {board.name} row has it", file=sys.stderr)
    # A reproduction's sweep (every run declares a published table: grid points × splits, one
    # section each) is answered by its table; the two boards still go to the files.
    reproduction = bool(lb.published) and all(r.published for e in lb.entries for r in e.runs)
    if reproduction and args.format == "table":
        print("gap and calibration boards: in the leaderboard_* files (a reproduction's sweep)")
        for line in summary(lb, limit=20):
            print(line)
    else:
        show(lb, args.format)
    if lb.published and args.format in ("table", "md"):  # CSV/JSON stdout stay one board's
        print(published_text(lb, "md"))
    out = args.out or default_out(args.paths)
    where = sys.stdout if args.format == "table" else sys.stderr
    plots = None
    if not args.no_files:
        try:
            write_files(lb, out)
            print(
                f"files: {os.path.join(out, 'leaderboard_{gap,calibration}.{md,csv,json}')}",
                file=where,
            )
            from bench.leaderboard.report import write_report

            plots = _plots(lb)
            print(f"report: {write_report(lb, out, plots)}", file=where)
        except OSError as exc:
            print(f"error: cannot write the leaderboard files to {out}: {exc}", file=sys.stderr)
            return 1
    if args.wandb:
        return _log_wandb(lb, out, plots, where)
    return 0


def _plots(lb: Leaderboard) -> list[Plot]:
    """The report's figures (numpy and matplotlib are imported only now)."""
    from bench.leaderboard.figures import report_plots
    from bench.leaderboard.report import MAX_PLOT_SECTIONS

    return report_plots(lb, MAX_PLOT_SECTIONS)


def _log_wandb(lb: Leaderboard, out: str, plots: list[Plot] | None, where: TextIO) -> int:
    """Both boards and the plots to one wandb run; a wandb failure is one error line."""
    import wandb

    from bench.leaderboard.wandb_log import log_leaderboard

    try:
        run_dir = log_leaderboard(lb, out, _plots(lb) if plots is None else plots)
    except (wandb.Error, OSError) as exc:
        print(f"error: wandb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wandb: {run_dir}", file=where)
    return 0


def options(args: argparse.Namespace) -> Options:
    """Options from parsed flags; every bad value is a ConfigError naming its flag."""
    sort = _per_board(args.sort)
    for key in sort.values():
        direction(key)  # an unknown direction fails now, not after loading
    columns = {
        board: tuple(c.strip() for c in value.split(",") if c.strip())
        for board, value in _per_board(args.columns).items()
    }
    for board, cols in columns.items():
        if not cols:
            raise ConfigError(f"--columns for {board}: give at least one column key")
    return Options(
        select=args.select,
        baseline=args.baseline or "none",
        sort=sort,
        columns=columns,
        all=args.all,
        ensembles=not args.no_ensembles,
    )


def _per_board(values: Sequence[str]) -> dict[str, str]:
    """``gap:KEY`` applies to one board, a bare ``KEY`` to both; later values win."""
    out: dict[str, str] = {}
    for value in values:
        board, sep, rest = value.partition(":")
        if sep and board in BOARDS:
            out[board] = rest
        else:
            out.update(dict.fromkeys(BOARDS, value))
    return out


def show(lb: Leaderboard, kind: str) -> None:
    if kind == "table":
        from bench.leaderboard.terminal import print_boards

        print_boards(lb, list(lb.boards))
        return
    sys.stdout.write(text(lb, list(lb.boards), kind))
    if kind != "md":  # Markdown carries its own summary; CSV/JSON keep stdout machine-readable
        for line in summary(lb, limit=20):
            print(line, file=sys.stderr)


def default_out(paths: Sequence[str]) -> str:
    """The directory given, or the deepest directory holding all the given paths (a glob
    counts from its last directory without wildcards)."""
    return os.path.commonpath([os.path.abspath(_root(p)) for p in paths])


def _root(path: str) -> str:
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        return os.path.dirname(path) or "."
    parts = Path(path).parts
    fixed = list(itertools.takewhile(lambda part: not set(part) & set("*?["), parts))
    return str(Path(*fixed)) if fixed else "."
