"""A command-line secret reaches the job but no file the project writes (bench/secrets.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.secrets import ENV_PREFIX, env_name, move_to_env
from tests.conftest import CONF_DIR, run_cli

SECRET = "s3cr3t-value-123"
ENV_SECRET = "envtok-98765"  # a secret the environment holds, as WANDB_API_KEY does
HYDRA_FILES = ("config", "hydra", "overrides")


def files_holding(root: Path, *needles: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain one of ``needles`` (pickles included)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and any(n.encode() in p.read_bytes() for n in needles)
    )


def test_move_to_env_rewrites_secret_lines_only():
    environ: dict[str, str] = {}
    lines = ["+extra_api_key=s3cr3t", "++db.token='a b'", "my_password=42", "seed=3", "~old_key"]
    out, keys = move_to_env(lines, environ)
    assert keys == ["extra_api_key", "db.token", "my_password"]
    assert out == [
        "+extra_api_key=${oc.env:BENCH_SECRET_EXTRA_API_KEY}",
        "++db.token=${oc.env:BENCH_SECRET_DB_TOKEN}",
        "my_password=${oc.env:BENCH_SECRET_MY_PASSWORD}",
        "seed=3",
        "~old_key",  # a deletion carries no value
    ]
    assert environ == {
        "BENCH_SECRET_EXTRA_API_KEY": "s3cr3t",
        "BENCH_SECRET_DB_TOKEN": "a b",
        "BENCH_SECRET_MY_PASSWORD": "42",
    }
    again, _ = move_to_env(out, environ)  # Lightning's DDP ranks re-run the rewritten argv
    assert again == out and len(environ) == 3


def test_a_secret_cannot_be_swept():
    with pytest.raises(ConfigError, match=r"extra_api_key is a secret and cannot be swept"):
        move_to_env(["+extra_api_key=a,b"], {})


def test_env_name_is_itself_secret_named():
    # bench.results.secret_values() picks the moved value up, so scrub redacts copies of it.
    from bench.results import secret_values

    assert env_name("a.b-key").startswith(ENV_PREFIX)
    assert secret_values({env_name("x_token"): SECRET}) == {SECRET}


@pytest.mark.slow
def test_cli_run_writes_the_secret_nowhere(tmp_path: Path):
    """The real ``bench-train`` with csv and offline wandb: Hydra, Lightning and wandb files."""
    proc = run_cli(
        f"+extra_api_key={SECRET}",
        "+extra_note=${extra_api_key}",  # a non-secret key that copies the secret
        "+extra_seed=${seed}",
        "seed=7",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "evaluation.shift.corruptions=[]",
        cwd=tmp_path,
        env={"MY_SERVICE_TOKEN": ENV_SECRET},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "out" / "runs").glob("*")
    assert list(run_dir.glob("wandb/offline-run-*/*.wandb")), "wandb wrote no run"
    assert files_holding(tmp_path / "out", SECRET, ENV_SECRET) == []

    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed"
    # The job ran with the composed config: the sibling resolved; the copy of the secret was
    # redacted because its value contains the secret the job read from the environment.
    assert record["config"]["extra_seed"] == 7
    assert record["config"]["extra_note"] == "<redacted>"
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert OmegaConf.to_container(saved)["extra_api_key"] == (
        "${oc.env:BENCH_SECRET_EXTRA_API_KEY}"
    )
    wandb_log = next(run_dir.glob("wandb/offline-run-*/*.wandb")).read_bytes()
    assert b"+extra_api_key=${oc.env:BENCH_SECRET_EXTRA_API_KEY}" in wandb_log  # its argv


PROBE = """
import hashlib, sys
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path={conf!r}, config_name="train")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    seen = hashlib.sha256(cfg.extra_api_key.encode()).hexdigest()
    name = HydraConfig.get().job.override_dirname
    (out / "seen.txt").write_text(f"{{seen}} {{cfg.seed}} {{name}}")

if __name__ == "__main__":
    main()
"""


def probe_sweep(
    tmp_path: Path, *args: str, subdir: str = "${hydra.job.override_dirname}"
) -> tuple[subprocess.CompletedProcess, Path]:
    """A two-job sweep of a task that records a digest of the secret it received."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(conf=str(CONF_DIR)))
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--multirun",
            f"+extra_api_key={SECRET}",
            "seed=0,1",
            "hydra.callbacks.leaderboard.enabled=false",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            f"hydra.sweep.subdir={subdir}",  # by default named after the overrides
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, tmp_path / "sweep"


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_sweep_jobs_get_the_secret_and_no_file_holds_it(tmp_path: Path, launcher: str):
    proc, sweep = probe_sweep(tmp_path, f"hydra/launcher={launcher}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    seen = sorted(p.read_text().split() for p in sweep.glob("*/seen.txt"))
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    # override_dirname, here also the job's directory name, leaves the secret key out.
    assert seen == [[digest, "0", "seed=0"], [digest, "1", "seed=1"]]
    assert sorted(p.parent.name for p in sweep.glob("*/seen.txt")) == ["seed=0", "seed=1"]
    assert (sweep / "multirun.yaml").exists()
    if launcher == "submitit_local":
        assert list(sweep.glob(".submitit/*/*.pkl")), "submitit pickled no job"
    assert files_holding(sweep, SECRET) == []


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_without_the_callback_the_secret_leaks(tmp_path: Path, launcher: str):
    """The control: the same sweep with the callback removed writes the value in clear."""
    proc, sweep = probe_sweep(
        tmp_path, "~hydra.callbacks.secrets", f"hydra/launcher={launcher}", subdir="${seed}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    leaked = {p.relative_to(sweep).as_posix() for p in files_holding(sweep, SECRET)}
    written = {"multirun.yaml", *(f"{j}/.hydra/{f}.yaml" for j in "01" for f in HYDRA_FILES)}
    assert written <= leaked
    pickles = {p for p in leaked if p.endswith("_submitted.pkl")}
    assert len(pickles) == (2 if launcher == "submitit_local" else 0)
