"""Batches of an in-memory datamodule's splits: the loaders Lightning asks for, and bagging.

A mixin of :class:`~bench.data.base.ArrayDataModule`, which holds the split tensors
(``tensors``), the batch sizes and ``in_memory``/``num_workers``; here they become batches —
:class:`~bench.data.batches.TensorBatches` indexing the tensors on the training device, or a
standard ``DataLoader`` — shuffled by a generator seeded from torch's global seed, sharded per
rank under DDP for training and validation, and optionally drawn from a bootstrap resample of
the training split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench.data.batches import TensorBatches, make_loader, restore_order
from bench.data.checks import is_int
from bench.data.splits import bootstrap_indices


class TensorLoaders:
    """Loaders and bagging for a datamodule with ``tensors``, ``n_train``, ``batch_size``,
    ``eval_batch_size``, ``in_memory``, ``num_workers``, ``bootstrap_seed``, ``_resume_order``
    and (from Lightning) ``trainer``."""

    # ------------------------------------------------------------------ bagging

    def set_bootstrap(self, seed: int | None) -> None:
        """Train on a bootstrap resample of the training split (bagging), or ``None``: on the
        split itself.

        With a seed, :meth:`train_dataloader` visits ``n_train`` indices drawn with replacement,
        fixed by ``seed`` (an ensemble gives member k its own seed); the batch order still comes
        from the global torch seed. Evaluation loaders, ``train`` included, are not resampled.
        """
        if seed is not None and not (is_int(seed) and seed >= 0):
            raise ValueError(f"{self.name}: a bootstrap seed is None or an int >= 0; got {seed!r}")
        self.bootstrap_seed = seed

    def bootstrap_indices(self) -> np.ndarray | None:
        """Indices into the training split that one training epoch visits (None: all, once)."""
        if self.bootstrap_seed is None:
            return None
        return bootstrap_indices(self.n_train, self.bootstrap_seed)

    # ------------------------------------------------------------------ loaders

    def train_dataloader(self) -> TensorBatches | DataLoader:
        """Shuffled training batches; the order is fixed by the global torch seed.

        The generator is seeded from ``torch.initial_seed()`` here, so ``L.seed_everything(s)``
        fixes the order of every epoch, while the split stays fixed by ``split_seed``. Under
        distributed training all ranks must draw the same permutation (each keeps its own slice),
        so rank 0's seed is broadcast in case the processes were seeded differently.
        """
        seed = torch.initial_seed()
        if self.trainer is not None and self.trainer.world_size > 1:
            seed = self.trainer.strategy.broadcast(seed, src=0)
        generator = torch.Generator().manual_seed(seed)
        loader = self._loader("train", self.batch_size, generator, indices=self.bootstrap_indices())
        if self._resume_order is not None:  # a resumed run continues the saved order
            restore_order(loader, self._resume_order)
            self._resume_order = None
        return loader

    def resume_order(self, state: dict | None) -> None:
        """The data order the next ``train_dataloader`` continues (from a checkpoint)."""
        self._resume_order = state

    def val_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("val", self.eval_batch_size)

    def test_dataloader(self) -> TensorBatches | DataLoader:
        return self._loader("test", self.eval_batch_size)

    def train_eval_dataloader(self) -> TensorBatches | DataLoader:
        """The whole training split in order, for measuring the empirical risk in eval mode."""
        return self.eval_dataloader("train")

    def eval_dataloader(self, split: str) -> TensorBatches | DataLoader:
        """The whole of ``split`` in order, never sharded across ranks: the final evaluation
        runs on one process and must see every sample (val/test loaders shard under DDP)."""
        return self._loader(split, self.eval_batch_size, shard=False)

    def _loader(
        self,
        split: str,
        batch_size: int | None,
        generator: torch.Generator | None = None,
        shard: bool = True,
        indices: np.ndarray | None = None,
    ) -> TensorBatches | DataLoader:
        if not self.is_loaded:
            raise RuntimeError(f"{self.name}: call setup() before asking for a dataloader")
        trainer = self.trainer
        if trainer is None or not shard:
            rank, world_size = 0, 1
        else:
            rank, world_size = trainer.global_rank, trainer.world_size
        x, y = self.tensors[split]
        return make_loader(
            x, y, batch_size, generator, rank=rank, world_size=world_size, indices=indices,
            in_memory=self.in_memory, num_workers=self.num_workers,
        )  # fmt: skip
