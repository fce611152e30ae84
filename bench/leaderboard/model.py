"""The leaderboard's data: what was loaded, what was left out, and the two boards.

Everything the renderers (terminal, Markdown/CSV/JSON, ``report.html``, wandb) draw comes from
these classes, so they are plain frozen dataclasses with documented fields:

- :class:`Run` — one loaded ``results.json`` (completed or diverged); :class:`Problem` — a file
  left out, with its reason.
- :class:`Section` — runs that are comparable: same dataset, model and every setting outside
  the regularizers (a sweep over ``optimizer.lr`` gives one section per learning rate).
- :class:`Method` — a regularizer set (``none`` for ``[]``); :class:`Entry` — one method at one
  hyperparameter point in one section, over its seeds; ``Entry.selected`` marks the point
  chosen on validation data.
- :class:`Stat` — mean, sd, 95 % Student-t interval and n of one metric over seeds.
- :class:`Row`, :class:`BoardSection`, :class:`Board` — a ranked leaderboard;
  :class:`Leaderboard` — both boards plus every entry (for curves) and every problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.leaderboard.columns import lookup
from bench.leaderboard.published import PublishedTable
from bench.leaderboard.stats import Stat, summarize

__all__ = [
    "Board",
    "BoardSection",
    "Entry",
    "Leaderboard",
    "Method",
    "Options",
    "Problem",
    "Row",
    "Run",
    "Section",
    "Stat",
]

# Prediction types in display order, and the metric prefix each writes (``mc/test/nll``).
PREDICTIONS = {"deterministic": "", "mc": "mc/", "ts": "ts/", "ens": "ens/"}
ENS_OF_SEEDS = "ens-of-seeds"


@dataclass(frozen=True)
class Problem:
    """A ``results.json`` left out of the leaderboard.

    ``kind`` is one of ``unreadable``, ``malformed``, ``foreign`` (not a regbench record),
    ``failed`` (``status: failed``), ``interrupted`` (stopped by a signal, resumable) or
    ``duplicate`` (same configuration and seed as another).
    """

    path: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Run:
    """One completed or diverged record, reduced to what aggregation needs."""

    path: str  # the results.json
    run_dir: str  # its directory (predictions.npz, reliability.png live there)
    status: str  # completed | diverged
    seed: int
    dataset: str
    model: str
    config_key: str  # canonical JSON of the configuration (no seed, logger or run paths)
    section_key: str  # canonical JSON of the configuration minus the regularizers
    regularizers: tuple[str, ...]  # sorted names; () for none
    hparams: dict[str, float]  # numeric regularizer options, "l2.strength" -> 1e-4
    options: dict[str, str]  # other regularizer options as JSON text, "dropout.mc" -> "true"
    metrics: dict[str, float | None]
    fields: dict[str, Any]  # top-level extras: best_epoch, sparsity, epochs, diverged_at, ...
    published: dict[str, Any] | None = None  # config.published: the table it reproduces

    def value(self, key: str) -> float | None:
        """A metric (``mc/test/nll``), a derived one (``ood/auroc``) or a top-level number."""
        return lookup(self.metrics, self.fields, key)


@dataclass(frozen=True)
class Section:
    """A set of comparable runs; ``settings`` tells it apart from the other sections of the
    same dataset and model (only the flattened config keys that differ, e.g. optimizer.lr)."""

    key: str
    dataset: str
    model: str
    task: str  # classification | regression
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k}={_text(v)}" for k, v in self.settings.items())
        return f"{self.dataset} / {self.model}" + (f" ({extra})" if extra else "")


def _text(value: Any) -> str:
    """Config values as written in a config: strings bare, the rest as JSON (null, [1, 2])."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Method:
    """A regularizer set plus the non-numeric options that tell its variants apart
    (``dropout[mc=false]``); ``swept`` names the hyperparameters that vary in the input."""

    regularizers: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    swept: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "+".join(self.regularizers) or "none"

    @property
    def label(self) -> str:
        if not self.options:
            return self.name
        return f"{self.name}[{','.join(f'{self.short(k)}={v}' for k, v in self.options)}]"

    def short(self, key: str) -> str:
        """``strength`` for ``l2.strength`` when the method has one regularizer."""
        return key.split(".", 1)[1] if len(self.regularizers) == 1 and "." in key else key


