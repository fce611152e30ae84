"""In-memory datamodules: the whole dataset lives in a few tensors.

Every benchmark dataset here fits in memory (the largest, SVHN, is ~300 MB as float32), so the
fastest loader is no loader at all: index big tensors with a permutation. Subclasses only say how
to read raw arrays (:meth:`ArrayDataModule.load_arrays`); this base class does the rest in one
place so that every dataset is split, standardized and batched the same way:

1. split: test (only when the dataset has no official test set), then validation from what is
   left, then an optional ``train_size`` subsample of the training part. The split depends only on
   ``split_seed``, so runs that differ only in the training seed see exactly the same data;
2. standardize with statistics of the training split only (nothing leaks from val/test);
3. hold the tensors on the training device and batch them by indexing.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from bench.errors import ConfigError

SPLITS = ("train", "val", "test")

# Features (and regression targets) whose training std is below this are left unscaled: constant
# pixels (digits has several) then map to 0 instead of NaN.
MIN_STD = 1e-8


class TensorBatches:
    """Batches ``(x[idx], y[idx])`` drawn from tensors by index: no per-sample Python work.

    With ``generator`` the order is a fresh permutation on every pass; the generator advances, so
    epochs differ, while the same seed reproduces the same sequence of epochs. The permutation is
    drawn on CPU (a CPU generator cannot drive a CUDA ``randperm``) and then moved to the data.

    Under distributed training each rank takes every ``world_size``-th index. With ``pad=True``
    (training) the index list is first padded by wrapping around, like Lightning's
    ``DistributedSampler``, so every rank runs the same number of steps; otherwise the shards are
    exact (no sample counted twice) and may differ in length by one.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
    ) -> None:
        self.x, self.y = x, y
        self.generator = generator
        self.rank, self.world_size, self.pad = rank, world_size, pad
        n = len(x)
        self.n_local = len(range(rank, self._n_padded(n), world_size))
        # batch_size None means one batch holding everything (full-batch gradient descent).
        self.batch_size = batch_size or max(self.n_local, 1)

    def _n_padded(self, n: int) -> int:
        if self.pad and self.world_size > 1:
            return math.ceil(n / self.world_size) * self.world_size
        return n

    def __len__(self) -> int:
        return math.ceil(self.n_local / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.generator is not None:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            n_pad = self._n_padded(n) - n
            if n_pad:
                order = torch.cat([order, order[:n_pad]])
            order = order[self.rank :: self.world_size]
        order = order.to(self.x.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


class ArrayDataModule(L.LightningDataModule, ABC):
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
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self._target_mean = 0.0
        self._target_std = 1.0

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
            is_int(self.split_seed) and 0 <= self.split_seed < 2**32,
            "split_seed", "an integer in [0, 2**32)", self.split_seed,
        )  # fmt: skip
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
        require(
            is_real(self.val_fraction) and 0 <= self.val_fraction < 1,
            "val_fraction", "a number in [0, 1)", self.val_fraction,
        )  # fmt: skip
        if self.official_test_size is None:
            require(
                is_real(self.test_fraction) and 0 < self.test_fraction < 1,
                "test_fraction", f"a number in (0, 1) ({self.name} has no official test set)",
                self.test_fraction,
            )  # fmt: skip
        else:  # unused: the official test set is used as is
            require(
                is_real(self.test_fraction) and 0 <= self.test_fraction < 1,
                "test_fraction", "a number in [0, 1)", self.test_fraction,
            )  # fmt: skip

        # Stratified splitting needs at least one sample per class on both sides of every cut.
        least = self.num_classes or 1
        n_test, n_val, n_train = self._carve_sizes()
        if self.official_test_size is None:
            require(
                n_test >= least and self.pool_size - n_test >= least,
                "test_fraction",
                f"such that test and the rest of the {self.pool_size} {self.name} samples "
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
            f"null or an integer in [{least}, {n_train}] ({n_train} = the {self.name} training "
            "samples left after the test and validation carve)",
            self.train_size,
        )  # fmt: skip

    def _carve_sizes(self) -> tuple[int, int, int]:
        """Sizes (test, val, train before ``train_size``) with the rounding sklearn applies.

        ``train_test_split`` gives the held-out part ``ceil(fraction * n)`` samples; using the same
        formula here makes :meth:`max_train_size` exact without reading the data.
        """
        if self.official_test_size is None:
            n_test = math.ceil(self.test_fraction * self.pool_size)
            n_rest = self.pool_size - n_test
        else:
            n_test, n_rest = self.official_test_size, self.pool_size
        n_val = math.ceil(self.val_fraction * n_rest) if self.val_fraction > 0 else 0
        return n_test, n_val, n_rest - n_val

    def max_train_size(self) -> int:
        """Largest allowed ``train_size``: the training samples left after test and validation."""
        return self._carve_sizes()[2]

    def split_sizes(self) -> dict[str, int]:
        """Samples per split, known without loading (equal to the tensors' lengths after setup)."""
        n_test, n_val, n_train = self._carve_sizes()
        if self.train_size is not None:
            n_train = self.train_size
        return {"train": n_train, "val": n_val, "test": n_test}

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

    @property
    def target_mean(self) -> float:
        """Training mean of the raw regression targets (0 for classification).

        The loaders yield ``(y - target_mean) / target_std``; multiply predictions by
        ``target_std`` and add ``target_mean`` to report metrics in the original units.
        """
        self._require_loaded("target_mean")
        return self._target_mean

    @property
    def target_std(self) -> float:
        """Training std (ddof=0) of the raw regression targets (1 for classification)."""
        self._require_loaded("target_std")
        return self._target_std

    def _require_loaded(self, what: str) -> None:
        if self.task == "regression" and not self.is_loaded:
            raise RuntimeError(f"{self.name}: {what} is known only after setup()")

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
        self.split_indices = self._split(y_pool)
        if X_test is None:
            X_test, y_test = X_pool[self.split_indices["test"]], y_pool[self.split_indices["test"]]
        raw = {
            "train": (X_pool[self.split_indices["train"]], y_pool[self.split_indices["train"]]),
            "val": (X_pool[self.split_indices["val"]], y_pool[self.split_indices["val"]]),
            "test": (X_test, y_test),
        }
        del X_pool, y_pool  # the pool may be large; keep only the split copies

        x_train = raw["train"][0].astype(np.float32)
        self.feature_mean, self.feature_std = standardization_stats(
            x_train, per_channel=self.standardize_per == "channel"
        )
        if self.task == "regression":
            y_train = raw["train"][1].astype(np.float64)
            self._target_mean = float(y_train.mean())
            std = float(y_train.std())
            self._target_std = std if std >= MIN_STD else 1.0

        for split, (x, y) in raw.items():
            x = x_train if split == "train" else x.astype(np.float32)
            x -= self.feature_mean
            x /= self.feature_std
            self.tensors[split] = (torch.from_numpy(x), self._targets(y))

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        if self.task == "classification":
            return torch.as_tensor(y, dtype=torch.int64)
        z = (np.asarray(y, dtype=np.float64) - self._target_mean) / self._target_std
        return torch.as_tensor(z.reshape(-1), dtype=torch.float32)

    def _check_arrays(self, X_pool: np.ndarray, y_pool: np.ndarray, X_test: Any) -> None:
        """The static sizes drive validation and ``max_train_size``; make sure they hold."""
        found = (len(X_pool), None if X_test is None else len(X_test), tuple(X_pool.shape[1:]))
        expected = (self.pool_size, self.official_test_size, tuple(self.input_shape))
        if found != expected or len(y_pool) != len(X_pool):
            raise RuntimeError(
                f"{self.name}: expected (pool size, test size, sample shape) = {expected}, "
                f"read {found} from the data files"
            )

    def _split(self, y: np.ndarray) -> dict[str, np.ndarray | None]:
        """Indices into the pool for train / val (/ test when carved), sorted.

        Order of the cuts: test, validation, then the ``train_size`` subsample, so the test and
        validation sets do not change with ``train_size``. Classification splits are stratified.
        """
        classification = self.task == "classification"

        def cut(idx: np.ndarray, stratify: bool = classification, **size: Any) -> list[np.ndarray]:
            labels = y[idx] if stratify else None
            return train_test_split(idx, random_state=self.split_seed, stratify=labels, **size)

        rest = np.arange(len(y))
        test = None
        if self.test_from_pool:
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

    def _data_device(self) -> torch.device:
        """The training device when attached to a trainer and batching in memory, else CPU."""
        trainer = self.trainer
        if self.in_memory and trainer is not None:
            device = trainer.strategy.root_device
            if device.type == "cuda":
                return device
        return torch.device("cpu")

    # ------------------------------------------------------------------ loaders

    def train_dataloader(self) -> TensorBatches | DataLoader:
        """Shuffled training batches; the order is fixed by the global torch seed.

        The generator is seeded from ``torch.initial_seed()`` here, so ``L.seed_everything(s)``
        fixes the order of every epoch, while the split stays fixed by ``split_seed``. Under
        distributed training all ranks must draw the same permutation (each keeps its own slice),
        so rank 0's seed is broadcast in case the processes were seeded differently.
        """
        seed = torch.initial_seed()
        if self.trainer is not None and self.trainer.world_size > 1:
            seed = self.trainer.strategy.broadcast(seed, src=0)
        generator = torch.Generator().manual_seed(seed)
        return self._loader("train", self.batch_size, generator)

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("val", self.eval_batch_size)

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("test", self.eval_batch_size)

    def train_eval_dataloader(self) -> TensorBatches | DataLoader:
        """The whole training split in order, for measuring the empirical risk in eval mode."""
        return self.eval_dataloader("train")

    def eval_dataloader(self, split: str) -> TensorBatches | DataLoader:
        """The whole of ``split`` in order, never sharded across ranks: the final evaluation
        runs on one process and must see every sample (val/test loaders shard under DDP)."""
        return self._loader(split, self.eval_batch_size, shard=False)

    def _loader(
        self,
        split: str,
        batch_size: int | None,
        generator: torch.Generator | None = None,
        shard: bool = True,
    ) -> TensorBatches | DataLoader:
        if not self.is_loaded:
            raise RuntimeError(f"{self.name}: call setup() before asking for a dataloader")
        x, y = self.tensors[split]
        if not self.in_memory:
            return DataLoader(
                TensorDataset(x.cpu(), y.cpu()),
                batch_size=batch_size or max(len(x), 1),
                shuffle=generator is not None,
                generator=generator,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
            )
        trainer = self.trainer
        if trainer is None or not shard:
            rank, world_size = 0, 1
        else:
            rank, world_size = trainer.global_rank, trainer.world_size
        return TensorBatches(
            x, y, batch_size, generator, rank=rank, world_size=world_size, pad=generator is not None
        )


def standardization_stats(x: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of training inputs ``x`` (float32), shaped to broadcast over one sample.

    Per channel, statistics are accumulated in float64 one channel at a time, which keeps the
    temporary memory at one channel of float32 even for CIFAR-10. Stds below ``MIN_STD`` become 1
    so constant features map to 0 rather than NaN.
    """
    if per_channel:
        shape = (x.shape[1],) + (1,) * (x.ndim - 2)
        mean = np.empty(x.shape[1])
        std = np.empty(x.shape[1])
        for c in range(x.shape[1]):
            xc = x[:, c]
            mean[c] = xc.mean(dtype=np.float64)
            std[c] = np.sqrt(np.square(xc - np.float32(mean[c])).mean(dtype=np.float64))
        mean, std = mean.reshape(shape), std.reshape(shape)
    else:
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
    std = np.where(std < MIN_STD, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def resolve_dir(path: str | Path | None) -> Path | None:
    """Absolute data directory: ``~`` expanded, relative paths taken from the working directory.

    Hydra in this project does not change the working directory, so ``./data`` means the folder
    the command was started from.
    """
    if path is None:
        return None
    return (Path.cwd() / Path(path).expanduser()).resolve()


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(ok: bool, key: str, allowed: str, value: Any) -> None:
    """Raise a one-line ``ConfigError`` naming ``dataset.<key>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"dataset.{key} must be {allowed}; got {value!r}")
