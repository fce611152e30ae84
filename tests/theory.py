"""Full-batch float64 fitting through the real training step, and the textbook references.

Conventions (as in the code): regression loss = mean squared error over samples (no ½), the
penalty added as written, the bias unpenalized, data standardized by the datamodule. The
references take the same standardized training tensors and centre them (that is what an
unpenalized intercept does), so they never call the code under test.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from bench.models.linear import Linear
from bench.module import BenchModule
from bench.regularizers.base import Regularizer


def training_data(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """The datamodule's standardized training split as float64 tensors."""
    datamodule.setup("fit")
    x, y = datamodule.tensors["train"]
    return x.double(), y.double()


def lipschitz(x: torch.Tensor) -> float:
    """L = largest Hessian eigenvalue of mean((y − Xw − b)²) in (w, b): 2·λ_max(AᵀA/n), A=[X 1]."""
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    return 2 * float(torch.linalg.eigvalsh(a.T @ a / len(x)).max())


def centred(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    xn, yn = x.numpy(), y.numpy()
    return xn - xn.mean(0), yn - yn.mean()


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> np.ndarray:
    """argmin mean((y − Xw − b)²) + λ‖w‖²: w = (XcᵀXc + nλI)⁻¹ Xcᵀyc."""
    xc, yc = centred(x, y)
    n, d = xc.shape
    return np.linalg.solve(xc.T @ xc + n * lam * np.eye(d), xc.T @ yc)


def smooth_gradient(x: torch.Tensor, y: torch.Tensor, w: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """Gradient in w of mean((yc − Xc w)²) + l2·‖w‖² (the intercept already at its optimum)."""
    xc, yc = centred(x, y)
    return -2 * xc.T @ (yc - xc @ w) / len(yc) + 2 * l2 * w


def kkt_margin(
    x: torch.Tensor, y: torch.Tensor, w: np.ndarray, l1: float, l2: float = 0.0
) -> tuple[float, float, float]:
    """KKT of min smooth + l1·‖w‖₁ at ``w``: (stationarity error on the support,
    min over zeros of 1 − |g_j|/l1 (> 0: strictly inside the threshold), min |w_j| on the support).
    """
    g = smooth_gradient(x, y, w, l2)
    on = w != 0
    stationarity = float(np.abs(g[on] + l1 * np.sign(w[on])).max()) if on.any() else 0.0
    inside = float((1 - np.abs(g[~on]) / l1).min()) if (~on).any() else np.inf
    smallest = float(np.abs(w[on]).min()) if on.any() else np.inf
    return stationarity, inside, smallest


def linear_module(
    datamodule, regularizers: Sequence[Regularizer], optimizer: Callable, seed: int = 0
) -> BenchModule:
    """Linear regression as in a run (Linear model, BenchModule), in float64."""
    torch.manual_seed(seed)
    model = Linear(tuple(datamodule.input_shape), 1)
    for reg in regularizers:
        reg.setup(datamodule, model)
    return BenchModule(model, "regression", optimizer=optimizer, regularizers=regularizers).double()


def sgd(lr: float, **kwargs) -> Callable:
    return functools.partial(torch.optim.SGD, lr=lr, **kwargs)


def fit(
    module: BenchModule,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr_at: Callable[[int], float] | None = None,
) -> np.ndarray:
    """Full-batch training with the module's own optimizer (and hence its after-step hooks).

    ``lr_at(t)`` optionally sets every group's lr before step t. Returns the trajectory: all
    parameters (flattened, in ``module.parameters()`` order) after each step, shape (steps, P).
    ``self.log`` warns without a trainer; that warning is harmless here and silenced.
    """
    opt = module.configure_optimizers()
    trajectory = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log.*")
        for t in range(steps):
            if lr_at is not None:
                for group in opt.param_groups:
                    group["lr"] = lr_at(t)
            opt.zero_grad()
            module.training_step((x, y), 0).backward()
            module.on_before_optimizer_step(opt)  # what Lightning calls between the two
            opt.step()
            trajectory.append(parameters_to_vector(module.parameters()).detach().numpy().copy())
    return np.stack(trajectory)


def coef(module: BenchModule) -> np.ndarray:
    return module.model[-1].weight.detach().numpy().ravel().copy()
