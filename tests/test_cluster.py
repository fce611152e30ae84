"""Multi-GPU / multi-node presets and who owns Slurm's requeue signal.

Lightning reads a Slurm job's layout from ``SLURM_*`` variables, so a fake job environment is
enough to see what every rank of a 2-node x 2-task job would get — no fit, no DDP processes.
The reference values are the fake job's own variables. The launcher preset is checked against
what Slurm would receive: the sbatch script submitit writes, caught by a fake ``sbatch``.
"""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import lightning as L
import lightning_utilities.core.rank_zero as utilities_rank_zero
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.types import HydraContext
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.trainer.connectors.signal_connector import _HandlersCompose
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict
from omegaconf.errors import InterpolationValidationError
from submitit.core.utils import FailedJobError

from bench.cluster import cluster_plugins
from tests.conftest import CONF_DIR, FAST

# Task 3 of a job with 2 nodes x 2 tasks: the second task on the second node.
MULTINODE_JOB = {
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_JOB_NAME": "regbench",
    "SLURM_JOB_ID": "1234567",
    "SLURM_NODELIST": "gpu[3-4]",
}
# Task 1 of a one-node job with 2 tasks.
ONE_NODE_JOB = {
    **MULTINODE_JOB,
    "SLURM_NTASKS": "2",
    "SLURM_NNODES": "1",
    "SLURM_NODEID": "0",
    "SLURM_PROCID": "1",
    "SLURM_NODELIST": "gpu3",
}


def fake_slurm_job(monkeypatch: pytest.MonkeyPatch, job: dict[str, str]) -> None:
    """This process becomes one task of ``job``; everything is put back after the test."""
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)  # a real allocation around the test suite must not leak in
    for key, value in job.items():
        monkeypatch.setenv(key, value)
    # Lightning writes MASTER_ADDR / MASTER_PORT into os.environ when asked for them; start
    # without them (setenv first so that monkeypatch remembers the original state).
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    # DDP sets the process-wide rank_zero_only.rank to the global rank; other tests need 0.
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    monkeypatch.setattr(utilities_rank_zero.rank_zero_only, "rank", rank_zero_only.rank)


def no_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)


