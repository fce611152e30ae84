"""regbench: benchmark regularizers and uncertainty with Lightning + Hydra."""

__version__ = "0.1.0"