@dataclass
class Entry:
    """One configuration — a method at one hyperparameter point in one section — over seeds.

    ``runs`` are its completed runs, one per seed, sorted by seed; ``diverged`` its diverged
    ones (never averaged in, and a configuration with any is never selected).
    """

    section: Section
    method: Method
    hparams: dict[str, float]
    runs: tuple[Run, ...]
    diverged: tuple[Run, ...] = ()
    selected: bool = False
    _values: dict[str, dict[int, float]] = field(default_factory=dict, repr=False, compare=False)
    _stats: dict[str, Stat] = field(default_factory=dict, repr=False, compare=False)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in self.runs)

    def values(self, key: str) -> dict[int, float]:
        """seed -> value of ``key`` for the runs that have it (cached: every row of a section
        is compared with the same baseline entry)."""
        if key not in self._values:
            found = ((run.seed, run.value(key)) for run in self.runs)
            self._values[key] = {seed: v for seed, v in found if v is not None}
        return self._values[key]

    def stat(self, key: str) -> Stat:
        """Mean, sd and 95 % CI of ``key`` over seeds."""
        if key not in self._stats:
            self._stats[key] = summarize(list(self.values(key).values()))
        return self._stats[key]

    def shown_hparams(self) -> dict[str, float]:
        """The hyperparameters worth printing: those the input sweeps, short names."""
        return {self.method.short(k): self.hparams[k] for k in self.method.swept}


@dataclass(frozen=True)
class Row:
    """One line of a board: an entry seen through one prediction type.

    ``cells`` maps each computed column (metric key without the prediction prefix) to its
    statistics; ``delta`` maps the same keys to the paired per-seed difference row − baseline
    (empty for the baseline itself and for ``ens-of-seeds``). ``standing`` is ``best``,
    ``tied`` (its CI overlaps the leader's), ``behind``, ``undecided`` (n < 2 on either side:
    no interval, so no winner) or ``""`` for rows outside the ranking (unselected points,
    ``ens-of-seeds``). ``flags`` holds ``underfits`` when test accuracy is significantly below
    the baseline's (regression: test RMSE significantly above).
    """

    entry: Entry
    prediction: str  # deterministic | mc | ts | ens | ens-of-seeds
    seeds: tuple[int, ...]
    cells: dict[str, Stat]
    delta: dict[str, Stat]
    rank: int  # 1-based position in its section
    standing: str
    flags: tuple[str, ...] = ()

    @property
    def method(self) -> Method:
        return self.entry.method

    @property
    def ranked(self) -> bool:
        return self.entry.selected and self.prediction != ENS_OF_SEEDS


@dataclass(frozen=True)
class BoardSection:
    """One section's ranking; columns depend on its task (classification or regression)."""

    section: Section
    columns: tuple[str, ...]  # displayed columns, in order
    rows: tuple[Row, ...]  # in rank order
    baseline: Entry | None  # the selected entry of the baseline method, if present


@dataclass(frozen=True)
class Board:
    """A ranked leaderboard: ``gap`` (generalization gap) or ``calibration``."""

    name: str
    title: str
    sort: str  # the ranking key, e.g. gap/loss
    direction: str  # min | max
    sections: tuple[BoardSection, ...]


@dataclass(frozen=True)
class Options:
    """What the user chose (``bench-leaderboard`` flags); ``sort``/``columns`` per board name."""

    select: str = "val/loss"
    baseline: str = "none"
    sort: dict[str, str] = field(default_factory=dict)  # board -> key[:min|:max]
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    all: bool = False  # also rows for unselected hyperparameter points
    ensembles: bool = True  # ens-of-seeds rows from predictions.npz


@dataclass(frozen=True)
class Leaderboard:
    """Both boards and everything behind them."""

    options: Options
    gap: Board
    calibration: Board
    entries: tuple[Entry, ...]  # every configuration, sorted by section, method, hparams
    problems: tuple[Problem, ...]  # files left out, sorted by path
    diverged: tuple[Run, ...]  # diverged runs, sorted by path
    files: int  # results.json files found
    published: tuple[PublishedTable, ...] = ()  # reproductions: ours next to the paper's

    @property
    def boards(self) -> tuple[Board, Board]:
        return (self.gap, self.calibration)
