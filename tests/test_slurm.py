"""Submitting a sweep to a real Slurm through Hydra's submitit launcher (``hydra/launcher=slurm``).

``.ci/run`` starts a single-node Slurm on this machine (``../shared/scripts/start-local-slurm.sh``);
without one the test is skipped and says why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli


def slurm_unavailable() -> str | None:
    """Why Slurm cannot be used here, or None when a node is up."""
    if shutil.which("sinfo") is None or not Path("/etc/slurm/slurm.conf").exists():
        return (
            "no Slurm here (start one with ../shared/scripts/start-local-slurm.sh, as .ci/run does)"
        )
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.startswith(("idle", "mix")) for s in states):
        return f"Slurm has no idle node (sinfo: {proc.stdout.strip() or proc.stderr.strip()})"
    return None


@pytest.mark.slow
@pytest.mark.skipif(slurm_unavailable() is not None, reason=str(slurm_unavailable()))
def test_sweep_runs_as_slurm_jobs(tmp_path: Path):
    proc = run_cli(
        "--multirun",
        "hydra/launcher=slurm",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=10",
        "seed=0,1",
        "trainer.max_epochs=1",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "out" / "multiruns").glob("*")
    records = sorted(sweep.glob("*/results.json"))
    assert [json.loads(p.read_text())["seed"] for p in records] == [0, 1]
    assert all(json.loads(p.read_text())["status"] == "completed" for p in records)
    # submitit's own logs prove the jobs went through sbatch, not a local launcher.
    assert list((sweep / ".submitit").glob("*/*_log.out"))
