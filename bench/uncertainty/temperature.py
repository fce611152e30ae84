"""Temperature scaling (Guo et al., 2017): one scalar T > 0 divides the logits.

T is fitted after training by minimizing the validation NLL of softmax(logits / T). Dividing by
a positive constant never changes the argmax, so accuracy is untouched; only the confidence
moves (T > 1 softens an over-confident network, T < 1 sharpens an under-confident one).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.uncertainty.base import (
    OutputHead,
    Prediction,
    Predictor,
    classification_prediction,
    network_outputs,
)

# Where the optimum lies at T -> 0 (a validation set classified perfectly: the NLL falls forever
# as the logits sharpen) or T -> inf (labels independent of the logits), an unbounded T would
# make every test error an infinite loss, or every prediction uniform. The NLL is convex in 1/T
# (log-sum-exp of a linear function of 1/T, minus a linear term), so clamping the minimizer to
# this range gives the minimizer over the range, and T = 1 lies inside it.
T_MIN, T_MAX = 1e-2, 1e2


def nll_at(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean NLL of ``labels`` under softmax(logits / temperature), in float64."""
    return F.cross_entropy(logits.double() / temperature, labels.long()).item()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The T in [T_MIN, T_MAX] minimizing the mean NLL of softmax(logits / T); never worse than 1.

    L-BFGS with a strong Wolfe line search on log T (so T stays positive), from T = 1. If the
    result is not finite or its NLL exceeds that of T = 1, T = 1 is returned: temperature
    scaling must never make the validation NLL worse.
    """
    # The logits may come from an inference-mode context (Lightning's test loop); a plain copy
    # made outside it can be saved for backward.
    with torch.inference_mode(False), torch.enable_grad():
        logits = logits.detach().double().clone()
        labels = labels.detach().long().clone()
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [log_t],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
    fitted = min(max(math.exp(log_t.item()), T_MIN), T_MAX)
    nll = nll_at(logits, labels, fitted)
    if not (math.isfinite(fitted) and math.isfinite(nll)) or nll > nll_at(logits, labels, 1.0):
        return 1.0
    return fitted


class TemperatureScaling(Predictor):
    """The first network's logits divided by a temperature fitted on the validation split.

    Without validation data (``val`` absent or empty, as with ``dataset.val_fraction=0``) there
    is nothing to fit on, and T stays 1: the prediction equals the deterministic one.
    """

    prefix = "ts"
    label = "temperature-scaled"

    def __init__(self) -> None:
        self.temperature = 1.0

    def supports(self, head: OutputHead) -> bool:
        return head.classification

    def fit(
        self,
        networks: Sequence[nn.Module],
        head: OutputHead,
        val: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        super().fit(networks, head, val)
        self.temperature = 1.0
        batches = iter(val if val is not None else ())
        first = next(batches, None)
        if first is None:
            return
        labels: list[torch.Tensor] = []

        def inputs() -> Iterable[torch.Tensor]:
            # One pass over ``val``: the labels are kept while the inputs go to the network.
            for x, y in itertools.chain([first], batches):
                labels.append(y.cpu())
                yield x

        logits = network_outputs(self.networks[0], inputs())
        targets = torch.cat(labels)
        if len(targets) > 0:
            self.temperature = fit_temperature(logits, targets)

    def predict(self, batches: Iterable[torch.Tensor]) -> Prediction:
        logits = network_outputs(self.networks[0], batches).double()
        return classification_prediction(logits / self.temperature)

    def summary(self) -> dict[str, float]:
        return {"ts/temperature": self.temperature}
