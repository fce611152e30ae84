"""Non-finite loss detection without a host–device synchronisation on every step.

``bool(torch.isfinite(loss))`` on every step stalls a GPU until the step has run. Here the
first non-finite step is noted on the device (``torch.where`` with Python scalars: no copy, no
sync) and read back every ``every`` steps and at epoch end — still stopping within one check,
and recording the step where the loss first went non-finite. On CPU, where reading a scalar
costs nothing, ``every`` is 1 and the offending step is also skipped, so the weights stay
finite; on an accelerator the steps up to the check may update the weights with non-finite
gradients (the run is recorded as diverged either way).
"""

from __future__ import annotations

import torch

# Steps between checks on an accelerator when the config says null.
ACCELERATOR_EVERY = 50


def check_every(setting: int | None, device: torch.device) -> int:
    """The configured interval, or 1 on CPU and :data:`ACCELERATOR_EVERY` elsewhere."""
    if setting is not None:
        return int(setting)
    return 1 if device.type == "cpu" else ACCELERATOR_EVERY


class DivergenceWatch:
    """Remembers, on the loss's device, the (epoch, step) of the first non-finite loss."""

    def __init__(self) -> None:
        self._step: torch.Tensor | None = None  # -1 until a non-finite loss is seen
        self._epoch: torch.Tensor | None = None

    def note(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        if self._step is None:
            self._step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._epoch = torch.full((), -1, dtype=torch.long, device=loss.device)
        first = bad & (self._step < 0)
        self._step = torch.where(first, step, self._step)
        self._epoch = torch.where(first, epoch, self._epoch)

    def first(self) -> tuple[int, int] | None:
        """(epoch, step) of the first non-finite loss noted, or None — one device read."""
        if self._step is None:
            return None
        step, epoch = torch.stack([self._step, self._epoch]).tolist()  # one read, not two
        return None if step < 0 else (epoch, step)

    def reset(self) -> None:
        self._step = self._epoch = None
