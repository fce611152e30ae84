"""Dropout (Srivastava et al., 2014), inverted: in training each unit is kept with probability
1 − p and scaled by 1/(1 − p), so E[h̃] = h and evaluation needs no rescaling (identity).

The models mark where dropout may go with ``DropoutSlot`` placeholders; this regularizer swaps
them for torch's own ``nn.Dropout`` (input and dense slots, unit-wise) and ``nn.Dropout2d``
(conv slots: whole feature maps — neighbouring pixels of one map are strongly correlated, so
unit-wise masks on them barely regularize; Tompson et al., 2015). There is never a slot after
the output layer, so the predictions themselves are never masked.

With ``mc`` (the default) a run with dropout also gets Monte Carlo dropout at evaluation
(``bench.callbacks.mc_dropout``): the network was trained as a sampler, so its samples come free.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from bench.callbacks.mc_dropout import MCDropoutCallback
from bench.errors import ConfigError
from bench.models.blocks import DropoutSlot
from bench.regularizers.base import Regularizer


class Dropout(Regularizer):
    name = "dropout"
    population = True  # rates become per-member layers when the networks are stacked

    def __init__(
        self, p_input: float = 0.0, p_dense: float = 0.5, p_conv: float = 0.1, mc: bool = True
    ) -> None:
        if not isinstance(mc, bool):
            raise ConfigError(f"{self.key('mc')} must be true or false, got {mc!r}")
        self.mc = mc
        self.rates = {
            "input": self._rate("p_input", p_input),
            "dense": self._rate("p_dense", p_dense),
            "conv": self._rate("p_conv", p_conv),
        }
        self.counters = {kind: DropCounter() for kind in self.rates}
        self.kinds = set(self.rates)  # the slot kinds the model has (setup narrows it)

    def _rate(self, field: str, value: Any) -> float:
        try:
            p = float(value)
        except (TypeError, ValueError):
            p = float("nan")
        if isinstance(value, bool) or not 0.0 <= p < 1.0:
            raise ConfigError(f"{self.key(field)} must be a number in [0, 1), got {value!r}")
        return p

    def setup(self, datamodule: L.LightningDataModule, model: nn.Module) -> None:
        self.kinds = {m.kind for m in model.modules() if isinstance(m, DropoutSlot)}
        if not self.kinds:
            raise ConfigError(
                f"regularizer {self.name} does not apply to model={type(model).__name__.lower()}: "
                "it has no dropout positions"
            )

    def layer(self, kind: str) -> nn.Module | None:
        """The dropout layer for a slot of ``kind``, or None (slot stays identity) when p = 0."""
        p = self.rates[kind]
        if p == 0.0:
            return None
        return nn.Dropout2d(p) if kind == "conv" else nn.Dropout(p)

    def configure_model(self, model: nn.Sequential) -> nn.Sequential:
        slots = [(name, m) for name, m in model.named_modules() if isinstance(m, DropoutSlot)]
        for name, slot in slots:
            layer = self.layer(slot.kind)
            if layer is None:
                continue
            layer.register_forward_hook(self.counters[slot.kind])
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer)
        return model

    def callbacks(self) -> list[L.Callback]:
        """MC dropout with its defaults (``+callbacks=mc_dropout`` overrides them). Not when every
        rate the model uses is 0 (an MLP has no conv slots): that run has no dropout to sample (a
        sweep's p = 0 point), nothing to refuse."""
        if self.mc and any(self.rates[kind] > 0 for kind in self.kinds):
            return [MCDropoutCallback()]
        return []

    def log_values(self, model: nn.Module) -> dict[str, float]:
        """Realized fraction of (non-zero) units dropped per slot kind during the last epoch."""
        values = {
            f"drop_rate/{kind}": counter.rate()
            for kind, counter in self.counters.items()
            if counter.has_counts()
        }
        for counter in self.counters.values():
            counter.reset()
        return values


class DropCounter:
    """Forward hook counting the units a dropout layer zeroed, to log the realized drop rate.

    A unit that was already 0 (after a ReLU) cannot be seen to be dropped, so it counts among
    the non-zero inputs only; the mask is drawn independently of them, so the fraction still
    estimates p. Counts stay tensors on the layer's device: counting never forces a GPU sync.
    (A class, not a closure, so that a model carrying the hook can still be pickled.)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seen: torch.Tensor | int = 0
        self.dropped: torch.Tensor | int = 0

    def __call__(
        self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor
    ) -> None:
        # Training passes only: MC dropout's sampling passes (layers in train mode, no autograd)
        # would otherwise mix into the logged rate and pay for the counting.
        if not (layer.training and torch.is_grad_enabled()):
            return
        with torch.no_grad():
            live = inputs[0] != 0
            self.seen = self.seen + live.sum()
            self.dropped = self.dropped + (live & (out == 0)).sum()

    def has_counts(self) -> bool:
        return float(self.seen) > 0

    def rate(self) -> float:
        return float(self.dropped) / float(self.seen)
