"""``scripts/benchmark.py --quick``: every figure runs and writes its rows (a smoke test — the
figures themselves are measurements, never asserted: machines are noisy)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "benchmark.py"
FIGURES = ["overhead", "startup", "sweep", "mc", "data", "evaluation", "gpu",
           "pop-sweep", "pop-uci", "pop-gpu"]  # fmt: skip  # numbered 1–10


def quick(tmp_path: Path, figures: str) -> dict:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--only", figures,
         "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "WANDB_SILENT": "true", "BENCH_OUTPUT_DIR": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| figure | comparison | ratio (min–max) | target | met |" in proc.stdout
    return json.loads(out.read_text())


def check_rows(payload: dict, figures: str) -> None:
    rows = payload["results"]
    seen = {r["figure"].split()[0] for r in rows}
    expected = {str(1 + FIGURES.index(f)) for f in figures.split(",")}
    assert seen == expected
    for r in rows:
        # a skipped measurement is NaN and says why; every other figure is a positive number
        assert (math.isnan(r["ratio"]) and r["note"]) or r["ratio"] >= 0, r
        if r["target"] is not None and not math.isnan(r["ratio"]):
            assert r["met"] == (
                r["ratio"] >= r["target"] if r["higher_is_better"] else r["ratio"] <= r["target"]
            )
    assert payload["machine"]["torch"] and payload["machine"]["cores"] >= 1


def test_the_in_process_figures_run_quick(tmp_path: Path):
    check_rows(quick(tmp_path, "mc,data"), "mc,data")


@pytest.mark.slow
def test_every_other_figure_runs_quick(tmp_path: Path):
    figures = "overhead,startup,sweep,evaluation,gpu"
    check_rows(quick(tmp_path, figures), figures)


@pytest.mark.slow
def test_the_population_figures_run_quick(tmp_path: Path):
    """Figures 8–10 (about 25 s on 2 cores): both sweeps complete every job, the hand loop
    matches the population's records (checked inside the figure), pop-gpu is skipped on CPU."""
    figures = "pop-sweep,pop-uci,pop-gpu"
    payload = quick(tmp_path, figures)
    check_rows(payload, figures)
    rows = {r["figure"]: r for r in payload["results"]}
    assert rows["8 pop-sweep"]["extra"]["max_test_loss_diff"] < 1e-3
    assert rows["9 pop-uci"]["extra"]["check_max_rel_diff"] < 1e-4
    gpu = [r for r in payload["results"] if r["figure"] == "10 pop-gpu"]
    if not payload["machine"]["cuda"]:
        assert gpu and all(math.isnan(r["ratio"]) and "no GPU" in r["note"] for r in gpu)
