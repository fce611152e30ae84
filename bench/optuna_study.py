"""Keep an Optuna study in its sweep directory and continue it (``hydra/sweeper=optuna_strength``).

hydra-optuna-sweeper (1.3) opens its ``storage`` before any job runs, that is before a launcher
has made the sweep directory, and SQLite cannot create a file in a missing directory; and it
numbers the jobs of every invocation from 0, so continuing a stored study would write its 4th
trial into job directory ``0``, over the first trial's record. This callback, run by Hydra when
the multirun starts, makes the directory and, for a study that already holds n trials, names
the new job directories ``n+0``, ``n+1``, ... (trial n, n+1, ...) through a Hydra override, the
way ``bench.secrets`` rewrites overrides, since the sweeper itself is a plugin Hydra will only
load from the ``hydra_plugins`` package. It also moves the sampler's seed on by n: the same
seed would draw the first invocation's points again (TPE starts with seeded random trials).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger("bench")


def stored_trials(storage: str, study_name: str) -> int:
    """How many trials ``study_name`` already holds in ``storage`` (0 for a new study)."""
    import optuna  # here: only an Optuna sweep pays for the import

    summaries = optuna.get_all_study_summaries(storage=storage)
    return next((s.n_trials for s in summaries if s.study_name == study_name), 0)


class StudyDirCallback(Callback):
    """Make the sweep directory for the study's storage; number a continued study's jobs on."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        sweeper = config.hydra.sweeper
        if sweeper.get("storage") is None:
            return
        done = stored_trials(str(sweeper.storage), str(sweeper.study_name))
        if done == 0:
            return
        log.info("study %s holds %d trials; continuing it", sweeper.study_name, done)
        with read_write(config), open_dict(config):
            # Every job's config is composed again from these overrides (load_sweep_config)...
            config.hydra.overrides.hydra.append(f"hydra.sweep.subdir='{done}+${{hydra.job.num}}'")
            # ...while Hydra builds the sweeper from this very config, after this callback.
            if sweeper.sampler.get("seed") is not None:
                sweeper.sampler.seed = int(sweeper.sampler.seed) + done
