"""Shared fixtures: compose the real config (as the CLI would) but tiny, on CPU, in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from bench.data.uci_protocol import register_resolvers

register_resolvers()  # ${uci:...} (conf/experiment/*uci*), as bench-train registers it

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
# The team's offline dataset copies live beside the checkout (never inside it).
SHARED_TORCHVISION = Path(
    os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data" / "torchvision")
)
SHARED_UCI = Path(os.environ.get("BENCH_SHARED_UCI", REPO.parent / "shared" / "data" / "uci"))
needs_uci = pytest.mark.skipif(
    not (SHARED_UCI / "yacht" / "data.txt").is_file(),
    reason=f"offline UCI copy not found at {SHARED_UCI} (set BENCH_SHARED_UCI to its folder)",
)

FAST = [
    "trainer.max_epochs=3",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def make_cfg(run_dir: Path, *overrides: str) -> DictConfig:
    """The composed ``conf/train.yaml`` with the fast settings plus ``overrides``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*FAST, *overrides])
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path: Path):
    def factory(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return make_cfg(run_dir or tmp_path / "run", *overrides)

    return factory


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``bench-train`` in a subprocess, exactly as a user runs it; outputs under ``cwd/out``."""
    full_env = {**os.environ, "WANDB_SILENT": "true", "BENCH_OUTPUT_DIR": str(cwd / "out")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bench.train", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sweep_records(cwd: Path) -> list[Path]:
    """The ``results.json`` of every job of the ``--multirun`` sweeps ``run_cli`` ran in ``cwd``,
    in the order the jobs were launched (run directories are named by config hash)."""
    return sorted((cwd / "out" / "multiruns").glob("*/*/results.json"), key=job_number)


def job_number(record: Path) -> int:
    """Hydra's ``job.num`` of the job that wrote ``record`` (from its ``.hydra/hydra.yaml``)."""
    hydra_cfg = OmegaConf.load(record.parent / ".hydra" / "hydra.yaml")
    return int(hydra_cfg.hydra.job.num)


@pytest.fixture(scope="session")
def dropout_digits_run(tmp_path_factory) -> tuple[Path, dict]:
    """One digits MLP with dropout, scored by every predictor (8 MC samples), shared by tests."""
    from bench.train import run

    run_dir = tmp_path_factory.mktemp("dropout_digits")
    cfg = make_cfg(
        run_dir,
        "regularizer=[dropout]",
        "+callbacks=mc_dropout",
        "callbacks.mc_dropout.samples=8",
        "trainer.max_epochs=5",
        "evaluation.ood.partners=[noise]",
        "evaluation.shift.max_samples=120",
    )
    return run_dir, run(cfg)
