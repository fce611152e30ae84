"""scikit-learn's 8x8 handwritten digits: the default dataset, bundled, so it never downloads."""

from __future__ import annotations

import numpy as np

from bench.data.base import ArrayDataModule


class DigitsDataModule(ArrayDataModule):
    """1,797 grey 8x8 digit images (values 0-16), 10 classes, test carved from the pool.

    Standardized per pixel rather than per channel: with one channel and 64 pixels, per-pixel
    statistics are cheap and well estimated, and the border pixels that are always 0 in training
    simply stay 0.
    """

    name = "digits"
    task = "classification"
    is_image = True
    input_shape = (1, 8, 8)
    num_classes = 10
    pool_size = 1797
    standardize_per = "feature"
    raw_range = (0.0, 16.0)
    ood_partners = ("noise", "fashion_mnist")

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, None, None]:
        from sklearn.datasets import load_digits  # here: only a digits run pays for sklearn

        bunch = load_digits()
        X = bunch.images[:, None].astype(np.float32)  # (N, 1, 8, 8)
        return X, bunch.target.astype(np.int64), None, None
