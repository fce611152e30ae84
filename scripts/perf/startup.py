"""Figure 2: start-up and the fixed cost per run, as whole processes.

A small run is dominated by what happens before and after training, so this figure times whole
processes against the stack's own import floor, ``python -c "import lightning, hydra"``:

- ``bench-train --help`` (target ≤ 1.1× the floor);
- a 1-epoch digits run with the default config (csv + wandb offline, the full evaluation and
  its plot; target ≤ 1.3× the floor);
- the fixed cost of one more job in a ``--multirun`` (target ≤ 0.3 s): a multirun of N jobs of
  0 training steps (``+trainer.limit_train_batches=0``), timed between the launches Hydra logs
  for consecutive jobs — everything a job costs, Hydra's part included. Job 0 is left out (it
  pays the process's first-call costs, as a warm-up would), so each repetition's figure is
  (launch of job N−1 − launch of job 1) / (N − 2). Once with the default config and once lean
  (no loggers, no OOD/shift/plots), which separates the framework's cost from the evaluation's
  (figure 6). Differencing whole processes of N and 1 jobs measures the same thing, but the
  ±1 s noise of a 5 s start-up swamps a fraction of a second per job.

The three start-up commands run in rotation (floor, help, run; the order reversed every other
round) so all three see the same drift. Every run writes into a fresh directory: nothing to
resume or skip. Runs get ``threads=1`` unless ``--threads`` says otherwise (two threads per
process oversubscribe a small shared machine and slow both sides of nothing but our own).
``--quick`` times one round and skips the warm-up: for a whole process a warm-up round only
fills the page cache, and the smoke run must stay short.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perf import common
from perf.common import Result, Timing, seconds

REPO = Path(__file__).resolve().parents[2]
FIGURE = "2 start-up"
FLOOR = [sys.executable, "-c", "import lightning, hydra"]
TRAIN = [sys.executable, "-m", "bench.train"]
# A job that trains nothing: everything else a job does (compose, build, data, evaluation,
# record, loggers) still happens.
NO_STEPS = ["+trainer.limit_train_batches=0"]
LEAN = [
    "logger=none",
    "evaluation.plots=false",
    "evaluation.shift.corruptions=[]",
    "evaluation.ood.partners=[]",
]


# Hydra's basic launcher logs "[2026-01-01 12:00:00,123][HYDRA] \t#3 : seed=3 ..." as it starts
# each job.
LAUNCH = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]\[HYDRA\]\s+#(\d+) :", re.M)


def process(cmd: list[str], out: Path | None = None) -> str:
    return common.process(cmd, REPO, out)


def rotate(sides: dict[str, Callable[[], Any]], reps: int, warmups: int) -> dict[str, list[float]]:
    """``alternate`` for more than two sides: each round runs every side, the order reversed
    every other round; ``warmups`` untimed rounds first."""
    for _ in range(warmups):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for k in range(reps):
        order = list(sides) if k % 2 == 0 else list(sides)[::-1]
        for name in order:
            times[name].append(seconds(sides[name]))
    return times


def launch_times(log: str) -> list[float]:
    """Seconds (from the first launch) at which Hydra started each job, in job order."""
    from datetime import datetime

    found = sorted((int(m[3]), m[1], int(m[2])) for m in LAUNCH.finditer(log))
    stamps = [datetime.fromisoformat(t).timestamp() + ms / 1000 for _, t, ms in found]
    return [t - stamps[0] for t in stamps]


def per_job(cmd: list[str], out: Path, jobs: int, reps: int) -> list[float]:
    """Seconds per job after the first, one value per repetition (one multirun each)."""
    costs = []
    for _ in range(reps):
        starts = launch_times(process(cmd, out))
        if len(starts) != jobs:
            raise RuntimeError(f"expected {jobs} job launches in the log, found {len(starts)}")
        costs.append((starts[-1] - starts[1]) / (jobs - 2))
    return costs


def per_job_result(costs: list[float], jobs: int, note: str) -> Result:
    return Result(
        figure=FIGURE,
        name="fixed cost of one more job in a multirun",
        ratio=statistics.median(costs),
        low=min(costs),
        high=max(costs),
        target=0.3,
        higher_is_better=False,
        ours_s=statistics.median(costs),
        note=f"seconds per job, not a ratio; {note}",
        extra={"jobs": jobs, "per_repetition_s": costs},
    )


def run(args: argparse.Namespace) -> list[Result]:
    threads = f"threads={args.threads or 1}"
    warmups = 0 if args.quick else args.warmups
    jobs = 4 if args.quick else 6
    with tempfile.TemporaryDirectory(prefix="regbench-startup-") as name:
        out = Path(name) / "out"
        load = os.getloadavg()[0]
        start = rotate(
            {
                "floor": lambda: process(FLOOR),
                "help": lambda: process([*TRAIN, "--help"]),
                "run": lambda: process([*TRAIN, "trainer.max_epochs=1", threads], out),
            },
            args.reps,
            warmups,
        )

        seeds = ",".join(str(k) for k in range(jobs))
        multirun = [*TRAIN, "--multirun", f"seed={seeds}", *NO_STEPS, threads]
        default = per_job(multirun, out, jobs, args.reps)
        lean = per_job([*multirun, *LEAN], out, jobs, args.reps)
    loads = {"load_before": load, "load_after": os.getloadavg()[0], "threads": args.threads or 1}
    floor = start["floor"]
    return [
        Timing(start["help"], floor).result(
            FIGURE,
            "bench-train --help vs python -c 'import lightning, hydra'",
            overhead=True,
            target=1.1,
            extra=loads,
        ),
        Timing(start["run"], floor).result(
            FIGURE,
            "1-epoch digits run (default config) vs the same import floor",
            overhead=True,
            target=1.3,
            note="csv + wandb offline, full evaluation and plot",
            extra=loads,
        ),
        per_job_result(default, jobs, "0 steps, default config"),
        per_job_result(lean, jobs, "0 steps; no loggers, OOD, shift, plots"),
    ]
