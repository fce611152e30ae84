"""The refit sweeper's structured config, registered with Hydra's ConfigStore at plugin scan.

Any Hydra app selects it with ``hydra/sweeper=refit``.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class RefitSweeperConf:
    _target_: str = "hydra_plugins.regbench_refit.refit_sweeper.RefitSweeper"
    # As Hydra's basic sweeper: the swept keys, and jobs per launcher call (null: all at once).
    params: dict[str, str] | None = None
    max_batch_size: int | None = None
    # Swept keys chosen on validation: one choice per combination of the other swept keys.
    search: list[str] = field(default_factory=list)
    # The metric deciding the choice, a key of ``metrics`` in each job's results.json.
    select: str = "val/loss"
    mode: str = "min"  # min | max
    # Overrides of the refit jobs: the chosen point retrained, e.g. on train + validation.
    refit: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="refit", node=RefitSweeperConf, provider="regbench_refit"
)
