"""Launcher and sweeper presets: parallel jobs share the cores, submitit runs locally, Optuna
studies are stored in the sweep directory and continue.

The CLI tests run tiny digits sweeps through ``bench-train`` exactly as a user would; what a job
ran with is read back from what it writes anyway (``train.log``, results.json, Optuna's db).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError
from bench.threads import configure_threads, launcher_share
from tests.conftest import run_cli, sweep_records

TINY = [
    "trainer.max_epochs=1",
    "logger=csv",
    "evaluation.shift.corruptions=[]",
    "trainer.enable_progress_bar=false",
]
THREADS_LINE = re.compile(r"torch threads: (\d+) \((.*)\) in process (\d+)")


def missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


needs_joblib = pytest.mark.skipif(
    missing("hydra_plugins.hydra_joblib_launcher"),
    reason="hydra-joblib-launcher is not installed (pip install hydra-joblib-launcher)",
)
needs_optuna = pytest.mark.skipif(
    missing("hydra_plugins.hydra_optuna_sweeper") or missing("optuna"),
    reason="hydra-optuna-sweeper is not installed (pip install hydra-optuna-sweeper)",
)


def launcher(target: str, **keys) -> DictConfig:
    return OmegaConf.create({"_target_": target, **keys})


JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


@pytest.mark.parametrize(
    ("n_jobs", "cores", "expected"),
    [(2, 2, 1), (2, 8, 4), (3, 8, 2), (4, 2, 1), (-1, 4, 1), (-2, 8, 1), (-3, 12, 1)],
)
def test_joblib_jobs_get_an_equal_share_of_the_cores(n_jobs: int, cores: int, expected: int):
    # -k means cores + 1 - k jobs at once (joblib): -2 on 8 cores runs 7 jobs, one thread each.
    threads, reason = launcher_share(launcher(JOBLIB, n_jobs=n_jobs), cores)
    assert threads == expected
    assert "joblib" in reason


def test_submitit_jobs_get_their_cpus_per_task_and_basic_keeps_the_default():
    assert launcher_share(launcher(SUBMITIT, cpus_per_task=3), cores=8)[0] == 3
    assert launcher_share(launcher(SUBMITIT, cpus_per_task=16), cores=8)[0] == 8  # capped
    assert launcher_share(launcher(SUBMITIT, cpus_per_task=None), cores=8) is None
    assert launcher_share(launcher(BASIC), cores=8) is None


def test_threads_key_sets_torch_threads_and_rejects_bad_values():
    before = torch.get_num_threads()
    try:
        assert configure_threads(OmegaConf.create({"threads": 1})) == 1
        assert torch.get_num_threads() == 1
        # auto outside Hydra (a run() from Python) leaves torch's count as it is
        assert configure_threads(OmegaConf.create({"threads": None})) == 1
        for bad in (0, -2, 1.5, "four", True):
            with pytest.raises(ConfigError, match=r"^threads must be null \(auto\) or an integer"):
                configure_threads(OmegaConf.create({"threads": bad}))
    finally:
        torch.set_num_threads(before)


def job_threads(job_dir: Path) -> tuple[int, str, int]:
    """(threads, why, pid) from the line bench.threads writes into the job's train.log."""
    (match,) = THREADS_LINE.findall((job_dir / "train.log").read_text())
    return int(match[0]), match[1], int(match[2])


def sweep_dir(tmp_path: Path) -> Path:
    (sweep,) = (tmp_path / "out" / "multiruns").glob("*")
    return sweep


@pytest.mark.slow
@needs_joblib
def test_parallel_launcher_runs_jobs_in_separate_processes_with_a_share_of_cores(tmp_path: Path):
    proc = run_cli(
        "--multirun", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=0,1", *TINY,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [path.parent for path in sweep_records(tmp_path)]
    records = [json.loads((job / "results.json").read_text()) for job in jobs]
    assert [(r["seed"], r["status"]) for r in records] == [(0, "completed"), (1, "completed")]
    seen = [job_threads(job) for job in jobs]
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    assert [threads for threads, _, _ in seen] == [expected, expected]
    assert all(why.startswith("joblib n_jobs=2") for _, why, _ in seen)
    assert seen[0][2] != seen[1][2], "both jobs ran in the same process"


@pytest.mark.slow
def test_local_submitit_launcher_completes_a_sweep(tmp_path: Path):
    proc = run_cli("--multirun", "hydra/launcher=local", "seed=0,1", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    jobs = [path.parent for path in sweep_records(tmp_path)]
    records = [json.loads((job / "results.json").read_text()) for job in jobs]
    assert [(r["seed"], r["status"]) for r in records] == [(0, "completed"), (1, "completed")]
    # submitit's own per-job logs show the jobs went through its executor, one thread each
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2
    assert [job_threads(job)[:2] for job in jobs] == [
        (1, "submitit cpus_per_task=1"),
        (1, "submitit cpus_per_task=1"),
    ]


@pytest.mark.slow
@needs_optuna
def test_optuna_study_is_stored_in_the_sweep_dir_and_continues(tmp_path: Path):
    import optuna

    sweep = tmp_path / "study"
    args = ["--multirun", "hydra/sweeper=optuna_strength", "hydra.sweeper.n_trials=3"]
    args += [f"hydra.sweep.dir={sweep}", *TINY]

    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(optuna.load_study(study_name="regbench", storage=storage(sweep)).trials) == 3
    first_records = {p: p.read_bytes() for p in sweep.glob("*/results.json")}
    assert len(first_records) == 3

    again = run_cli(*args, cwd=tmp_path)  # the same command: 3 more trials of the same study
    assert again.returncode == 0, again.stderr[-3000:]
    trials = optuna.load_study(study_name="regbench", storage=storage(sweep)).trials
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # the first three trials' records are untouched; three new ones sit beside them
    assert {p: p.read_bytes() for p in first_records} == first_records
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert len(records) == 6
    # each record is one trial: the strength Optuna chose, trained, scored on val/loss
    by_strength = {r["config"]["regularizer"]["l2"]["strength"]: r for r in records}
    assert len(by_strength) == 6, "the continued study drew the first invocation's points again"
    assert sorted(by_strength) == sorted(t.params["regularizer.l2.strength"] for t in trials)
    for t in trials:
        record = by_strength[t.params["regularizer.l2.strength"]]
        assert record["metrics"]["val/loss"] == pytest.approx(t.value, rel=1e-12)
        assert 1e-6 <= t.params["regularizer.l2.strength"] <= 1e-1


def storage(sweep: Path) -> str:
    return f"sqlite:///{sweep}/optuna.db"