def train_cfg(tmp_path: Path, *overrides: str, hydra: bool = False) -> DictConfig:
    """``conf/train.yaml`` as the CLI composes it (``hydra``: with the ``hydra`` node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*FAST, *overrides], return_hydra_config=hydra)
    with open_dict(cfg):
        cfg.paths.run_dir = str(tmp_path / "run")
    return cfg


def trainer_from(cfg: DictConfig, plugins: list | None = None) -> L.Trainer:
    """The configured Trainer, with ``plugins`` as ``bench.build`` passes them (None: none)."""
    extra = {} if plugins is None else {"plugins": plugins}
    return instantiate(cfg.trainer, logger=False, enable_progress_bar=False, **extra)


# ---------------------------------------------------------------- cluster_plugins


def test_no_cluster_plugin_outside_slurm_or_in_an_interactive_job(monkeypatch):
    no_slurm(monkeypatch)
    assert cluster_plugins() == []
    # Lightning's own rule: an interactive allocation (srun --job-name=interactive) is no job
    fake_slurm_job(monkeypatch, {**MULTINODE_JOB, "SLURM_JOB_NAME": "interactive"})
    assert cluster_plugins() == []


@pytest.mark.parametrize(
    ("preset", "job", "world_size", "global_rank", "node_rank", "local_rank"),
    [("multinode", MULTINODE_JOB, 4, 3, 1, 1), ("gpus", ONE_NODE_JOB, 2, 1, 0, 1)],
)
def test_trainer_takes_its_ranks_from_the_slurm_job(
    tmp_path, monkeypatch, preset, job, world_size, global_rank, node_rank, local_rank
):
    fake_slurm_job(monkeypatch, job)
    cfg = train_cfg(tmp_path, f"trainer={preset}")  # FAST: accelerator=cpu, 2 processes a node
    plugins = cluster_plugins()
    trainer = trainer_from(cfg, plugins)

    env = trainer.strategy.cluster_environment
    assert plugins == [env] and isinstance(env, SLURMEnvironment)
    assert env.auto_requeue is False
    assert (trainer.num_nodes, trainer.num_devices) == (int(job["SLURM_NNODES"]), 2)
    assert trainer.world_size == world_size == int(job["SLURM_NTASKS"])
    assert trainer.global_rank == global_rank == int(job["SLURM_PROCID"])
    assert trainer.node_rank == node_rank == int(job["SLURM_NODEID"])
    assert trainer.local_rank == local_rank == int(job["SLURM_LOCALID"])
    assert trainer.is_global_zero is False
    # Slurm started the processes (srun): the Trainer must not start more of its own.
    assert env.creates_processes_externally
    # Every rank meets at the job's first node, on a port derived from the job id.
    assert env.main_address == "gpu3"
    assert env.main_port == 15000 + int(job["SLURM_JOB_ID"][-4:])


def test_a_preset_that_disagrees_with_the_job_is_refused_by_lightning(tmp_path, monkeypatch):
    # devices must equal --ntasks-per-node (4 processes for 2 tasks would hang); Lightning checks
    # when fit launches, before any process group: here its launcher runs a no-op instead.
    fake_slurm_job(monkeypatch, MULTINODE_JOB)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # else the launcher resets torch's thread count
    matching = trainer_from(train_cfg(tmp_path, "trainer=multinode"), cluster_plugins())
    assert matching.strategy.launcher.launch(lambda: "started") == "started"
    cfg = train_cfg(tmp_path, "trainer=multinode", "trainer.devices=4")
    too_many = trainer_from(cfg, cluster_plugins())
    with pytest.raises(ValueError, match="ntasks-per-node=2"):
        too_many.strategy.launcher.launch(lambda: "started")


# ---------------------------------------------------------------- who handles the signals


@pytest.fixture
def default_handlers():
    """SIGUSR1 and SIGTERM at their defaults during the test (Lightning adds a SIGUSR1 handler
    only where none is set), restored afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, signal.SIG_DFL)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def sigusr1_while_fitting(trainer: L.Trainer):
    """SIGUSR1's handler as ``trainer.fit`` would leave it while training."""
    connector = trainer._signal_connector
    connector.register_signal_handlers()
    try:
        return signal.getsignal(signal.SIGUSR1)
    finally:
        connector.teardown()


def test_lightning_installs_no_requeue_handler_with_our_plugin(
    tmp_path, monkeypatch, default_handlers
):
    fake_slurm_job(monkeypatch, MULTINODE_JOB)
    cfg = train_cfg(tmp_path, "trainer=multinode")

    ours = trainer_from(cfg, cluster_plugins())
    assert sigusr1_while_fitting(ours) is signal.SIG_DFL  # left to the run and submitit

    # Without the plugin Lightning detects the job itself, with auto_requeue on, and would
    # answer SIGUSR1 by saving an hpc checkpoint and running `scontrol requeue`.
    lightning_default = trainer_from(cfg)
    assert lightning_default.strategy.cluster_environment.auto_requeue is True
    handler = sigusr1_while_fitting(lightning_default)
    assert isinstance(handler, _HandlersCompose)
    assert lightning_default._signal_connector._slurm_sigusr_handler_fn in handler.signal_handlers
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # teardown put it back


def test_a_handler_installed_before_fit_still_gets_sigterm(tmp_path, monkeypatch, default_handlers):
    # The run's own handler (bench/resume/signals.py) is installed before fit; Lightning chains
    # it behind its SIGTERM notifier, which also sets trainer.received_sigterm.
    fake_slurm_job(monkeypatch, MULTINODE_JOB)
    trainer = trainer_from(train_cfg(tmp_path, "trainer=multinode"), cluster_plugins())
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))

    connector = trainer._signal_connector
    connector.register_signal_handlers()
    try:
        handler = signal.getsignal(signal.SIGTERM)
        # auto_requeue would add Lightning's "bypass" handler; ours adds nothing
        assert connector._sigterm_handler_fn not in handler.signal_handlers
        signal.raise_signal(signal.SIGTERM)
    finally:
        connector.teardown()
    assert received == [signal.SIGTERM]
    assert trainer.received_sigterm


