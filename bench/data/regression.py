"""Regression datasets: a small real one (diabetes) and a synthetic one with known truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.base import ArrayDataModule
from bench.data.checks import is_int, is_real, require


class DiabetesDataModule(ArrayDataModule):
    """scikit-learn's diabetes data: 442 patients, 10 features, disease progression after a year.

    Read with ``scaled=False`` (features in their original units): this module standardizes with
    training statistics itself, whereas sklearn's pre-scaled copy used all 442 samples.
    """

    name = "diabetes"
    task = "regression"
    input_shape = (10,)
    pool_size = 442

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, None, None]:
        from sklearn.datasets import load_diabetes  # here: only a diabetes run pays for sklearn

        bunch = load_diabetes(scaled=False)
        return bunch.data.astype(np.float32), bunch.target.astype(np.float64), None, None


class SyntheticRegressionDataModule(ArrayDataModule):
    """Data drawn from a known model, so fitted functions and noise can be checked against truth.

    ``X ~ N(0, I)`` with ``n_features`` columns and ``y = f(X) + eps``, ``eps ~ N(0, sigma(X)^2)``:

    - ``kind="linear"``: ``f(x) = x . true_coef + true_intercept``;
    - ``kind="nonlinear"``: ``f(x) = sin(3 x0) + 0.5 x1^2 + x . true_coef + true_intercept`` where
      ``true_coef[0] = true_coef[1] = 0`` (x0 and x1 enter only through the nonlinear terms);
    - ``sigma(x) = noise_std``, or ``noise_std * (1 + |x0|)`` with ``heteroscedastic=True``.

    Everything depends only on ``data_seed`` (independent streams for the coefficients, inputs and
    noise, so a larger ``n_samples`` extends the same data set). :meth:`generate` returns the raw
    arrays; :meth:`true_function` and :meth:`noise_std_fn` take raw inputs (undo the
    standardization with ``feature_mean``/``feature_std`` to use them on loader batches).
    """

    name = "synthetic_regression"
    task = "regression"

    def __init__(
        self,
        n_samples: int = 1000,
        n_features: int = 8,
        kind: str = "linear",
        noise_std: float = 0.1,
        heteroscedastic: bool = False,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        require(is_int(n_samples) and n_samples >= 2, "n_samples", "an integer >= 2", n_samples)
        require(kind in ("linear", "nonlinear"), "kind", "'linear' or 'nonlinear'", kind)
        least_features = 2 if kind == "nonlinear" else 1
        require(
            is_int(n_features) and n_features >= least_features,
            "n_features", f"an integer >= {least_features} for kind={kind}", n_features,
        )  # fmt: skip
        require(is_real(noise_std) and noise_std >= 0, "noise_std", "a number >= 0", noise_std)
        require(
            isinstance(heteroscedastic, bool), "heteroscedastic", "true or false", heteroscedastic
        )
        require(
            is_int(data_seed) and data_seed >= 0, "data_seed", "a non-negative integer", data_seed
        )
        # Set before the base __init__: its validation needs the pool size.
        self.pool_size = n_samples
        self.input_shape = (n_features,)
        self.n_samples, self.n_features, self.kind = n_samples, n_features, kind
        self.noise_std, self.heteroscedastic, self.data_seed = noise_std, heteroscedastic, data_seed
        super().__init__(**kwargs)

        coef_rng = np.random.default_rng(np.random.SeedSequence(data_seed).spawn(3)[0])
        self.true_coef = coef_rng.standard_normal(n_features)
        self.true_intercept = float(coef_rng.standard_normal())
        if kind == "nonlinear":
            self.true_coef[:2] = 0.0

    def true_function(self, X_raw: np.ndarray) -> np.ndarray:
        """Noise-free mean ``f(x)`` of the targets, for raw (unstandardized) inputs."""
        f = X_raw @ self.true_coef + self.true_intercept
        if self.kind == "nonlinear":
            f = f + np.sin(3 * X_raw[:, 0]) + 0.5 * X_raw[:, 1] ** 2
        return f

    def noise_std_fn(self, X_raw: np.ndarray) -> np.ndarray:
        """True standard deviation of the noise at raw inputs (the aleatoric uncertainty)."""
        scale = 1 + np.abs(X_raw[:, 0]) if self.heteroscedastic else np.ones(len(X_raw))
        return self.noise_std * scale

    def generate(self) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``(X, y)`` of all ``n_samples``, identical on every call."""
        _, x_seed, noise_seed = np.random.SeedSequence(self.data_seed).spawn(3)
        X = np.random.default_rng(x_seed).standard_normal((self.n_samples, self.n_features))
        eps = np.random.default_rng(noise_seed).standard_normal(self.n_samples)
        return X, self.true_function(X) + self.noise_std_fn(X) * eps

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray, None, None]:
        X, y = self.generate()
        return X, y, None, None
