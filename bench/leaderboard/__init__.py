"""Leaderboards from a sweep: which regularizers close the generalization gap, which calibrate.

``build_leaderboard(paths, options)`` is the whole pipeline — find and load the records
(``load``), group them into configurations and select each method's hyperparameters on
validation data (``entries``), add post-hoc seed ensembles (``ensembles``) and rank both boards
(``boards``), and set reproductions beside their papers (``published``). The result, a
:class:`~bench.leaderboard.model.Leaderboard`, is what every renderer draws. Nothing here
imports torch; numpy only for the seed ensembles.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.leaderboard.boards import build_board
from bench.leaderboard.entries import group, select
from bench.leaderboard.load import find_files, load_runs
from bench.leaderboard.model import Leaderboard, Options
from bench.leaderboard.published import published_tables

__all__ = ["Leaderboard", "Options", "build_leaderboard"]


def build_leaderboard(paths: Sequence[str], options: Options | None = None) -> Leaderboard:
    """Both boards from every ``results.json`` below ``paths`` (dirs, files or globs).

    Raises ``ConfigError`` (one line) for a missing or empty path and for bad options.
    """
    options = options or Options()
    files = find_files(paths)
    runs, problems = load_runs(files)
    entries = group(runs)
    reproductions = published_tables(runs)
    # A reproduction's refits on train + validation have no validation metric to select on;
    # their table stands without a selection.
    chosen = select(entries, options.select, required=not reproductions) if entries else []
    ensembles = {}
    if options.ensembles and chosen:
        from bench.leaderboard.ensembles import seed_ensembles  # numpy: only on this path

        ensembles, missing = seed_ensembles(chosen)
        problems += missing
    return Leaderboard(
        options=options,
        gap=build_board("gap", entries, options),
        calibration=build_board("calibration", entries, options, ensembles),
        entries=tuple(entries),
        problems=tuple(sorted(problems, key=lambda p: (p.path, p.kind))),
        diverged=tuple(sorted((r for r in runs if r.status != "completed"), key=lambda r: r.path)),
        files=len(files),
        published=reproductions,
    )
