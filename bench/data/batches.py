"""Batching by indexing: the whole split lives in two tensors, a batch is ``x[idx], y[idx]``."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset


class TensorBatches:
    """Batches ``(x[idx], y[idx])`` drawn from tensors by index: no per-sample Python work.

    With ``generator`` the order is a fresh permutation on every pass; the generator advances, so
    epochs differ, while the same seed reproduces the same sequence of epochs. The permutation is
    drawn on CPU (a CPU generator cannot drive a CUDA ``randperm``) and then moved to the data.

    ``indices`` (optional) lists the samples one pass visits, in place of every sample once: a
    bootstrap resample repeats some and leaves others out without copying the data.

    Under distributed training each rank takes every ``world_size``-th index. With ``pad=True``
    (training) the index list is first padded by wrapping around, like Lightning's
    ``DistributedSampler``, so every rank runs the same number of steps; otherwise the shards are
    exact (no sample counted twice) and may differ in length by one.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
        indices: torch.Tensor | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.generator = generator
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.indices = indices
        n = self._n_pass()
        self.n_local = len(range(rank, self._n_padded(n), world_size))
        # batch_size None means one batch holding everything (full-batch gradient descent).
        self.batch_size = batch_size or max(self.n_local, 1)

    def _n_pass(self) -> int:
        """Samples one pass visits (before distributed padding)."""
        return len(self.x) if self.indices is None else len(self.indices)

    def _n_padded(self, n: int) -> int:
        if self.pad and self.world_size > 1:
            return math.ceil(n / self.world_size) * self.world_size
        return n

    def __len__(self) -> int:
        return math.ceil(self.n_local / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self._n_pass()
        if self.generator is not None:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        if self.indices is not None:
            order = self.indices.cpu()[order]
        if self.world_size > 1:
            n_pad = self._n_padded(n) - n
            if n_pad:
                order = torch.cat([order, order[:n_pad]])
            order = order[self.rank :: self.world_size]
        order = order.to(self.x.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


def make_loader(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int | None,
    generator: torch.Generator | None = None,
    rank: int = 0,
    world_size: int = 1,
    indices: np.ndarray | None = None,
    in_memory: bool = True,
    num_workers: int = 0,
) -> TensorBatches | DataLoader:
    """Batches of ``(x, y)``: shuffled by ``generator`` (training) or in order (evaluation).

    In memory: :class:`TensorBatches`, sharded by ``rank``/``world_size`` and padded when
    shuffling. Otherwise a plain ``DataLoader`` over CPU copies (Lightning shards it), for
    ``num_workers`` or data that should not sit on the device. ``indices`` (a bootstrap resample,
    say) replaces "every sample once" on both paths.
    """
    if not in_memory:
        dataset = TensorDataset(x.cpu(), y.cpu())
        if indices is not None:
            dataset = Subset(dataset, indices.tolist())  # Subset allows repeated indices
        return DataLoader(
            dataset,
            batch_size=batch_size or max(len(dataset), 1),
            shuffle=generator is not None,
            generator=generator,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )
    index = None if indices is None else torch.from_numpy(indices)
    pad = generator is not None
    return TensorBatches(x, y, batch_size, generator, rank, world_size, pad=pad, indices=index)
