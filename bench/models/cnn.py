"""LeNet-style CNN for 8×8 up to 32×32 images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bench.errors import ConfigError
from bench.models.blocks import DropoutSlot, make_activation


class CNN(nn.Sequential):
    """Blocks: [input slot] → [conv 3×3, act, maxpool 2, conv slot] × len(channels)
    → [flatten, linear, act, dense slot] → linear head.

    3×3 convolutions with padding keep 8×8 digits usable (two pools leave 2×2 maps).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        activation: str = "relu",
    ) -> None:
        if len(input_shape) != 3:
            raise ConfigError(
                f"model=cnn needs image inputs (C, H, W), got shape {tuple(input_shape)}"
            )
        c, h, w = (int(s) for s in input_shape)
        if min(h, w) < 2 ** len(channels):
            raise ConfigError(
                f"model.channels has {len(channels)} pooling stages, too many for {h}×{w} images"
            )
        blocks: list[nn.Module] = [DropoutSlot("input")]
        for out_c in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c, int(out_c), kernel_size=3, padding=1),
                    make_activation(activation),
                    nn.MaxPool2d(2),
                    DropoutSlot("conv"),
                )
            )
            c, h, w = int(out_c), h // 2, w // 2
        blocks.append(
            nn.Sequential(
                nn.Flatten(),
                nn.Linear(c * h * w, hidden),
                make_activation(activation),
                DropoutSlot("dense"),
            )
        )
        blocks.append(nn.Linear(hidden, num_outputs))
        super().__init__(*blocks)
