"""Linear model: logistic regression (classification) or linear regression."""

from __future__ import annotations

from torch import nn

from bench.models.blocks import flat_dim


class Linear(nn.Sequential):
    """Flatten → affine map. No dropout slots: dropout on a linear model is refused."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int) -> None:
        super().__init__(
            nn.Sequential(nn.Flatten()),
            nn.Linear(flat_dim(tuple(input_shape)), num_outputs),
        )
