"""Jobs cut by a time limit or a preemption are requeued by submitit and resume exactly.

Fault injection through ``bench-train --multirun`` exactly as a user runs it:

- the submitit *local* executor sends SIGUSR2 ``signal_delay_s`` before ``timeout_min``; the run
  saves a resumable checkpoint, submitit requeues the job (exit code 144), the next start of the
  same Hydra job finds its run directory and resumes; past ``max_num_timeout`` the job is
  recorded as ``failed`` and not started again;
- on a real Slurm, ``scancel --signal=USR2`` on a running job: one ``scontrol requeue`` (Slurm's
  ``Restarts`` counter), one resume.

The reference is the same configuration run in this process without interruption, torch on one
thread like the jobs (``cpus_per_task=1``); "resumed exactly" means equal ``metrics`` dicts.

Timing: through Hydra's launcher the local executor's limit is whole minutes (submitit's
``AutoExecutor`` asserts ``timeout_min`` is an int) and its warning comes 30 s before it (the
``LocalExecutor`` default; ``AutoExecutor`` rejects ``signal_delay_s`` for it). With
``timeout_min=1`` every start of a job gets SIGUSR2 30 s after it began, so ``Pace`` makes
training outlast that on any machine: 18 epochs of 41 batches with 40 ms sleep each is 29.5 s
of sleep alone, plus the job's start-up of several seconds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import REPO, make_cfg, run_cli
from tests.test_slurm import slurm_unavailable

RUN = [
    "dataset.batch_size=32",  # 41 batches an epoch: a timeout lands mid-epoch
    "regularizer=[dropout]",  # dropout masks: the torch random state must resume too
    "evaluation.ood.partners=[]",
    "evaluation.shift.corruptions=[]",
    "evaluation.plots=false",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]
PACE = ["+callbacks.pace._target_=tests.faults.Pace", "+callbacks.pace.seconds=0.04"]
LOCAL = ["hydra/launcher=local", "hydra.launcher.timeout_min=1"]  # SIGUSR2 after 30 s
SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
LOCAL_EPOCHS = 18  # >= 29.5 s of training: the first start is always cut mid-training
SLURM_EPOCHS = 6  # ~10 s of training: time to signal after the first epoch's checkpoint
# The jobs import tests.faults.Pace, so the repository goes on their path (sbatch exports
# the environment to Slurm jobs).
JOB_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

STOPPED = re.compile(r"stopped by SIGUSR2 at epoch \d+, step \d+; checkpoint (\S+);")
RESUMED = re.compile(r"resuming from (\S+)")
# submitit's own log lines (the job's Hydra logging repeats them in its own format).
REQUEUED = re.compile(r"^submitit INFO .* - Requeued job \S+ \((\d+) remaining timeouts\)$", re.M)
STARTED = re.compile(r"^submitit INFO .* - Starting with JobEnvironment", re.M)


def reference(tmp_path: Path, epochs: int) -> dict[str, Any]:
    """The same configuration trained in this process without interruption (and without
    :class:`~tests.faults.Pace`), torch on one thread as in the jobs."""
    from bench.train import run

    cfg = make_cfg(tmp_path / "reference", *RUN, f"trainer.max_epochs={epochs}", "threads=1")
    threads = torch.get_num_threads()
    try:
        return run(cfg)
    finally:
        torch.set_num_threads(threads)


def sweep_args(launcher: list[str], epochs: int, *extra: str) -> list[str]:
    """A one-job sweep of :data:`RUN`, paced, with ``launcher``."""
    return ["--multirun", *launcher, *extra, *RUN, *PACE, f"trainer.max_epochs={epochs}"]


def the_job(tmp_path: Path) -> tuple[Path, Path]:
    """(run directory, submitit log) of the sweep's only job."""
    (sweep,) = (tmp_path / "out" / "multiruns").glob("*")
    (run_dir,) = sweep.glob("digits-*")
    (log,) = sweep.glob(".submitit/*/*_0_log.out")
    return run_dir, log


def starts_and_requeues(log: Path) -> tuple[int, list[int]]:
    """How often the job started, and the remaining timeouts submitit named at each requeue."""
    text = log.read_text()
    return len(STARTED.findall(text)), [int(n) for n in REQUEUED.findall(text)]


