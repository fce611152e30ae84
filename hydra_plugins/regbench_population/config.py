"""The launcher's structured config, registered with Hydra's ConfigStore at plugin scan.

Any Hydra app selects it with ``hydra/launcher=population_launcher``; regbench's own
``conf/hydra/launcher/population.yaml`` extends it. (Named apart from that yaml: Hydra would merge
a same-named file into this node, with a deprecation warning.)
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.regbench_population.population_launcher.PopulationLauncher"
    # Module with group_key / member_memory_mb / train_group; None: every job runs on its own.
    batcher: str | None = None
    # A group whose members x member_memory_mb exceed this is split into chunks (MB).
    memory_mb: float = 4096
    # True: print which jobs would train together, and run nothing.
    dry_run: bool = False


ConfigStore.instance().store(
    group="hydra/launcher",
    name="population_launcher",
    node=PopulationLauncherConf,
    provider="regbench_population",
)
