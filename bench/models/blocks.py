"""Building blocks shared by the models.

Every model is an ``nn.Sequential`` of blocks. Two reasons:
- a caller can run the deterministic prefix once and the stochastic rest many times
  (MC dropout draws T passes; only blocks from the first dropout layer on need repeating);
- dropout positions are marked by ``DropoutSlot`` placeholders, so the rates live in one place
  (the ``dropout`` regularizer) and a model without regularization has no dropout at all.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import ConfigError

SLOT_KINDS = ("input", "dense", "conv")

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


def make_activation(name: str) -> nn.Module:
    """Instantiate an activation by name; a typo names the key and the choices."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class DropoutSlot(nn.Identity):
    """Identity placeholder marking where dropout may go.

    ``kind`` is ``input`` (on the network input), ``dense`` (after a hidden dense layer) or
    ``conv`` (after a conv block, channel-wise). The ``dropout`` regularizer swaps slots for real
    ``nn.Dropout``/``nn.Dropout2d`` modules; unused slots cost nothing.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in SLOT_KINDS:
            raise ValueError(f"DropoutSlot kind must be one of {SLOT_KINDS}, got {kind!r}")
        self.kind = kind

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def is_stochastic(module: nn.Module) -> bool:
    """True if ``module`` contains a dropout layer (any ``torch.nn`` dropout variant)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in module.modules())


def stochastic_prefix_length(model: nn.Sequential) -> int:
    """Number of leading blocks that contain no dropout (deterministic prefix)."""
    for i, block in enumerate(model):
        if is_stochastic(block):
            return i
    return len(model)


def flat_dim(shape: tuple[int, ...]) -> int:
    return int(torch.Size(shape).numel())
