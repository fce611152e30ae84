"""Multi-layer perceptron with a dropout slot on the input and after every hidden layer."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bench.errors import ConfigError
from bench.models.blocks import DropoutSlot, flat_dim, make_activation


class MLP(nn.Sequential):
    """Blocks: [flatten, input slot] → [linear, act, dense slot] × len(widths) → linear head."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        widths: Sequence[int] = (256, 256),
        activation: str = "relu",
    ) -> None:
        if not widths or any(int(w) < 1 for w in widths):
            raise ConfigError(
                f"model.widths must be a non-empty list of positive ints, got {widths}"
            )
        blocks: list[nn.Module] = [nn.Sequential(nn.Flatten(), DropoutSlot("input"))]
        fan_in = flat_dim(tuple(input_shape))
        for width in widths:
            blocks.append(
                nn.Sequential(
                    nn.Linear(fan_in, int(width)), make_activation(activation), DropoutSlot("dense")
                )
            )
            fan_in = int(width)
        blocks.append(nn.Linear(fan_in, num_outputs))
        super().__init__(*blocks)
