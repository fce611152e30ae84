"""The weight prior of MC dropout (Gal & Ghahramani, 2016): loss + l²(1 − p)/(2Nτ)·Σw².

Dropout training with this L2 term is variational inference in a Bayesian network whose weights
have the prior N(0, l⁻²): the KL term of the objective, divided by the N training points the
data loss averages over, is the penalty above, with p the dropout rate, l the prior length-scale
and τ the precision of the Gaussian likelihood (the model's noise, 1/σ²). It is an ``L2`` whose
strength is derived rather than chosen: smaller with more data, more dropout or a more precise
likelihood. N is the number of training rows the network sees, known before any data is read.

For the published UCI protocol the penalty covers every weight matrix, not the biases (Keras'
``W_regularizer`` in the reference code), the L2 ``weights`` scope; τ is ``noise_precision``,
the same τ the evaluation uses for the predictive noise (1/τ). A classifier's likelihood has no
noise precision: τ = 1.
"""

from __future__ import annotations

import lightning as L
from torch import nn

from bench.errors import ConfigError
from bench.regularizers.l2 import L2


class DropoutPrior(L2):
    name = "dropout_prior"
    population = True  # the derived strength is a float per member: stacked like L2's

    def __init__(
        self,
        length_scale: float = 1e-2,
        p: float = 0.0,
        tau: float | None = None,
        params: str = "weights",
    ) -> None:
        super().__init__(strength=0.0, params=params)  # the strength is known at setup
        self.length_scale = self.check_nonnegative("length_scale", length_scale)
        self.p = self.check_nonnegative("p", p)
        if self.p >= 1:
            raise ConfigError(f"{self.key('p')} must be a dropout rate in [0, 1), got {p!r}")
        self.tau = None if tau is None else self.check_nonnegative("tau", tau)
        if self.tau == 0:
            raise ConfigError(f"{self.key('tau')} must be a precision > 0, got {tau!r}")

    def setup(self, datamodule: L.LightningDataModule, model: nn.Module) -> None:
        tau = self.tau
        if tau is None:
            if datamodule.task == "regression":
                raise ConfigError(
                    f"{self.key('tau')} is the likelihood's precision τ of a regression: set "
                    "noise_precision=<τ> (it is read from there) or the key itself"
                )
            tau = 1.0
        n = int(datamodule.n_train)
        self.strength = self.length_scale**2 * (1 - self.p) / (2 * n * tau)
