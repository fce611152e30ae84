"""The deterministic prediction: one eval-mode pass (dropout's weight-scaling rule)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from bench.uncertainty.base import (
    Prediction,
    Predictor,
    classification_prediction,
    network_outputs,
    regression_prediction,
)


class Deterministic(Predictor):
    """The plain network in eval mode: inverted dropout makes this the weight-scaling rule.

    With several networks (an ensemble run) it is the first member, the one trained with the
    run's own ``seed``, so ``test/*`` means the same with and without ``ensemble.members``.
    """

    prefix = ""
    label = "deterministic"

    def predict(self, batches: Iterable[torch.Tensor]) -> Prediction:
        out = network_outputs(self.networks[0], batches)
        if self.head.classification:
            return classification_prediction(out)
        return regression_prediction(*self.head.mean_var(out))
