"""Input conversion shared by the metric modules: every metric computes in numpy float64.

Torch tensors are recognised by duck typing rather than ``isinstance``, so that the metrics (and
the leaderboard's plots, which use them) import without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ArrayLike = Any  # a torch.Tensor (any device, dtype), a numpy array or a sequence


def _numpy(x: ArrayLike) -> Any:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        return x.detach().cpu().double().numpy()  # double: numpy has no bfloat16
    return x


def as_float64(x: ArrayLike) -> np.ndarray:
    """A float64 numpy copy of a torch tensor (any device, dtype) or array-like."""
    return np.asarray(_numpy(x), dtype=np.float64)


def as_int64(x: ArrayLike) -> np.ndarray:
    """Integer class labels as int64 numpy."""
    return np.asarray(_numpy(x)).astype(np.int64)
