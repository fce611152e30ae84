"""The baseline of figures 9 and 10: a UCI population trained by a hand-written batched loop.

What a user who knows the trick writes without a framework: the members' weights stacked
``(M, out, in)``, one ``torch.baddbmm`` per layer for all of them, inverted dropout with one rate
per member, each member's L2 strength, one Adam over the stacked tensors, each member's own
split, shuffling generator and initial weights, a validation pass every epoch. Its inputs are
prepared (untimed) from the members' own configs, datamodules and networks, so that both sides
train the very same networks on the very same batches; ``perf.population`` checks that they do.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig


class HandLoop:
    """The population's maths with no framework, on tensors prepared (untimed) from the
    members' own datamodules and initial networks. Written for what ``perf.population``
    trains: regression (MSE), a relu MLP, ``regularizer=[dropout,l2]`` with ``p_input=0``."""

    def __init__(self, configs: list[DictConfig], device: str) -> None:
        from hydra.utils import instantiate

        from bench.build import build, build_network

        data: dict[int, Any] = {}  # split_seed → its loaded datamodule
        linears = []
        for cfg in configs:
            split = int(cfg.dataset.split_seed)
            if split not in data:
                data[split] = build(cfg.dataset, "dataset")
                data[split].setup("fit")
            net, _ = build_network(cfg, data[split], int(cfg.seed))
            linears.append([m for m in net.modules() if isinstance(m, torch.nn.Linear)])
        dev, splits = torch.device(device), [int(c.dataset.split_seed) for c in configs]
        self.split_of = torch.tensor([list(data).index(s) for s in splits], device=dev)

        def stacked(split: str, i: int) -> torch.Tensor:  # (S, N, ...) over the distinct splits
            return torch.stack([dm.tensors[split][i] for dm in data.values()]).to(dev)

        self.x, self.y = stacked("train", 0), stacked("train", 1)
        self.xv, self.yv = stacked("val", 0)[self.split_of], stacked("val", 1)[self.split_of]
        self.target_var = torch.tensor([data[s].target_std ** 2 for s in splits]).double()
        self.params = [torch.stack([getattr(ls[i], name).detach() for ls in linears]).to(dev)
                       for i in range(len(linears[0])) for name in ("weight", "bias")]  # fmt: skip
        regs = [c.regularizer for c in configs]
        self.keep = torch.tensor([1 - r.dropout.p_dense for r in regs], device=dev).view(-1, 1, 1)
        self.strength = torch.tensor([r.l2.strength for r in regs], device=dev)
        self.seeds, self.cfg = [int(c.seed) for c in configs], configs[0]
        self.optimizer = instantiate(self.cfg.optimizer)  # torch.optim.Adam, as the runs build it
        self.epochs, self.batch = int(self.cfg.trainer.max_epochs), int(self.cfg.dataset.batch_size)

    def forward(self, params: list[torch.Tensor], x: torch.Tensor, train: bool) -> torch.Tensor:
        """[linear, relu, dropout]× → linear, every member at once: ``(M, B, in) → (M, B)``."""
        for i in range(0, len(params), 2):
            x = torch.baddbmm(params[i + 1].unsqueeze(1), x, params[i].transpose(1, 2))
            if i + 2 < len(params):
                x = x.relu()
                if train:  # inverted dropout, each member at its own rate
                    x = x * (torch.rand_like(x) < self.keep) / self.keep
        return x[..., 0]

    def fit(self) -> torch.Tensor:
        """Train every member; the last validation MSE of each, in the targets' units."""
        params = [p.clone().requires_grad_() for p in self.params]
        opt = self.optimizer(params=params)
        gens = [torch.Generator().manual_seed(s) for s in self.seeds]  # as each run's loader
        m, n, batch = len(self.seeds), self.x.shape[1], self.batch
        flat_x, flat_y = self.x.flatten(0, 1), self.y.flatten(0, 1)
        offset = (self.split_of * n).unsqueeze(1)  # member k reads rows of its own split
        for _ in range(self.epochs):
            order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(offset.device)
            for start in range(0, n, batch):
                idx = (offset + order[:, start : start + batch]).flatten()
                x = flat_x.index_select(0, idx).view(m, -1, flat_x.shape[-1])
                y = flat_y.index_select(0, idx).view(m, -1)
                l2 = sum((w**2).sum((1, 2)) for w in params[::2])
                loss = ((self.forward(params, x, True) - y) ** 2).mean(1) + self.strength * l2
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
            with torch.no_grad():  # validation every epoch, as the runs do
                val = ((self.forward(params, self.xv, False) - self.yv) ** 2).mean(1)
        return val.double().cpu() * self.target_var