# ---------------------------------------------------------------- presets


def test_gpu_presets_compose(tmp_path):
    gpus = train_cfg(tmp_path, "trainer=gpus", "trainer.accelerator=gpu").trainer
    assert (gpus.accelerator, gpus.strategy, gpus.devices, gpus.num_nodes) == ("gpu", "ddp", 2, 1)
    multinode = train_cfg(tmp_path, "trainer=multinode", "trainer.accelerator=gpu").trainer
    assert (multinode.strategy, multinode.devices, multinode.num_nodes) == ("ddp", 2, 2)
    assert multinode.max_epochs == 3  # everything else still comes from trainer/default.yaml


@pytest.mark.parametrize(
    ("overrides", "nodes", "per_node"),
    [
        (["trainer=gpus", "trainer.devices=4"], 1, 4),
        (["trainer=multinode", "trainer.num_nodes=3", "trainer.devices=8"], 3, 8),
        (["trainer=multinode", "hydra.launcher.nodes=5"], 5, 2),  # any key still overrides
        ([], 1, 1),  # trainer=default: one device, no num_nodes key
    ],
)
def test_slurm_gpus_asks_for_one_task_per_device(tmp_path, overrides, nodes, per_node):
    cfg = train_cfg(tmp_path, "hydra/launcher=slurm_gpus", *overrides, hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher.nodes == nodes
    assert launcher.tasks_per_node == launcher.gpus_per_node == per_node
    assert launcher.max_num_timeout == 3  # from slurm.yaml


def test_slurm_gpus_refuses_a_device_count_slurm_cannot_allocate(tmp_path):
    cfg = train_cfg(tmp_path, "hydra/launcher=slurm_gpus", "trainer=ddp", hydra=True)
    with pytest.raises(InterpolationValidationError, match="hydra.launcher.gpus_per_node"):
        _ = cfg.hydra.launcher.gpus_per_node  # devices: auto is no number of GPUs


def do_nothing(cfg: DictConfig) -> None:
    """The task function handed to the launcher (never run: the submission fails)."""


def fake_executable(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_slurm_gpus_submits_the_job_shape_lightning_expects(tmp_path, monkeypatch):
    # Hydra's own path: the launcher plugin instantiated from the composed config, then
    # submitit writes the sbatch script; a fake sbatch keeps a copy and refuses the job.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "submitted.sh"
    fake_executable(bin_dir, "srun", "exit 0")  # submitit checks that Slurm is there
    fake_executable(bin_dir, "sbatch", f'cp "$1" {script}\necho "fake sbatch" >&2\nexit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = train_cfg(
        tmp_path,
        "hydra/launcher=slurm_gpus",
        "trainer=multinode",
        "trainer.devices=4",
        "hydra.launcher.partition=gpu",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        hydra=True,
    )
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(config_loader=None, callbacks=None),
        task_function=do_nothing,
        config=cfg,
    )
    with pytest.raises(FailedJobError, match="fake sbatch"):
        launcher.launch([["seed=0"]], initial_job_idx=0)

    flags = dict(
        line.removeprefix("#SBATCH --").split("=", 1)
        for line in script.read_text().splitlines()
        if line.startswith("#SBATCH --") and "=" in line
    )
    assert flags["nodes"] == "2"
    assert flags["ntasks-per-node"] == flags["gpus-per-node"] == "4"
    assert flags["cpus-per-task"] == "4"
    assert flags["mem-per-cpu"] == "4G" and "mem" not in flags
    assert flags["partition"] == "gpu"
    assert flags["time"] == "120"
    assert flags["signal"] == "USR2@120"  # submitit's requeue signal, not Lightning's SIGUSR1
    assert "srun" in script.read_text()  # one process per task, started by Slurm
