"""One regularizer object per method for a whole population, its hyperparameters as vectors.

Each member built its own regularizers from its own config (validated as for a single run).
``stack_regularizers`` keeps member 0's objects and replaces every float hyperparameter that
differs between members by the ``(M,)`` vector of the members' values, which the regularizer's
own hooks broadcast over the member axis (``bench.regularizers.base.per_member``). Values shared
by all members stay floats: the population runs the single run's arithmetic for them.
"""

from __future__ import annotations

import copy
import numbers

import torch

from bench.regularizers.base import Regularizer


def stack_regularizers(members: list[list[Regularizer]]) -> list[Regularizer]:
    """``members[k]`` are member k's regularizers (same classes, same order in every member)."""
    stacked = []
    for regs in zip(*members, strict=True):
        first = regs[0]
        if len({type(r) for r in regs}) != 1:
            raise ValueError(f"members disagree on regularizer {first.name}")
        if first.population == "per_member":
            stacked.append(MemberLoop(list(regs)))
            continue
        reg = copy.copy(first)
        for key, value in vars(first).items():
            if not _is_float(value):
                continue
            values = [getattr(r, key) for r in regs]
            if len(set(values)) > 1:
                setattr(reg, key, torch.tensor(values, dtype=torch.float64))
        stacked.append(reg)
    return stacked


class MemberLoop(Regularizer):
    """A batch transform with no batched form (mixup, cutmix, augment) run member by member,
    each member's slice of the batch through that member's own object: its own α, its own draws,
    and its own ``log_values`` afterwards. No second copy of the method's maths; the cost is a
    Python loop over members per step."""

    def __init__(self, members: list[Regularizer]) -> None:
        self.members = members
        self.name = members[0].name
        self.transform_order = members[0].transform_order

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [reg.transform_batch(x[k], y[k]) for k, reg in enumerate(self.members)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _is_float(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | int)
