"""Benchmark of ``bench-leaderboard``: 10,000 synthetic records into both leaderboards.

Writes realistic records (``bench.leaderboard.synthetic``: resolved configs with run-dir paths,
~250 metrics each with ts/mc/ood/shift keys) to a temporary directory, then times the real
command end to end — interpreter start, reading, grouping, selection, statistics, rendering
and writing the six leaderboard files — for 1,000 and 10,000 records. Linear scaling means
the 10k/1k ratio stays near 10. Exits 1 when 10,000 records take longer than ``--limit``.

    .venv/bin/python scripts/bench_leaderboard.py [--records 10000] [--limit 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.leaderboard.synthetic import write_sweep  # noqa: E402


def time_cli(root: Path, out: Path) -> float:
    """Seconds for one ``python -m bench.leaderboard`` over ``root`` (Markdown to stdout)."""
    cmd = [
        sys.executable,
        "-m",
        "bench.leaderboard",
        str(root),
        "--format",
        "md",
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def time_startup() -> float:
    """Seconds for the interpreter to start and import the command: the fixed cost."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import bench.leaderboard.cli"], cwd=REPO, check=True)
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--limit", type=float, default=10.0, help="seconds allowed for --records")
    args = p.parse_args()
    small = max(1, args.records // 10)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, args.records):
            root = Path(tmp) / f"sweep{n}"
            started = time.perf_counter()
            write_sweep(str(root), n)
            written = time.perf_counter() - started
            times[n] = min(time_cli(root, Path(tmp) / f"out{n}") for _ in range(2))
            print(
                f"{n:>6} records: {times[n]:.2f} s (best of 2; writing them took {written:.1f} s)"
            )
    startup = min(time_startup() for _ in range(3))
    ratio = times[args.records] / times[small]
    net = (times[args.records] - startup) / (times[small] - startup)
    print(f"start-up (interpreter + imports): {startup:.2f} s")
    print(f"scaling {small} -> {args.records} records: x{ratio:.1f} (x{net:.1f} after start-up)")
    if times[args.records] > args.limit:
        print(f"FAIL: {args.records} records took {times[args.records]:.2f} s > {args.limit} s")
        return 1
    print(f"ok: under {args.limit} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