def stop_local_jobs(tmp_path: Path) -> None:
    """Kill what a failed test left of submitit's local jobs: their controller outlives the
    launcher by design (and would run the job to its end). Only processes whose command line
    names this test's ``.submitit`` folder are touched, by pid."""
    for folder in (tmp_path / "out" / "multiruns").glob("*/.submitit/*"):
        if not folder.name.isdigit():
            continue
        controller = int(folder.name)  # a local job's id is its controller's pid
        ours = f"{folder.parent}{os.sep}"  # their command lines name <sweep>/.submitit/%j
        for pid in [*children(controller), controller]:
            if ours in command_line(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it ended by itself meanwhile: nothing left to stop


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except FileNotFoundError:
        return []  # the process is gone


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""  # the process is gone


def run_local(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    try:
        return run_cli(
            *sweep_args(LOCAL, LOCAL_EPOCHS, *extra), cwd=tmp_path, env=JOB_ENV, timeout=240
        )
    finally:
        stop_local_jobs(tmp_path)


@pytest.mark.slow
def test_local_timeout_checkpoints_requeues_and_resumes_exactly(tmp_path: Path):
    proc = run_local(tmp_path, "hydra.launcher.max_num_timeout=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir, log = the_job(tmp_path)
    record = json.loads((run_dir / "results.json").read_text())
    expected = reference(tmp_path, LOCAL_EPOCHS)
    assert record["status"] == "completed"
    assert record["metrics"] == expected["metrics"]
    assert record["epochs"] == expected["epochs"] == LOCAL_EPOCHS

    # The first start was cut (a loaded machine may cut the second too); submitit counted each
    # cut as a timeout and requeued the job that many times.
    starts, remaining = starts_and_requeues(log)
    assert 1 <= len(remaining) <= 3
    assert starts == len(remaining) + 1
    assert remaining == [2, 1, 0][: len(remaining)]
    # Each stop saved a checkpoint mid-training and the next start resumed from exactly it.
    train_log = (run_dir / "train.log").read_text()
    stopped, resumed = STOPPED.findall(train_log), RESUMED.findall(train_log)
    assert stopped, train_log[-3000:]
    assert resumed == stopped


@pytest.mark.slow
def test_local_timeout_past_max_num_timeout_is_failed_and_not_requeued(tmp_path: Path):
    proc = run_local(tmp_path, "hydra.launcher.max_num_timeout=0")
    run_dir, log = the_job(tmp_path)
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "failed"
    assert "timed-out too many times" in record["error"]
    # It stopped cleanly first: submitit refused the requeue after the checkpoint was saved.
    assert (run_dir / record["interrupted"]["checkpoint"]).is_file()
    starts, remaining = starts_and_requeues(log)
    assert (starts, remaining) == (1, [])
    # The sweep went on to its leaderboard, which names the failed job and exits non-zero.
    assert proc.returncode == 1
    assert "1 of 1 jobs failed or were interrupted" in proc.stderr, proc.stderr[-3000:]


def slurm_jobs(tmp_path: Path) -> list[str]:
    """Slurm job ids of this test's sweep (submitit names its folders by them)."""
    folders = (tmp_path / "out" / "multiruns").glob("*/.submitit/*")
    return [f.name for f in folders if re.fullmatch(r"\d+(_\d+)?", f.name)]


def wait_for(find, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout:.0f} s")


SLURM_MISSING = slurm_unavailable()


@pytest.mark.slow
@pytest.mark.skipif(SLURM_MISSING is not None, reason=str(SLURM_MISSING))
def test_slurm_usr2_requeues_once_and_resumes_exactly(tmp_path: Path):
    args = sweep_args(SLURM, SLURM_EPOCHS)
    with ThreadPoolExecutor(1) as pool:
        sweep = pool.submit(run_cli, *args, cwd=tmp_path, env=JOB_ENV, timeout=240)
        try:
            # The first epoch's checkpoint: the job is training its second epoch.
            wait_for(
                lambda: list((tmp_path / "out").glob("multiruns/*/digits-*/checkpoints/e*.ckpt")),
                "checkpoint of the first epoch",
                timeout=150,
            )
            (job_id,) = slurm_jobs(tmp_path)
            subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
            proc = sweep.result()
        finally:
            for job in slurm_jobs(tmp_path):  # a failed test leaves no job behind
                subprocess.run(["scancel", job], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir, log = the_job(tmp_path)
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed"
    assert record["metrics"] == reference(tmp_path, SLURM_EPOCHS)["metrics"]

    show = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30
    ).stdout
    assert re.search(r"\bRestarts=1\b", show), show
    starts, remaining = starts_and_requeues(log)
    assert (starts, len(remaining)) == (2, 1)
    train_log = (run_dir / "train.log").read_text()
    stopped, resumed = STOPPED.findall(train_log), RESUMED.findall(train_log)
    assert len(stopped) == 1 and resumed == stopped, train_log[-3000:]
