"""regbench's benchmark suite: every figure a ratio against a baseline run side by side.

    .venv/bin/python scripts/benchmark.py                 # every figure; the table and a JSON
    .venv/bin/python scripts/benchmark.py --quick         # a smoke run (small sizes, 1 rep)
    .venv/bin/python scripts/benchmark.py --only overhead,mc --json out.json
    .venv/bin/python scripts/benchmark.py --device cuda   # the GPU figures (figures 7, 10)

Figures (``scripts/perf/<name>.py``): overhead (framework cost per training step), startup
(whole processes vs the import floor; fixed cost per run in a multirun), sweep (a multirun vs a
plain in-process loop), mc (MC dropout variants), data (loader vs slicing; batched vs
per-sample augmentation), evaluation (final evaluation vs training time), gpu (figure 7);
``scripts/perf/population.py``: pop-sweep (the population launcher's sweep vs the basic one),
pop-uci (a 240-member UCI population vs one at a time and vs a hand-written batched loop),
pop-gpu (both on CUDA, figure 10); ``scripts/perf/reproduction.py``: masks (numpy-drawn dropout
masks vs torch's ``bernoulli_``), compose (Hydra's per-job composition once per group structure).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ itself: the perf package

from perf.common import Result, machine, table  # noqa: E402

FIGURES = ("overhead", "startup", "sweep", "mc", "data", "evaluation", "gpu",
           "pop-sweep", "pop-uci", "pop-gpu", "masks", "compose")  # fmt: skip
# A figure is ``perf.<name>.run(args)`` unless one module holds several: (module, function).
ENTRIES = {
    "pop-sweep": ("population", "run_sweep"),
    "pop-uci": ("population", "run_uci"),
    "pop-gpu": ("population", "run_gpu"),
    "masks": ("reproduction", "run_masks"),
    "compose": ("reproduction", "run_compose"),
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(FIGURES), help="comma-separated figures")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repetition: a smoke run")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per side")
    p.add_argument("--warmups", type=int, default=3, help="untimed rounds before timing")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.warmups = 1, 1
    unknown = sorted(set(args.only.split(",")) - set(FIGURES))
    if unknown:
        p.error(f"--only: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results: list[Result] = []
    started = time.time()
    for name in args.only.split(","):
        module, function = ENTRIES.get(name, (name, "run"))
        t0 = time.time()
        rows = getattr(importlib.import_module(f"perf.{module}"), function)(args)
        print(f"[{name}: {time.time() - t0:.0f} s]", file=sys.stderr)
        results.extend(rows)
    env = machine()
    print(table(results))
    print(
        f"\n{env['cpu']}, {env['cores']} cores, torch {env['torch']} ({env['threads']} threads)"
        f"{', ' + env['cuda'] if env['cuda'] else ''}; {time.time() - started:.0f} s in all"
    )
    if args.json is not None:
        payload = {"machine": env, "args": vars(args) | {"json": str(args.json)}}
        payload["results"] = [r.as_dict() for r in results]
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
