"""What every figure of ``scripts/benchmark.py`` shares: alternated A/B timing, the result row.

Machines are noisy and first iterations run 10–40× slow, so a figure is never an absolute time:
both sides run in the same process (or, for start-up, as alternated whole processes), after
warm-ups, in alternating order, and the figure is the median of the per-repetition ratios with
its min–max.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Result:
    """One row of the table: ``ratio`` = time(baseline) / time(ours) unless said otherwise.

    ``higher_is_better`` says how ``target`` reads: ratio >= target (a speed-up) or, with
    ``False``, ratio <= target (an overhead, time(ours) / time(baseline)).
    """

    figure: str  # "1 overhead", "2 start-up", ...
    name: str  # what was compared, in words
    ratio: float
    low: float
    high: float
    target: float | None = None
    higher_is_better: bool = True
    ours_s: float | None = None  # median seconds of our side (per repetition)
    baseline_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


@dataclass
class Timing:
    """Per-repetition seconds of both sides and their ratios."""

    ours: list[float]
    baseline: list[float]

    def ratios(self, overhead: bool) -> list[float]:
        """overhead: ours/baseline (lower is better); else baseline/ours (a speed-up)."""
        pairs = zip(self.ours, self.baseline, strict=True)
        return [o / b if overhead else b / o for o, b in pairs]

    def result(self, figure: str, name: str, overhead: bool, **kw: Any) -> Result:
        r = self.ratios(overhead)
        return Result(
            figure=figure,
            name=name,
            ratio=statistics.median(r),
            low=min(r),
            high=max(r),
            higher_is_better=not overhead,
            ours_s=statistics.median(self.ours),
            baseline_s=statistics.median(self.baseline),
            **kw,
        )


def seconds(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> float:
    """Wall seconds of one call (``sync`` first and last, e.g. ``torch.cuda.synchronize``)."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def alternate(
    ours: Callable[[], Any],
    baseline: Callable[[], Any],
    reps: int = 5,
    warmups: int = 3,
    sync: Callable[[], None] | None = None,
) -> Timing:
    """``warmups`` untimed rounds of both, then ``reps`` timed rounds, the order alternating
    (ours first on even rounds, baseline first on odd ones) so drift hits both sides alike."""
    for _ in range(warmups):
        ours()
        baseline()
    timing = Timing([], [])
    for k in range(reps):
        if k % 2 == 0:
            timing.ours.append(seconds(ours, sync))
            timing.baseline.append(seconds(baseline, sync))
        else:
            timing.baseline.append(seconds(baseline, sync))
            timing.ours.append(seconds(ours, sync))
    return timing


def process(cmd: list[str], cwd: Path, out: Path | None = None) -> str:
    """One whole process (start-up and sweep figures); its outputs under a fresh ``out``
    (nothing to resume from); its stdout + stderr. A failure raises with the end of stderr."""
    env = {**os.environ, "WANDB_SILENT": "true"}
    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
        env["BENCH_OUTPUT_DIR"] = str(out)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def machine() -> dict[str, Any]:
    """What the figures came from: they are ratios, but ratios still depend on the machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def table(results: list[Result]) -> str:
    """The printed (and README) table: markdown."""
    lines = [
        "| figure | comparison | ratio (min–max) | target | met |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        if r.target is None:
            target = "—"
        else:
            target = f"{'≥' if r.higher_is_better else '≤'} {r.target:g}×"
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.figure} | {r.name}{note} | {r.ratio:.2f}× ({r.low:.2f}–{r.high:.2f}) "
            f"| {target} | {met} |"
        )
    return "\n".join(lines)
