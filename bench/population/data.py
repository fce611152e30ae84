"""A population's data: every member's batches at once, ``(M, B, ...)``.

Members share a dataset configuration and may differ in ``dataset.split_seed``: each distinct
split is one :class:`~bench.data.base.ArrayDataModule`, loaded, split and standardized exactly as
for a single run, and its tensors are stacked ``(S, N, ...)``. Member k reads split
``split_of[k]`` and shuffles with its own generator, seeded like a single run's loader (from the
run's seed), so its batches are the very batches the same job would train on alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import torch

from bench.data.base import ArrayDataModule

Batch = tuple[torch.Tensor, torch.Tensor]


def gather(xs: torch.Tensor, split_of: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx[k]`` of split ``split_of[k]`` for every member k: ``(M, b, ...)``.

    One ``index_select`` over the flattened ``(S·N, ...)`` tensors (see bench/data/batches.py
    for why not advanced indexing)."""
    n = xs.shape[1]
    flat = (split_of.unsqueeze(1) * n + idx).flatten()
    return xs.flatten(0, 1).index_select(0, flat).view(*idx.shape, *xs.shape[2:])


class PopulationBatches:
    """Training batches: member k's pass is ``randperm(N, generator=generators[k])`` cut into
    batches, as :class:`~bench.data.batches.TensorBatches` does for one run. Resumable mid-epoch
    (``order_state`` / ``restore_order``) the same way: the pass is redrawn from the generators'
    states at its start and the batches already trained on are skipped."""

    def __init__(
        self,
        xs: torch.Tensor,
        ys: torch.Tensor,
        split_of: torch.Tensor,
        batch_size: int | None,
        generators: list[torch.Generator],
    ) -> None:
        self.xs, self.ys, self.split_of = xs, ys, split_of
        self.generators = generators
        self.n = xs.shape[1]
        self.batch_size = batch_size or self.n
        self.pass_start: list[torch.Tensor] | None = None
        self._skip = 0

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        self.pass_start = [g.get_state() for g in self.generators]
        orders = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators])
        orders = orders.to(self.xs.device)
        skip, self._skip = self._skip, 0
        for start in range(skip * self.batch_size, self.n, self.batch_size):
            idx = orders[:, start : start + self.batch_size]
            yield gather(self.xs, self.split_of, idx), gather(self.ys, self.split_of, idx)

    def order_state(self, consumed: int | None) -> dict | None:
        # One (M, 5056) tensor, not M small ones: a checkpoint pickles it at once.
        if consumed is not None and 0 < consumed < len(self) and self.pass_start is not None:
            return {"generators": torch.stack(self.pass_start), "skip": consumed}
        return {"generators": torch.stack([g.get_state() for g in self.generators]), "skip": 0}

    def restore_order(self, state: dict | None) -> None:
        if state is None:
            return
        for g, s in zip(self.generators, state["generators"], strict=True):
            g.set_state(s.clone())  # a row of the stack is a view; set_state needs its own
        self._skip = int(state["skip"])


class PopulationEval:
    """A whole split in order, every member on its own copy of it: ``(M, b, ...)`` batches."""

    def __init__(
        self, xs: torch.Tensor, ys: torch.Tensor, split_of: torch.Tensor, batch_size: int
    ) -> None:
        self.xs, self.ys, self.split_of, self.batch_size = xs, ys, split_of, batch_size

    def __len__(self) -> int:
        return math.ceil(self.xs.shape[1] / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        members = len(self.split_of)
        for start in range(0, self.xs.shape[1], self.batch_size):
            x = self.xs[:, start : start + self.batch_size]
            y = self.ys[:, start : start + self.batch_size]
            if x.shape[0] == 1:  # one split: a view, no copies
                yield x.expand(members, *x.shape[1:]), y.expand(members, *y.shape[1:])
            else:
                yield x.index_select(0, self.split_of), y.index_select(0, self.split_of)


class PopulationData(L.LightningDataModule):
    """The Lightning datamodule of a population: ``splits`` (one loaded datamodule per distinct
    ``split_seed``), which split each member reads, and each member's shuffling seed."""

    def __init__(
        self, splits: list[ArrayDataModule], split_of: list[int], seeds: list[int]
    ) -> None:
        super().__init__()
        self.splits = splits
        self.split_of = torch.tensor(split_of, dtype=torch.long)
        self.seeds = seeds
        self.batch_size = splits[0].batch_size
        self.eval_batch_size = splits[0].eval_batch_size
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._resume_order: dict | None = None

    @property
    def members(self) -> int:
        return len(self.seeds)

    def setup(self, stage: str | None = None) -> None:
        if self.tensors:
            return
        for dm in self.splits:
            dm.setup("fit")
        device = self._device()
        for split in ("train", "val"):
            sizes = {len(dm.tensors[split][0]) for dm in self.splits}
            if len(sizes) > 1:  # the batcher groups splits of one configuration: equal sizes
                raise ValueError(f"members' {split} splits differ in size: {sorted(sizes)}")
            xs = torch.stack([dm.tensors[split][0] for dm in self.splits]).to(device)
            ys = torch.stack([dm.tensors[split][1] for dm in self.splits]).to(device)
            self.tensors[split] = (xs, ys)
        self.split_of = self.split_of.to(device)

    def _device(self) -> torch.device:
        trainer = self.trainer
        if trainer is not None and trainer.strategy.root_device.type == "cuda":
            return trainer.strategy.root_device
        return torch.device("cpu")

    def target_stds(self) -> torch.Tensor:
        """Each member's regression target scale (1 for classification), ``(M,)``."""
        stds = torch.tensor([float(dm.target_std) for dm in self.splits], dtype=torch.float64)
        return stds[self.split_of.cpu()]

    def train_dataloader(self) -> PopulationBatches:
        # Seeded like ArrayDataModule.train_dataloader: from the run's seed (initial_seed there).
        generators = [torch.Generator().manual_seed(int(s)) for s in self.seeds]
        xs, ys = self.tensors["train"]
        loader = PopulationBatches(xs, ys, self.split_of, self.batch_size, generators)
        if self._resume_order is not None:
            loader.restore_order(self._resume_order)
            self._resume_order = None
        return loader

    def resume_order(self, state: dict | None) -> None:
        self._resume_order = state

    def val_dataloader(self) -> PopulationEval:
        xs, ys = self.tensors["val"]
        return PopulationEval(xs, ys, self.split_of, self.eval_batch_size)
