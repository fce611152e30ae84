"""Keep an Optuna study in its sweep directory and continue it (``hydra/sweeper=optuna_strength``).

hydra-optuna-sweeper (1.3) opens its ``storage`` before any job runs, that is before a launcher
has made the sweep directory, and SQLite cannot create a file in a missing directory. This
callback, run by Hydra when the multirun starts, makes the directory; for a study that already
holds n trials it moves the sampler's seed on by n, since the same seed would draw the first
invocation's points again (TPE starts with seeded random trials). The sweeper numbers the jobs
of every invocation from 0, but job directories are named by configuration
(``bench.resume.identity``), so a continued study's trials never land on earlier ones.
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
    """Make the sweep directory for the study's storage; move a continued study's seed on."""

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
            # Hydra builds the sweeper from this very config, after this callback.
            if sweeper.sampler.get("seed") is not None:
                sweeper.sampler.seed = int(sweeper.sampler.seed) + done
