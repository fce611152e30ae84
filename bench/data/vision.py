"""MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and SVHN, read with torchvision into in-memory arrays.

The files use torchvision's own on-disk layout under ``dataset.data_dir`` (default
``${oc.env:BENCH_DATA_DIR,./data}``), so a folder torchvision downloaded into works as is. The
arrays are taken from the datasets' ``.data``/``.targets`` at once: no per-sample transforms.
Missing files raise :class:`~bench.errors.DatasetNotFoundError` with one line saying where they
were looked for and how to provide them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torchvision

from bench.data.base import ArrayDataModule
from bench.errors import DatasetNotFoundError


class TorchvisionDataModule(ArrayDataModule):
    """What the four torchvision sets share: a data directory, a file check, an official test set.

    Subclasses give the files they need (:meth:`expected_files`) and read one split as arrays
    (:meth:`read_split`).
    """

    task = "classification"
    is_image = True
    num_classes = 10
    standardize_per = "channel"
    raw_range = (0.0, 255.0)

    def __init__(self, data_dir: str | None = None, **kwargs) -> None:
        if data_dir is None:  # same default as the yaml, for use from Python
            data_dir = os.environ.get("BENCH_DATA_DIR", "./data")
        super().__init__(data_dir=data_dir, **kwargs)

    @property
    def root(self) -> Path:
        """The resolved data directory torchvision reads from."""
        assert self.data_dir is not None
        return self.data_dir

    def expected_files(self) -> list[Path]:
        """The files torchvision reads (their presence is checked; contents at load)."""
        raise NotImplementedError

    def read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(images (N, C, H, W) uint8, labels int64)`` of the official train or test split."""
        raise NotImplementedError

    def missing_files(self) -> list[Path]:
        return [path for path in self.expected_files() if not path.is_file()]

    def check_files(self) -> None:
        """Fail now, before any training, if the files are absent and will not be downloaded.

        Only checks that the files exist (fast); torchvision verifies checksums when it loads.
        """
        if not self.download and self.missing_files():
            raise DatasetNotFoundError(self._not_found_message("not found"))

    def prepare_data(self) -> None:
        """Lightning runs this on one process before ``setup``: the safe place to download."""
        if self.download and self.missing_files():
            self.read_split(train=True)
            self.read_split(train=False)
        self.check_files()

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self.check_files()
        try:
            X_pool, y_pool = self.read_split(train=True)
            X_test, y_test = self.read_split(train=False)
        except RuntimeError as err:
            # torchvision's message when files are missing or fail their checksum; other
            # RuntimeErrors (a failed download, say) are not ours to reword.
            if "Dataset not found" not in str(err):
                raise
            raise DatasetNotFoundError(self._not_found_message("missing or corrupted")) from err
        return X_pool, y_pool, X_test, y_test

    def _not_found_message(self, problem: str) -> str:
        missing = self.missing_files() or self.expected_files()
        first = missing[0].relative_to(self.root)
        layout = f"{first.parent}/" if str(first.parent) != "." else first.name
        return (
            f"{self.name}: dataset files {problem} in {self.root} (e.g. {first}); set "
            "dataset.download=true on a machine with internet access, or point dataset.data_dir "
            f"(or BENCH_DATA_DIR) at a folder in torchvision's layout, <dir>/{layout}..."
        )


class MNISTDataModule(TorchvisionDataModule):
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 1x28x28."""

    name = "mnist"
    ood_partners = ("fashion_mnist", "noise")
    input_shape = (1, 28, 28)
    pool_size = 60000
    official_test_size = 10000
    dataset_class: type[torchvision.datasets.MNIST] = torchvision.datasets.MNIST

    def expected_files(self) -> list[Path]:
        # Same rule as torchvision's MNIST._check_exists: the uncompressed resource files.
        raw = self.root / self.dataset_class.__name__ / "raw"
        return [raw / os.path.splitext(name)[0] for name, _ in self.dataset_class.resources]

    def read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        ds = self.dataset_class(str(self.root), train=train, download=self.download)
        return ds.data.numpy()[:, None], ds.targets.numpy().astype(np.int64)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: Zalando clothing images in MNIST's format (60,000 + 10,000, 1x28x28)."""

    name = "fashion_mnist"
    ood_partners = ("mnist", "noise")
    dataset_class = torchvision.datasets.FashionMNIST


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 colour photos: 50,000 training and 10,000 test images, 3x32x32."""

    name = "cifar10"
    ood_partners = ("svhn", "noise")
    input_shape = (3, 32, 32)
    pool_size = 50000
    official_test_size = 10000

    def expected_files(self) -> list[Path]:
        tv = torchvision.datasets.CIFAR10
        names = [name for name, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]]
        return [self.root / tv.base_folder / name for name in names]

    def read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        ds = torchvision.datasets.CIFAR10(str(self.root), train=train, download=self.download)
        images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # stored as N, H, W, C
        return images, np.asarray(ds.targets, dtype=np.int64)


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: CIFAR-10's 50,000 + 10,000 photo format (3x32x32) with 100 fine classes.

    torchvision's ``cifar-100-python/`` folder (``train``, ``test``, ``meta``); the 20 coarse
    superclass labels are not used. Guo et al. (2017) calibrate ResNets on it.
    """

    name = "cifar100"
    num_classes = 100

    def expected_files(self) -> list[Path]:
        tv = torchvision.datasets.CIFAR100
        names = [name for name, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]]
        return [self.root / tv.base_folder / name for name in names]

    def read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        # torchvision checks every file's md5 before reading and takes the fine labels.
        ds = torchvision.datasets.CIFAR100(str(self.root), train=train, download=self.download)
        images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # stored as N, H, W, C
        return images, np.asarray(ds.targets, dtype=np.int64)


class SVHNDataModule(TorchvisionDataModule):
    """SVHN house-number digits: 73,257 training and 26,032 test images, 3x32x32.

    torchvision keeps SVHN's ``.mat`` files directly in the data directory (no sub-folder) and
    maps the digit 0 (stored as label 10) to 0. The 531,131 "extra" images are not used.
    """

    name = "svhn"
    ood_partners = ("cifar10", "noise")
    input_shape = (3, 32, 32)
    pool_size = 73257
    official_test_size = 26032

    def expected_files(self) -> list[Path]:
        splits = torchvision.datasets.SVHN.split_list
        return [self.root / splits[split][1] for split in ("train", "test")]

    def read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        split = "train" if train else "test"
        ds = torchvision.datasets.SVHN(str(self.root), split=split, download=self.download)
        return ds.data, ds.labels.astype(np.int64)  # already N, C, H, W
