"""Datasets as in-memory LightningDataModules; Hydra builds them from ``conf/dataset/*.yaml``."""

from bench.data.base import ArrayDataModule, TensorBatches
from bench.data.digits import DigitsDataModule
from bench.data.regression import DiabetesDataModule, SyntheticRegressionDataModule
from bench.data.vision import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
    TorchvisionDataModule,
)

__all__ = [
    "ArrayDataModule",
    "CIFAR10DataModule",
    "DiabetesDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "SVHNDataModule",
    "SyntheticRegressionDataModule",
    "TensorBatches",
    "TorchvisionDataModule",
]
