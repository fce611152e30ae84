"""Networks as ordered sequences of blocks (see ``blocks.py`` for why)."""

from bench.models.blocks import DropoutSlot, stochastic_prefix_length

__all__ = ["DropoutSlot", "stochastic_prefix_length"]
