"""Figure 6: the final evaluation's cost as a fraction of training, on the default digits run.

Both sides come from one run: its results.json records ``timing`` (setup_s, fit_s, evaluate_s,
plots_s), and ``evaluate_s / fit_s`` is this figure (target ≤ 1). The evaluation is everything
the default config asks for: every predictor (deterministic, temperature scaling), every split,
OOD partners (noise, and fashion_mnist where its files are found: ``$BENCH_DATA_DIR``, else the
shared data beside the checkout) and dataset shift (4 corruptions x 5 severities).

Each repetition is one whole default run (30 epochs, csv + wandb offline) in a fresh directory,
with ``threads=1`` unless ``--threads`` says otherwise; warm-up runs are not needed (the ratio
is taken inside each run) and ``--quick`` runs two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from perf.common import Result

REPO = Path(__file__).resolve().parents[2]
FIGURE = "6 evaluation"
SHARED_DATA = REPO.parent / "shared" / "data" / "torchvision"


def one_run(out: Path, threads: int) -> dict[str, Any]:
    """A default run as a user starts it; its record."""
    env = {**os.environ, "WANDB_SILENT": "true", "BENCH_OUTPUT_DIR": str(out)}
    if "BENCH_DATA_DIR" not in env and SHARED_DATA.is_dir():
        env["BENCH_DATA_DIR"] = str(SHARED_DATA)
    cmd = [sys.executable, "-m", "bench.train", f"threads={threads}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    (record,) = out.glob("runs/*/results.json")
    return json.loads(record.read_text())


def run(args: argparse.Namespace) -> list[Result]:
    threads = args.threads or 1
    records = []
    for k in range(2 if args.quick else args.reps):
        with tempfile.TemporaryDirectory(prefix="regbench-evaluation-") as name:
            records.append(one_run(Path(name) / f"run{k}", threads))
    timing = [r["timing"] for r in records]
    ratios = [t["evaluate_s"] / t["fit_s"] for t in timing]
    with_plots = [(t["evaluate_s"] + t["plots_s"]) / t["fit_s"] for t in timing]
    metrics = records[0]["metrics"]
    partners = sorted({k.split("/")[1] for k in metrics if k.startswith("ood/")})
    shifted = sorted({k.split("/")[1] for k in metrics if k.startswith("shift/")} - {"mean"})
    return [
        Result(
            figure=FIGURE,
            name="final evaluation time / training time, default digits run",
            ratio=statistics.median(ratios),
            low=min(ratios),
            high=max(ratios),
            target=1.0,
            higher_is_better=False,
            ours_s=statistics.median(t["evaluate_s"] for t in timing),
            baseline_s=statistics.median(t["fit_s"] for t in timing),
            note=f"30 epochs; OOD: {', '.join(partners)}; shift: {len(shifted)} corruptions",
            extra={
                "runs": len(records),
                "threads": threads,
                "with_plots": statistics.median(with_plots),
                "timing": timing,
                "ood_partners": partners,
                "corruptions": shifted,
            },
        )
    ]
