"""Early stopping per member of a population, by the single run's own rule.

Each member's ``early_stopping`` regularizer builds the same Lightning ``EarlyStopping`` and
``RestoreBest`` pair it gives a single run (``EarlyStopping.callbacks``); this class feeds each
stopper its member's validation value every epoch through the stopper's own decision method, so
"improved", "patience exhausted" and "not finite" mean exactly what they mean for one run, and
keeps each member's best weights. The regularizer's ``summary`` then reports ``best_epoch`` and
``stopped_epoch`` from the same objects as for a single run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.regularizers.base import Regularizer
from bench.regularizers.early_stopping import EarlyStopping


class MemberStopping:
    """The early stoppers of M members (None for a member without ``early_stopping``)."""

    def __init__(self, member_regularizers: list[list[Regularizer]]) -> None:
        self.members: list[EarlyStopping | None] = []
        for regs in member_regularizers:
            reg = next((r for r in regs if isinstance(r, EarlyStopping)), None)
            if reg is not None:
                reg.callbacks()  # creates reg.stopper and reg.restorer, as for a single run
            self.members.append(reg)
        self.best: list[dict[str, torch.Tensor] | None] = [None] * len(self.members)

    def check(
        self, epoch: int, val: dict[str, torch.Tensor], active: torch.Tensor, network: nn.Module
    ) -> torch.Tensor:
        """This epoch's decision for every active member; True where a member stops now."""
        stop = torch.zeros(len(self.members), dtype=torch.bool)
        for k, reg in enumerate(self.members):
            if reg is None or not bool(active[k]) or reg.monitor not in val:
                continue
            stopper, restorer = reg.stopper, reg.restorer
            before = float(stopper.best_score)
            # Lightning's own decision (private, but it is the rule a single run uses: no copy).
            should_stop, _ = stopper._evaluate_stopping_criteria(val[reg.monitor][k].squeeze())
            if float(stopper.best_score) != before:  # an improvement: RestoreBest's snapshot
                restorer.best_epoch = epoch + 1
                restorer._seen_best = float(stopper.best_score)
                self.best[k] = {
                    name: p[k].detach().to("cpu", copy=True)
                    for name, p in network.named_parameters()
                }
            if should_stop:
                stopper.stopped_epoch = epoch
                stop[k] = True
        return stop

    def log_values(self) -> dict[str, torch.Tensor]:
        """``early_stopping/best_epoch`` and ``wait_count`` per member (NaN for members without
        early stopping or, for best_epoch, before their first improvement), as RestoreBest
        logs them for a single run."""
        regs = [(k, reg) for k, reg in enumerate(self.members) if reg is not None]
        if not regs:
            return {}
        name = regs[0][1].name
        best = torch.full((len(self.members),), float("nan"), dtype=torch.float64)
        wait = best.clone()
        for k, reg in regs:
            if reg.restorer.best_epoch is not None:
                best[k] = float(reg.restorer.best_epoch)
            wait[k] = float(reg.stopper.wait_count)
        return {f"{name}/best_epoch": best, f"{name}/wait_count": wait}

    def restore_best(self, k: int, model: nn.Module) -> None:
        """Member k's best weights into its own network (``RestoreBest.on_fit_end``)."""
        best = self.best[k]
        if best is None:
            return
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(best[name].to(p.device, p.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {
            "stoppers": [None if reg is None else reg.stopper.state_dict() for reg in self.members],
            "restorers": [
                None if reg is None else reg.restorer.state_dict() for reg in self.members
            ],
            "best": self.best,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for reg, s, r in zip(self.members, state["stoppers"], state["restorers"], strict=True):
            if reg is not None:
                reg.stopper.load_state_dict(s)
                reg.restorer.load_state_dict(r)
        self.best = state["best"]
