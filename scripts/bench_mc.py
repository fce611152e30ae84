"""Figure 4 of the benchmark suite alone (MC dropout: regbench's sampler vs the hand variants).

Kept under this name for the places that cite it; the figure lives in ``scripts/perf/mc.py``.

    .venv/bin/python scripts/bench_mc.py [--quick] [--reps 5] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import sys

from benchmark import main  # scripts/ is on sys.path when this file runs as a script

if __name__ == "__main__":
    raise SystemExit(main(["--only", "mc", *sys.argv[1:]]))
