"""Regularizers: one module per method, each a ``Regularizer`` (see ``base.py``)."""

from bench.regularizers.base import Regularizer, regularized_parameters, sparsity

__all__ = ["Regularizer", "regularized_parameters", "sparsity"]
