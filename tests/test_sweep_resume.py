"""The same command, run again, resumes: a single run stopped by SIGTERM and a ``--multirun``
stopped by Ctrl-C, as a user or a scheduler does it — signals from outside the process."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

FAST = [
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "evaluation.ood.partners=[]",
    "evaluation.shift.corruptions=[]",
    "evaluation.plots=false",
]


def start(cwd: Path, *args: str, out: str = "out") -> subprocess.Popen:
    env = {**os.environ, "WANDB_SILENT": "true", "BENCH_OUTPUT_DIR": str(cwd / out)}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [sys.executable, "-m", "bench.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Poll every 5 ms until ``predicate()`` holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the signal could be sent:\n{finish(proc)[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the run to reach the point of the signal")
        time.sleep(0.005)


SINGLE = [*FAST, "trainer.max_epochs=5", "dataset.batch_size=8", "regularizer=[dropout]"]


@pytest.mark.slow
def test_sigterm_in_epoch_3_then_the_same_command_resumes_exactly(tmp_path: Path):
    reference = tmp_path / "reference"
    reference.mkdir()
    code, output = finish(start(reference, *SINGLE))
    assert code == 0, output[-3000:]
    (expected,) = (reference / "out" / "runs").glob("*/results.json")

    proc = start(tmp_path, *SINGLE)
    runs = tmp_path / "out" / "runs"
    # Epoch 2 (0-based 1) has ended once its checkpoint exists; then a random moment later.
    wait_for(lambda: any(runs.glob("*/checkpoints/e0001-*.ckpt")), proc)
    time.sleep(random.uniform(0, 0.05))
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc)
    assert code == 128 + signal.SIGTERM, output[-3000:]
    (record_path,) = runs.glob("*/results.json")
    assert record_path.parent.name == expected.parent.name  # the same directory name
    stopped = json.loads(record_path.read_text())
    assert stopped["status"] == "interrupted" and stopped["interrupted"]["epoch"] == 3
    assert "run the same command again to resume" in output

    code, output = finish(start(tmp_path, *SINGLE))
    assert code == 0, output[-3000:]
    assert f"Restoring states from the checkpoint path at {record_path.parent}" in output
    assert "resuming from a checkpoint that ended before the epoch ended" not in output
    resumed = json.loads(record_path.read_text())
    assert resumed["status"] == "completed"
    assert resumed["metrics"] == json.loads(expected.read_text())["metrics"]
    assert len(list(runs.iterdir())) == 1  # no second directory

    code, output = finish(start(tmp_path, *SINGLE))  # once more: nothing left to do
    assert code == 0 and "already completed; skipped" in output
    assert json.loads(record_path.read_text()) == resumed


SWEEP = ["--multirun", "seed=0,1,2", *FAST, "trainer.max_epochs=4", "dataset.batch_size=16"]
BOARDS = [f"leaderboard_{b}.{ext}" for b in ("gap", "calibration") for ext in ("md", "csv", "json")]


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_then_the_same_command_completes_it_with_nothing_run_twice(
    tmp_path: Path,
):
    # The uninterrupted sweep first, moved aside so that both sweeps live at the same paths.
    code, output = finish(start(tmp_path, *SWEEP))
    assert code == 0, output[-3000:]
    (reference,) = (tmp_path / "out" / "multiruns").iterdir()
    boards = {name: (reference / name).read_bytes() for name in BOARDS}
    (tmp_path / "out").rename(tmp_path / "reference")

    proc = start(tmp_path, *SWEEP)
    sweep = tmp_path / "out" / "multiruns" / reference.name

    def second_job_trained_an_epoch() -> bool:
        done = list(sweep.glob("*/results.json"))
        started = [p for p in sweep.glob("*/checkpoints/e0000-*.ckpt")]
        return len(done) == 1 and any(not (p.parents[1] / "results.json").exists() for p in started)

    wait_for(second_job_trained_an_epoch, proc)
    proc.send_signal(signal.SIGINT)
    code, output = finish(proc)
    assert code == 128 + signal.SIGINT, output[-3000:]
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    statuses = sorted(r["status"] for r in records.values())
    assert statuses == ["completed", "interrupted"]  # the third job never started
    (first,) = [
        sweep / n / "results.json" for n, r in records.items() if r["status"] == "completed"
    ]
    first_bytes, first_mtime = first.read_bytes(), first.stat().st_mtime_ns
    (second,) = [n for n, r in records.items() if r["status"] == "interrupted"]

    code, output = finish(start(tmp_path, *SWEEP))
    assert code == 0, output[-3000:]
    assert first.read_bytes() == first_bytes and first.stat().st_mtime_ns == first_mtime
    assert f"{first.parent}: already completed; skipped" in output
    assert f"Restoring states from the checkpoint path at {sweep / second}" in output
    final = [json.loads(p.read_text())["status"] for p in sweep.glob("*/results.json")]
    assert final == ["completed"] * 3
    for name, data in boards.items():
        assert (sweep / name).read_bytes() == data, f"{name} differs from the uninterrupted sweep's"
