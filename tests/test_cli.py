"""The real command line in subprocesses (each costs ~5 s of imports, so there are few)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, sweep_records

SECRET = "sk-test-9f8e7d6c5b4a"


def test_default_run_end_to_end_offline(tmp_path: Path):
    """The README's main job: digits + MLP, csv + wandb offline, prints where results are."""
    env = {
        "WANDB_API_KEY": SECRET,
        "MY_SERVICE_TOKEN": SECRET + "-tok",
        "WANDB_MODE": "",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    proc = run_cli(
        "trainer.max_epochs=2", "trainer.enable_progress_bar=false", cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list((tmp_path / "out" / "runs").glob("*/results.json"))
    assert len(results) == 1
    run_dir = results[0].parent
    assert f"results: {results[0]}" in proc.stdout
    for key in ("test/acc=", "test/ece=", "gap/acc=", "gap/loss="):
        assert key in proc.stdout
    record = json.loads(results[0].read_text())
    assert record["status"] == "completed" and record["epochs"] == 2
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert list((run_dir / "wandb").glob("offline-run-*")), "wandb should log offline by default"
    # No secret from the environment in any file the run wrote.
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data, f"secret leaked into {path}"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path):
    proc = run_cli(
        "trainer.max_epochs=-1",
        "logger=none",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: trainer.max_epochs must be an integer >= 1, got -1"]
    assert not list((tmp_path / "out").rglob("results.json"))


def test_missing_torchvision_dataset_is_one_line(tmp_path: Path):
    missing = tmp_path / "nowhere"
    proc = run_cli(
        "dataset=mnist",
        f"dataset.data_dir={missing}",
        "logger=none",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "mnist" in lines[0].lower() and str(missing) in lines[0]
    assert "Traceback" not in proc.stderr


def test_unknown_option_is_hydras_error(tmp_path: Path):
    proc = run_cli(
        "model=transformer",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "Could not find 'model/transformer'" in proc.stderr


@pytest.mark.slow
def test_multirun_sweep_writes_one_record_per_job_and_ends_with_the_leaderboards(tmp_path: Path):
    """A sweep in one process: one record and one named wandb run per job, grouped by sweep;
    the Hydra callback then prints both leaderboards and writes them beside the jobs."""
    proc = run_cli(
        "--multirun",
        "regularizer=[],[l2]",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "evaluation.shift.corruptions=[]",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = sweep_records(tmp_path)
    assert [json.loads(p.read_text())["regularizers"] for p in records] == [[], ["l2"]]
    sweep = records[0].parent.parent
    for record, name in zip(
        records, ("digits/mlp/none/s0", "digits/mlp/l2(strength=0.0001)/s0"), strict=True
    ):
        # the previous job's wandb run was finished, not reused
        (run,) = (record.parent / "wandb").glob("offline-run-*")
        log = next(run.glob("run-*.wandb")).read_bytes()
        assert name.encode() in log and str(sweep.relative_to(tmp_path)).encode() in log
        assert list(run.glob("files/media/images/plots/reliability*.png"))  # the diagram
    assert "Generalization gap" in proc.stdout and "Calibration" in proc.stdout
    for board in ("gap", "calibration"):
        for ext in ("md", "csv", "json"):
            assert (sweep / f"leaderboard_{board}.{ext}").is_file()


def test_diverged_run_exits_zero_with_one_warning(tmp_path: Path):
    proc = run_cli(
        "dataset=diabetes",
        "model=linear",
        "optimizer=sgd",
        "optimizer.lr=1e6",
        "logger=none",
        "trainer.enable_progress_bar=false",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "diverged" in warnings[0]


@pytest.mark.slow
def test_ddp_on_cpu_writes_one_record_over_whole_splits(tmp_path: Path):
    """Two gloo processes: training is sharded, the final evaluation and the record are not."""
    import numpy as np

    from bench.data.digits import DigitsDataModule

    proc = run_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "regularizer=[dropout]",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("results: ") == 1  # rank 0 reports, the worker does not
    (results,) = (tmp_path / "out" / "runs").glob("*/results.json")
    record = json.loads(results.read_text())
    with np.load(results.parent / "predictions.npz", allow_pickle=False) as f:
        probs, labels = f["probs"], f["labels"]
    assert len(labels) == DigitsDataModule().split_sizes()["test"]  # not a per-rank shard
    assert record["metrics"]["test/acc"] == pytest.approx((probs.argmax(1) == labels).mean())


BOOM = '''
import sys

import torch

from bench.regularizers.base import Regularizer

NAN_STEP = 4


class Boom(Regularizer):
    """code 0: nothing; > 0: sys.exit(code) when the run is set up; -1: raise RuntimeError;
    -2: raise KeyboardInterrupt (from code, not Ctrl-C); -99: a NaN penalty at training step
    NAN_STEP (0-based)."""

    def __init__(self, code: int = 0) -> None:
        self.code = code
        self.steps = 0

    def setup(self, datamodule, model) -> None:
        if self.code > 0:
            sys.exit(self.code)
        if self.code == -1:
            raise RuntimeError("boom")
        if self.code == -2:
            raise KeyboardInterrupt("from a library")

    def penalty(self, model):
        self.steps += 1
        if self.code == -99 and self.steps == NAN_STEP + 1:
            return torch.tensor(float("nan"))
        return None
'''


def test_failing_jobs_do_not_stop_the_sweep_and_make_it_exit_non_zero(tmp_path: Path):
    """One job raises, one exits through SystemExit, one raises KeyboardInterrupt from code: all
    recorded as failed; one hits a NaN loss at step 4: diverged, stopped at that very step; the
    first completes. The leaderboard shows the usable runs and lists the failures, and the
    multirun exits 1."""
    (tmp_path / "boom.py").write_text(BOOM)
    proc = run_cli(
        "--multirun",
        "+regularizer.boom._target_=boom.Boom",
        "+regularizer.boom.code=0,3,-1,-99,-2",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "evaluation.shift.corruptions=[]",
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    records = sweep_records(tmp_path)
    statuses = [json.loads(p.read_text())["status"] for p in records]
    assert statuses == ["completed", "failed", "failed", "diverged", "failed"]
    assert json.loads(records[3].read_text())["diverged_at"] == {"epoch": 1, "step": 4}
    errors = [json.loads(records[k].read_text())["error"] for k in (1, 2, 4)]
    assert errors == ["SystemExit: 3", "RuntimeError: boom", "KeyboardInterrupt: from a library"]
    assert "1 completed runs" in proc.stdout and proc.stdout.count("left out (failed)") == 3
    assert "3 of 5 jobs failed or were interrupted" in proc.stderr
