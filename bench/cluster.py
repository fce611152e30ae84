"""The Trainer's cluster environment: Slurm's ranks through Lightning, Slurm's signals to submitit.

Inside a Slurm job Lightning reads the job's layout from Slurm (``SLURMEnvironment``: world size
from ``SLURM_NTASKS``, global rank ``SLURM_PROCID``, local rank ``SLURM_LOCALID``, node rank
``SLURM_NODEID``, the main address from ``SLURM_NODELIST``), so one Slurm task per device is one
DDP process and nothing here reimplements that. But the environment Lightning picks by itself
has ``auto_requeue=True``: it then installs its own SIGUSR1 handler that saves an ``hpc_ckpt``
and runs ``scontrol requeue``. Requeueing has one owner in regbench, submitit — it knows the
job's ``max_num_timeout`` and re-pickles the job, and regbench's run code saves its resumable
checkpoint before handing the signal on to it. Two owners would requeue a job twice, or requeue
one submitit had given up on; so the Trainer gets the same environment with requeueing off.
"""

from __future__ import annotations

from lightning.pytorch.plugins.environments import SLURMEnvironment


def cluster_plugins() -> list[SLURMEnvironment]:
    """``[SLURMEnvironment(auto_requeue=False)]`` inside a Slurm job, else ``[]``.

    Pass it as the Trainer's ``plugins``. "Inside a Slurm job" is Lightning's own test
    (``SLURMEnvironment.detect()``: ``SLURM_NTASKS`` is set and the job is not an interactive
    ``bash``/``interactive`` one), so the Trainer sees exactly the environment it would have
    chosen itself, minus the requeue handler. Outside Slurm Lightning chooses as usual.
    """
    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=False)]
