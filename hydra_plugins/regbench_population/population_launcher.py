"""A Hydra launcher that trains the compatible jobs of a sweep together, as one batched program.

Hydra's launchers run a sweep's jobs one by one (or one process each). Many jobs of a benchmark
differ only in a seed or a regularizer strength, and a GPU trains such a *population* in one
vectorised program nearly as fast as one of them. Which jobs fit together, and how to train them,
is an app's business: a **batcher** module (``hydra.launcher.batcher``) defines

* ``group_key(cfg) -> (key, description)``: jobs with equal non-None keys train together;
  ``None``: the job runs on its own, and the description says why;
* ``member_memory_mb(cfg) -> float``: memory one member needs (chunks stay under ``memory_mb``);
* ``train_group(configs) -> [task function per job]``: train the population (HydraConfig of
  the first job is set); each returned function then runs as job k's task function.

Everything else is Hydra's own machinery, as in its BasicLauncher: every job's config is composed
by the config loader, and every job (batched or not) goes through ``hydra.core.utils.run_job``,
which creates its directory, saves ``.hydra/``, runs the job callbacks and builds the JobReturn.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve string annotations.
import copy
import importlib
import logging
import math
import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.errors import CompactHydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.regbench_population.compose import SweepComposer

log = logging.getLogger(__name__)
BATCHER_FUNCTIONS = ("group_key", "member_memory_mb", "train_group")


class LauncherValueError(CompactHydraException, ValueError):
    """A bad ``hydra.launcher.*`` value: Hydra prints a CompactHydraException as its message
    alone (other errors raised before any job runs come with the whole traceback)."""


class BatcherImportError(CompactHydraException, ImportError):
    """``hydra.launcher.batcher`` names no usable module (printed as one line, as above)."""


@dataclass
class Job:
    num: int  # hydra.job.num
    overrides: list[str]
    cfg: DictConfig  # composed, hydra node included, hydra.runtime.output_dir set


@dataclass
class Unit:
    """What runs at once: a population trained by the batcher, or one job run as Hydra would."""

    jobs: list[Job]
    batched: bool
    why: str  # the batcher's description of the group, or why the job runs on its own
    detail: str = ""  # a population's size in memory and chunk


class PopulationLauncher(BasicLauncher):
    """BasicLauncher plus batching; ``setup`` (inherited) keeps the context and task function."""

    def __init__(
        self, batcher: str | None = None, memory_mb: float = 4096, dry_run: bool = False
    ) -> None:
        super().__init__()
        self.batcher_name, self.memory_mb, self.dry_run = batcher, memory_mb, dry_run
        self.batcher: ModuleType | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        # Checked here rather than in __init__, whose errors Hydra's instantiate wraps in three
        # lines of context; here a bad value is one line, before any job runs.
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if isinstance(self.memory_mb, bool) or not (
            isinstance(self.memory_mb, int | float) and 0 < self.memory_mb < math.inf
        ):
            raise LauncherValueError(
                f"hydra.launcher.memory_mb={self.memory_mb!r}: expected a positive number of MB"
            )
        self.batcher = load_batcher(self.batcher_name)
        self.composer = SweepComposer(hydra_context.config_loader, config)  # type: ignore[arg-type]

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """One JobReturn per job, in the order of ``job_overrides`` (sweepers pair them by
        position); a dry run returns none, having run nothing."""
        if self.batcher is None and not self.dry_run:
            return super().launch(job_overrides, initial_job_idx)  # exactly Hydra's own launcher
        assert self.config is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        jobs = [self._compose(o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
        units = self._plan(jobs)
        populations = sum(unit.batched for unit in units)
        counts = f"{plural(populations, 'population')}, {len(units) - populations} one at a time"
        if self.dry_run:
            # The plan goes to stdout as plain text (readable, pipeable, there when logging is
            # off); the log gets its summary only, as Hydra's console log is stdout too.
            log.info(f"Dry run of {len(jobs)} jobs (hydra.launcher.dry_run=true): {counts}")
            print("\n".join(line for unit in units for line in describe(unit)), flush=True)
            log.info("Dry run: nothing was run")
            return []
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(jobs)} jobs locally: {counts}")
        returns: dict[int, JobReturn] = {}
        for unit in units:
            for line in describe(unit):
                log.info(line)
            if unit.batched:
                results = self._run_population(unit)
            else:
                results = [self._run(unit.jobs[0].cfg, self.task_function)]
            returns.update((job.num, ret) for job, ret in zip(unit.jobs, results, strict=True))
        return [returns[job.num] for job in jobs]

    def _compose(self, overrides: Sequence[str], num: int) -> Job:
        """The job's config as BasicLauncher composes it, with the output directory run_job will
        give it already set, so that ``${hydra:runtime.output_dir}`` resolves for the batcher."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.composer.compose(overrides)  # = load_sweep_config, once per group structure
        with open_dict(cfg):
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
        with current_job(cfg):  # the sweep dir/subdir may interpolate hydra.job.* and ${hydra:}
            output_dir = str(OmegaConf.select(cfg, "hydra.sweep.dir"))
            subdir = str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(os.path.join(output_dir, subdir))
        return Job(num, list(overrides), cfg)

    def _plan(self, jobs: list[Job]) -> list[Unit]:
        """Populations (chunked by memory) and lone jobs, in the order of their first job."""
        if self.batcher is None:
            return [Unit([job], False, "hydra.launcher.batcher is null") for job in jobs]
        units: list[Unit] = []
        groups: dict[Hashable, list[Job]] = {}
        descriptions: dict[Hashable, str] = {}
        for job in jobs:
            with current_job(job.cfg):
                key, why = self.batcher.group_key(job.cfg)
            if key is None:
                units.append(Unit([job], False, why))
            else:
                groups.setdefault(key, []).append(job)
                descriptions.setdefault(key, why)
        for key, members in groups.items():
            if len(members) == 1:
                why = f"{descriptions[key]}; no other job of the sweep shares its group"
                units.append(Unit(members, False, why))
            else:
                units += self._chunks(members, descriptions[key])
        return sorted(units, key=lambda unit: unit.jobs[0].num)

    def _chunks(self, members: list[Job], why: str) -> list[Unit]:
        """Consecutive chunks of ``memory_mb // member_memory_mb`` members (at least one each).
        A chunk of one still trains through the batcher, like the rest of its group."""
        assert self.batcher is not None
        sizes = []
        for job in members:
            with current_job(job.cfg):
                mb = float(self.batcher.member_memory_mb(job.cfg))
            if not 0 <= mb < math.inf:
                raise ValueError(
                    f"{self.batcher_name}.member_memory_mb returned {mb} for job #{job.num}; "
                    "expected a number of MB >= 0"
                )
            sizes.append(mb)
        member_mb = max(sizes)
        per_chunk = max(1, int(self.memory_mb // member_mb)) if member_mb > 0 else len(members)
        chunks = [members[i : i + per_chunk] for i in range(0, len(members), per_chunk)]
        units = []
        for i, chunk in enumerate(chunks):
            place = f"chunk {i + 1}/{len(chunks)} of {len(members)}, " if len(chunks) > 1 else ""
            detail = f"{place}{len(chunk)} x {member_mb:g} MB, memory_mb {self.memory_mb:g}"
            units.append(Unit(chunk, True, why, detail))
        return units

    def _run_population(self, unit: Unit) -> list[JobReturn]:
        """Train the chunk as one program, then run each job's returned task function through
        run_job. If training raises, every job of the chunk is a failed JobReturn holding the
        exception (as a failing task function would be) and the rest of the sweep goes on."""
        assert self.batcher is not None
        configs = [copy.deepcopy(job.cfg) for job in unit.jobs]  # .hydra/ keeps what was composed
        try:
            with current_job(configs[0]):
                tasks = list(self.batcher.train_group(configs))
            if len(tasks) != len(configs):
                raise ValueError(
                    f"{self.batcher_name}.train_group returned {len(tasks)} task functions "
                    f"for {len(configs)} jobs"
                )
        except Exception as exc:
            log.error(
                "population %s failed; its jobs are recorded as failed: %s: %s",
                job_numbers(unit.jobs),
                type(exc).__name__,
                exc,
            )
            tasks = [reraise(exc)] * len(configs)
        return [self._run(job.cfg, task) for job, task in zip(unit.jobs, tasks, strict=True)]

    def _run(self, cfg: DictConfig, task_function: TaskFunction) -> JobReturn:
        """The body of BasicLauncher.launch's loop, for a config composed already (calling
        BasicLauncher.launch per job would compose it again and log "Launching 1 jobs")."""
        assert self.hydra_context is not None and self.config is not None
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=task_function,
            config=cfg,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret


def load_batcher(name: str | None) -> ModuleType | None:
    """The batcher module, or None; one line naming ``hydra.launcher.batcher`` if unusable."""
    if name is None:
        return None
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise BatcherImportError(
            f"hydra.launcher.batcher={name}: cannot import it ({exc}); give a module defining "
            f"{', '.join(BATCHER_FUNCTIONS)}, or null to run the jobs one at a time"
        ) from exc
    missing = [f for f in BATCHER_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise BatcherImportError(
            f"hydra.launcher.batcher={name}: the module lacks {', '.join(missing)}; a batcher "
            f"defines {', '.join(BATCHER_FUNCTIONS)}"
        )
    return module


@contextmanager
def current_job(cfg: DictConfig) -> Iterator[None]:
    """HydraConfig set to ``cfg``'s hydra node (as run_job sets it), restored afterwards."""
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = saved


def reraise(exc: Exception) -> Callable[[DictConfig], Any]:
    def task(_cfg: DictConfig) -> Any:
        raise exc

    return task


def describe(unit: Unit) -> list[str]:
    """The plan's lines for one unit: a header, then BasicLauncher's line for each job."""
    if unit.batched:
        jobs = f"job{'s' if len(unit.jobs) > 1 else ''} {job_numbers(unit.jobs)}"
        head = f"population of {len(unit.jobs)}: {jobs} ({unit.detail})"
    else:
        head = f"one at a time: job #{unit.jobs[0].num}"
    lines = [f"{head}: {unit.why}"]
    lines += [f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}" for job in unit.jobs]
    return lines


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def job_numbers(jobs: Sequence[Job]) -> str:
    """``#0-#3, #6``: runs of consecutive job numbers."""
    runs: list[list[int]] = []
    for num in (job.num for job in jobs):
        if runs and num == runs[-1][-1] + 1:
            runs[-1].append(num)
        else:
            runs.append([num])
    return ", ".join(f"#{r[0]}" if len(r) == 1 else f"#{r[0]}-#{r[-1]}" for r in runs)
