"""In-memory datamodules: the whole dataset lives in a few tensors.

Every benchmark dataset here fits in memory (the largest, SVHN, is ~300 MB as float32), so the
fastest loader is no loader at all: index big tensors with a permutation. Subclasses only say how
to read raw arrays (:meth:`ArrayDataModule.load_arrays`); this base class does the rest in one
place so that every dataset is split, standardized and batched the same way:

1. split (:class:`~bench.data.splits.Splitter`): test (only when the dataset has no official test
   set), then validation from what is left, then an optional ``train_size`` subsample of the
   training part. The split depends only on ``split_seed``, so runs that differ only in the
   training seed see exactly the same data;
2. standardize (:class:`~bench.data.standardize.Standardizer`) with statistics of the training
   split only (nothing leaks from val/test); extra evaluation sets (out-of-distribution,
   corrupted) go through :meth:`ArrayDataModule.standardize` with the same statistics;
3. hold the tensors on the training device and batch them by indexing
   (:class:`~bench.data.batches.TensorBatches`), optionally from a bootstrap resample — the
   loaders and bagging are :class:`~bench.data.loading.TensorLoaders`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import lightning as L
import numpy as np
import torch

from bench.data.batches import TensorBatches
from bench.data.checks import is_int, is_real, require, resolve_dir
from bench.data.loading import TensorLoaders
from bench.data.splits import Splitter
from bench.data.standardize import MIN_STD, Standardizer, TargetScaler, standardization_stats

# Re-exported: these names lived here before the module was split up.
__all__ = [
    "MIN_STD",
    "SPLITS",
    "ArrayDataModule",
    "TensorBatches",
    "is_int",
    "is_real",
    "require",
    "resolve_dir",
    "standardization_stats",
]

SPLITS = ("train", "val", "test")


class ArrayDataModule(TensorLoaders, L.LightningDataModule, ABC):
    """Base of every dataset: split, standardize and batch arrays returned by ``load_arrays``.

    Subclasses set the class attributes below (everything about a dataset that is known without
    reading it, so that config errors surface before any loading) and implement
    :meth:`load_arrays`. All constructor arguments come from ``conf/dataset/<name>.yaml`` and can
    be overridden as ``dataset.<key>=...``.
    """

    name: str = ""
    task: str = "classification"  # or "regression"
    is_image: bool = False
    input_shape: tuple[int, ...] = ()  # (C, H, W) for images, (D,) for tabular data
    num_classes: int | None = None  # None for regression
    pool_size: int = 0  # samples in the official training set (or in the whole set)
    official_test_size: int | None = None  # None: the test set is carved from the pool
    # "feature": one mean/std per input feature (tabular data, the 8x8 digits);
    # "channel": one per colour channel (photos, where per-pixel statistics are noise).
    standardize_per: str = "feature"
    # The range raw inputs live in (images), where corrupted or foreign images are clipped to;
    # None for tabular data, which has no natural bounds.
    raw_range: tuple[float, float] | None = None
    # Default out-of-distribution partners for evaluation (names known to bench.data.ood).
    ood_partners: tuple[str, ...] = ()

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        train_size: int | None = None,
        batch_size: int | None = 128,
        eval_batch_size: int = 2048,
        in_memory: bool = True,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.data_dir = resolve_dir(data_dir)
        self.download = download
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.train_size = train_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.in_memory = in_memory
        self.num_workers = num_workers
        self._validate()

        self.test_from_pool = self.official_test_size is None
        self.split_indices: dict[str, np.ndarray | None] = {}
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.standardizer = Standardizer(per_channel=self.standardize_per == "channel")
        self.target_scaler = TargetScaler()
        self.bootstrap_seed: int | None = None
        self._resume_order: dict | None = None

    # ------------------------------------------------------------------ what subclasses provide

    def check_files(self) -> None:
        """Fail fast if the data files are missing; bundled datasets have none to check."""

    @abstractmethod
    def load_arrays(
        self,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Return raw ``(X_pool, y_pool, X_test, y_test)``; ``X_test=None`` carves the test set.

        Images are ``(N, C, H, W)`` (uint8 or float), labels int64, regression targets float.
        """

    # ------------------------------------------------------------------ validation (no loading)

    def _validate(self) -> None:
        """Reject bad config values in ``__init__``, before any (possibly slow) loading."""
        require(isinstance(self.download, bool), "download", "true or false", self.download)
        require(isinstance(self.in_memory, bool), "in_memory", "true or false", self.in_memory)
        require(
            is_int(self.num_workers) and self.num_workers >= 0,
            "num_workers", "a non-negative integer", self.num_workers,
        )  # fmt: skip
        require(
            self.batch_size is None or (is_int(self.batch_size) and self.batch_size > 0),
            "batch_size", "a positive integer or null (null = full batch)", self.batch_size,
        )  # fmt: skip
        require(
            is_int(self.eval_batch_size) and self.eval_batch_size > 0,
            "eval_batch_size", "a positive integer", self.eval_batch_size,
        )  # fmt: skip
        self.splitter.check(self.name)

    @property
    def splitter(self) -> Splitter:
        """The split rules, from the dataset's sizes and the ``dataset.*`` split settings."""
        return Splitter(
            pool_size=self.pool_size,
            official_test_size=self.official_test_size,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            train_size=self.train_size,
            split_seed=self.split_seed,
            num_classes=self.num_classes if self.task == "classification" else None,
        )

    def max_train_size(self) -> int:
        """Largest allowed ``train_size``: the training samples left after test and validation."""
        return self.splitter.carve_sizes()[2]

    def split_sizes(self) -> dict[str, int]:
        """Samples per split, known without loading (equal to the tensors' lengths after setup)."""
        return self.splitter.sizes()

    @property
    def n_train(self) -> int:
        """Number of training samples actually used (after ``train_size``)."""
        return self.split_sizes()["train"]

    @property
    def num_outputs(self) -> int:
        """Width of the model's last layer: one logit per class, or one value for regression."""
        return self.num_classes if self.num_classes is not None else 1

    @property
    def is_loaded(self) -> bool:
        """Whether :meth:`setup` has read, split and standardized the data."""
        return bool(self.tensors)

    # ------------------------------------------------------------------ statistics

    @property
    def feature_mean(self) -> np.ndarray | None:
        """Training mean of the raw inputs, shaped to broadcast over one sample (after setup)."""
        return self.standardizer.mean

    @property
    def feature_std(self) -> np.ndarray | None:
        """Training std of the raw inputs (constant features: 1), like :attr:`feature_mean`."""
        return self.standardizer.std

    @property
    def target_mean(self) -> float:
        """Training mean of the raw regression targets (0 for classification).

        The loaders yield ``(y - target_mean) / target_std``; multiply predictions by
        ``target_std`` and add ``target_mean`` to report metrics in the original units.
        """
        self._require_loaded("target_mean")
        return self.target_scaler.mean

    @property
    def target_std(self) -> float:
        """Training std (ddof=0) of the raw regression targets (1 for classification)."""
        self._require_loaded("target_std")
        return self.target_scaler.std

    def _require_loaded(self, what: str) -> None:
        if self.task == "regression" and not self.is_loaded:
            raise RuntimeError(f"{self.name}: {what} is known only after setup()")

    def standardize(self, x_raw: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw inputs ``(N, *input_shape)`` of any evaluation set, standardized exactly like the
        train/val/test tensors (training statistics, float32).

        A numpy array comes back as a CPU tensor, bit-identical to what :meth:`setup` produces; a
        tensor stays on its device.
        """
        self._check_batch(x_raw, "standardize")
        if isinstance(x_raw, torch.Tensor):
            return self.standardizer.transform_tensor(x_raw)
        return torch.from_numpy(self.standardizer.transform(np.asarray(x_raw)))

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardized inputs back to raw units (float32, on ``x``'s device)."""
        self._check_batch(x, "unstandardize")
        return self.standardizer.inverse(x)

    def _check_batch(self, x: np.ndarray | torch.Tensor, what: str) -> None:
        if not self.is_loaded:
            raise RuntimeError(f"{self.name}: call setup() before {what}()")
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(
                f"{self.name}: {what}() expects inputs of shape (N, *{tuple(self.input_shape)}), "
                f"got {tuple(x.shape)}"
            )

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Load, split and standardize once; on later calls only move tensors if needed.

        Lightning calls this once per stage (fit, validate, test); the data are the same for all.
        """
        if not self.is_loaded:
            self._load()
        device = self._data_device()
        self.tensors = {k: (x.to(device), y.to(device)) for k, (x, y) in self.tensors.items()}

    def _load(self) -> None:
        X_pool, y_pool, X_test, y_test = self.load_arrays()
        self._check_arrays(X_pool, y_pool, X_test)
        self.split_indices = self.splitter.split(y_pool)
        if X_test is None:
            X_test, y_test = X_pool[self.split_indices["test"]], y_pool[self.split_indices["test"]]
        raw = {
            "train": (X_pool[self.split_indices["train"]], y_pool[self.split_indices["train"]]),
            "val": (X_pool[self.split_indices["val"]], y_pool[self.split_indices["val"]]),
            "test": (X_test, y_test),
        }
        del X_pool, y_pool  # the pool may be large; keep only the split copies

        x_train = raw["train"][0].astype(np.float32)  # our own copy, standardized in place below
        self.standardizer.fit(x_train)
        if self.task == "regression":
            self.target_scaler = TargetScaler.fit(raw["train"][1])

        for split, (x, y) in raw.items():
            if split == "train":
                x = self.standardizer.transform(x_train, copy=False)
            else:
                x = self.standardizer.transform(x)
            self.tensors[split] = (torch.from_numpy(x), self._targets(y))

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        if self.task == "classification":
            return torch.as_tensor(y, dtype=torch.int64)
        return self.target_scaler.transform(y)

    def _check_arrays(self, X_pool: np.ndarray, y_pool: np.ndarray, X_test: Any) -> None:
        """The static sizes drive validation and ``max_train_size``; make sure they hold."""
        found = (len(X_pool), None if X_test is None else len(X_test), tuple(X_pool.shape[1:]))
        expected = (self.pool_size, self.official_test_size, tuple(self.input_shape))
        if found != expected or len(y_pool) != len(X_pool):
            raise RuntimeError(
                f"{self.name}: expected (pool size, test size, sample shape) = {expected}, "
                f"read {found} from the data files"
            )

    def _data_device(self) -> torch.device:
        """The training device when attached to a trainer and batching in memory, else CPU."""
        trainer = self.trainer
        if self.in_memory and trainer is not None:
            device = trainer.strategy.root_device
            if device.type == "cuda":
                return device
        return torch.device("cpu")
