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

    Resuming mid-epoch (:meth:`order_state`, :meth:`restore_order`): the pass's permutation is
    drawn again from the generator state it started from and the batches already trained on
    are skipped, so a resumed run sees exactly the batches an uninterrupted one would.
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
        self.pass_start: torch.Tensor | None = None  # generator state before this pass's order
        self._skip = 0  # batches of the next pass already trained on (a resumed run)

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
            self.pass_start = self.generator.get_state()
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
        skip, self._skip = self._skip, 0
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            # index_select, not x[idx]: the same rows, ~55 µs less per batch (advanced
            # indexing's generic path), which is 3–5% of a digits MLP step.
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)

    def order_state(self, consumed: int | None) -> dict[str, torch.Tensor | int] | None:
        """Where the data order stands after training consumed ``consumed`` batches of the
        current pass (None: the pass is complete). Lightning fetches a batch ahead of training,
        so the caller, not this iterator, knows how many batches were trained on."""
        if self.generator is None:
            return None
        if consumed is not None and 0 < consumed < len(self) and self.pass_start is not None:
            return {"generator": self.pass_start.clone(), "skip": consumed}
        return {"generator": self.generator.get_state(), "skip": 0}

    def restore_order(self, state: dict[str, torch.Tensor | int] | None) -> None:
        """Continue the order saved by :meth:`order_state` (before the first pass is drawn)."""
        if state is None or self.generator is None:
            return
        self.generator.set_state(state["generator"])
        self._skip = int(state["skip"])


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


def order_state(loader: TensorBatches | DataLoader, consumed: int | None) -> dict | None:
    """The data order of either kind of training loader, to save in a checkpoint.

    A ``DataLoader`` (``in_memory=false``) cannot skip batches, so it resumes only at epoch
    boundaries: mid-epoch it reports None and the caller keeps its last epoch-end checkpoint.
    """
    if hasattr(loader, "order_state"):  # TensorBatches, or a population's batches
        return loader.order_state(consumed)
    generator = getattr(loader, "generator", None)
    if generator is None or (consumed is not None and 0 < consumed < len(loader)):
        return None
    return {"generator": generator.get_state(), "skip": 0}


def restore_order(loader: TensorBatches | DataLoader, state: dict | None) -> None:
    if isinstance(loader, TensorBatches):
        loader.restore_order(state)
    elif state is not None and getattr(loader, "generator", None) is not None:
        loader.generator.set_state(state["generator"])
