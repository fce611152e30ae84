"""Standardization with training statistics, for inputs (:class:`Standardizer`) and regression
targets (:class:`TargetScaler`).

Statistics come from the training split only, so nothing leaks from validation or test; every
other set (val, test, out-of-distribution, corrupted) is mapped with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Features (and regression targets) whose training std is below this are left unscaled: constant
# pixels (digits has several) then map to 0 instead of NaN.
MIN_STD = 1e-8


class Standardizer:
    """``(x - mean) / std`` with one mean/std per input feature or per colour channel.

    Per feature suits tabular data and the 8x8 digits; per channel suits photos, where per-pixel
    statistics are noise. ``fit`` accumulates in float64; the stored statistics and every
    transform are float32, so numpy and torch give bit-identical results.
    """

    def __init__(self, per_channel: bool) -> None:
        self.per_channel = per_channel
        self.mean: np.ndarray | None = None  # float32, shaped to broadcast over one sample
        self.std: np.ndarray | None = None  # float32, constant features set to 1
        self.constant: np.ndarray | None = None  # bool: training std below MIN_STD

    def fit(self, x_raw: np.ndarray) -> Standardizer:
        """Statistics of the raw training inputs ``(N, *sample_shape)``; returns ``self``.

        Per channel, statistics are accumulated one channel at a time, which keeps the temporary
        memory at one channel of float32 even for CIFAR-10.
        """
        x = x_raw.astype(np.float32, copy=False)
        if self.per_channel:
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
        self.constant = std < MIN_STD
        self.mean = mean.astype(np.float32)
        self.std = np.where(self.constant, 1.0, std).astype(np.float32)
        return self

    def transform(self, x_raw: np.ndarray, copy: bool = True) -> np.ndarray:
        """Standardized float32 inputs; ``copy=False`` reuses a float32 ``x_raw`` in place."""
        mean, std = self._stats()
        x = x_raw.astype(np.float32, copy=copy)
        x -= mean
        x /= std
        return x

    def transform_tensor(self, x_raw: torch.Tensor) -> torch.Tensor:
        """:meth:`transform` in torch, on ``x_raw``'s device (same float32 operations)."""
        mean, std = self._stats()
        x = x_raw.to(torch.float32)
        return (x - torch.from_numpy(mean).to(x.device)) / torch.from_numpy(std).to(x.device)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Back to raw units: ``x * std + mean`` (float32, on ``x``'s device)."""
        mean, std = self._stats()
        x = x.to(torch.float32)
        return x * torch.from_numpy(std).to(x.device) + torch.from_numpy(mean).to(x.device)

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.std is None:
            raise RuntimeError("Standardizer: call fit() on the training inputs first")
        return self.mean, self.std


@dataclass
class TargetScaler:
    """Regression targets as ``(y - mean) / std`` with training statistics (std with ddof=0).

    Multiply predictions by ``std`` and add ``mean`` to report metrics in the original units.
    """

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, y_raw: np.ndarray) -> TargetScaler:
        y = np.asarray(y_raw, dtype=np.float64)
        std = float(y.std())
        return cls(mean=float(y.mean()), std=std if std >= MIN_STD else 1.0)

    def transform(self, y_raw: np.ndarray) -> torch.Tensor:
        """Standardized targets as a float32 vector."""
        z = (np.asarray(y_raw, dtype=np.float64) - self.mean) / self.std
        return torch.as_tensor(z.reshape(-1), dtype=torch.float32)


def standardization_stats(x: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` of training inputs: the function form of :meth:`Standardizer.fit`."""
    fitted = Standardizer(per_channel).fit(x)
    assert fitted.mean is not None and fitted.std is not None
    return fitted.mean, fitted.std
