"""Which samples go to train / val / test, and bootstrap resamples of the training split.

Everything here depends on sizes, labels and seeds only, never on a datamodule, so the split of
a dataset can be computed (or its sizes known) without reading any data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data.checks import is_int, is_real, require


@dataclass(frozen=True)
class Splitter:
    """The split rules of one dataset.

    Cuts, in this order: test (only when there is no official test set), validation from what is
    left, then an optional ``train_size`` subsample of the training part, so the test and
    validation sets do not change with ``train_size``. Every cut is fixed by ``split_seed`` alone
    and stratified by class for classification (``num_classes`` set).
    """

    pool_size: int
    official_test_size: int | None
    val_fraction: float
    test_fraction: float
    train_size: int | None
    split_seed: int
    num_classes: int | None  # None: regression, no stratification

    def check(self, name: str) -> None:
        """Reject bad ``dataset.*`` split values with one line each, before any loading."""
        require(
            is_int(self.split_seed) and 0 <= self.split_seed < 2**32,
            "split_seed", "an integer in [0, 2**32)", self.split_seed,
        )  # fmt: skip
        require(
            is_real(self.val_fraction) and 0 <= self.val_fraction < 1,
            "val_fraction", "a number in [0, 1)", self.val_fraction,
        )  # fmt: skip
        if self.official_test_size is None:
            require(
                is_real(self.test_fraction) and 0 < self.test_fraction < 1,
                "test_fraction", f"a number in (0, 1) ({name} has no official test set)",
                self.test_fraction,
            )  # fmt: skip
        else:  # unused: the official test set is used as is
            require(
                is_real(self.test_fraction) and 0 <= self.test_fraction < 1,
                "test_fraction", "a number in [0, 1)", self.test_fraction,
            )  # fmt: skip

        # Stratified splitting needs at least one sample per class on both sides of every cut.
        least = self.num_classes or 1
        n_test, n_val, n_train = self.carve_sizes()
        if self.official_test_size is None:
            require(
                n_test >= least and self.pool_size - n_test >= least,
                "test_fraction",
                f"such that test and the rest of the {self.pool_size} {name} samples "
                f"each hold at least {least} samples",
                self.test_fraction,
            )  # fmt: skip
        if self.val_fraction > 0:
            require(
                n_val >= least and n_train >= least,
                "val_fraction",
                f"0 or such that validation and training each hold at least {least} samples "
                f"(it would give {n_val} validation and {n_train} training samples)",
                self.val_fraction,
            )  # fmt: skip
        require(
            self.train_size is None
            or (is_int(self.train_size) and least <= self.train_size <= n_train),
            "train_size",
            f"null or an integer in [{least}, {n_train}] ({n_train} = the {name} training "
            "samples left after the test and validation carve)",
            self.train_size,
        )  # fmt: skip

    def carve_sizes(self) -> tuple[int, int, int]:
        """Sizes (test, val, train before ``train_size``) with the rounding sklearn applies.

        ``train_test_split`` gives the held-out part ``ceil(fraction * n)`` samples; using the same
        formula here makes the sizes exact without reading the data.
        """
        if self.official_test_size is None:
            n_test = math.ceil(self.test_fraction * self.pool_size)
            n_rest = self.pool_size - n_test
        else:
            n_test, n_rest = self.official_test_size, self.pool_size
        n_val = math.ceil(self.val_fraction * n_rest) if self.val_fraction > 0 else 0
        return n_test, n_val, n_rest - n_val

    def sizes(self) -> dict[str, int]:
        """Samples per split after the ``train_size`` subsample."""
        n_test, n_val, n_train = self.carve_sizes()
        if self.train_size is not None:
            n_train = self.train_size
        return {"train": n_train, "val": n_val, "test": n_test}

    def split(self, y: np.ndarray) -> dict[str, np.ndarray | None]:
        """Sorted indices into the pool (labels ``y``) for train / val / test.

        ``test`` is None when the dataset has an official test set.
        """
        # Here, not at module level: sklearn costs ~0.1 s to import, which `--help` and a config
        # error (this module is imported by every datamodule) should not pay.
        from sklearn.model_selection import train_test_split

        classification = self.num_classes is not None

        def cut(idx: np.ndarray, stratify: bool = classification, **size: Any) -> list[np.ndarray]:
            labels = y[idx] if stratify else None
            return train_test_split(idx, random_state=self.split_seed, stratify=labels, **size)

        rest = np.arange(len(y))
        test = None
        if self.official_test_size is None:
            rest, test = cut(rest, test_size=self.test_fraction)
        val = np.empty(0, dtype=np.int64)
        if self.val_fraction > 0:
            rest, val = cut(rest, test_size=self.val_fraction)
        train = rest
        if self.train_size is not None and self.train_size < len(rest):
            # Stratifying needs one sample per class in the dropped part too; when almost
            # everything is kept, a plain random subsample is just as representative.
            droppable = len(rest) - self.train_size >= (self.num_classes or 1)
            train = cut(rest, stratify=classification and droppable, train_size=self.train_size)[0]

        out = {"train": np.sort(train), "val": np.sort(val)}
        out["test"] = None if test is None else np.sort(test)
        return out


def bootstrap_indices(n: int, seed: int) -> np.ndarray:
    """``n`` indices in ``[0, n)`` drawn uniformly with replacement, fixed by ``seed``.

    A bootstrap resample (as in bagging) holds about ``1 - 1/e`` = 63.2 % distinct samples.
    """
    return np.random.default_rng(seed).integers(0, n, size=n)
