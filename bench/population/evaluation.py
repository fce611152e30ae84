"""The members' evaluation forward passes, batched over the population.

Each member is scored by the single run's code (``bench.finish.record_run``): same predictors,
metrics and files. What that code spends its time on, once the metrics are cheap, is running the
network over every evaluation set (train/val/test, OOD partners, each corrupted test set) — and
the temperature predictor runs the deterministic one's passes again. :class:`SharedOutputs`
answers a member network's eval-mode forward from one pass of the *stacked* network over the same
input for all members, computed the first time any member asks and kept for the others (keyed by
the input's content, so a shifted set built anew for each member still matches).

Only deterministic (eval-mode) passes are shared: with any layer in training mode (MC dropout's
sampling) a member runs its own network, as a single run does. The cache is bounded
(``limit_mb``); past it a member's passes are its own again.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable

import torch
from torch import nn

Key = tuple[tuple[int, ...], str, str, str]


def content_key(x: torch.Tensor) -> Key:
    """Shape, dtype, device and a digest of the values: equal inputs, equal keys."""
    data = x.detach().contiguous().cpu().numpy().tobytes()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return tuple(x.shape), str(x.dtype), str(x.device), digest


class SharedOutputs:
    """Eval-mode outputs of all members of ``network`` (stacked) per evaluation input."""

    def __init__(self, network: nn.Module, limit_mb: float = 1024) -> None:
        self.network = network.eval()
        self.members = int(network.members)
        self.limit = limit_mb * 2**20
        self.cache: dict[Key, torch.Tensor] = {}
        self.used = 0
        self.full = False
        self.passes = 0  # stacked passes run (each serves every member)
        self._originals: dict[int, Callable] = {}
        self._pending = set(range(self.members))  # members not yet scored: keep the cache

    @torch.no_grad()
    def outputs(self, k: int, x: torch.Tensor) -> torch.Tensor | None:
        """Member k's output on ``x``, or None when the cache is full (run it alone)."""
        key = content_key(x)
        out = self.cache.get(key)
        if out is None:
            if self.full:
                return None
            out = self.network(x.unsqueeze(0).expand(self.members, *x.shape))
            self.passes += 1
            if self.used + out.nbytes > self.limit:
                self.full = True  # this one still serves member k; the rest run alone
                return out[k]
            self.cache[key] = out
            self.used += out.nbytes
        return out[k]

    def attach(self, k: int, network: nn.Module) -> None:
        """Serve member k's ``network`` eval-mode forward passes from the shared outputs."""
        original = network.forward
        self._originals[k] = original

        def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            if any(m.training for m in module.modules()):  # MC dropout sampling: its own pass
                return original(x)
            out = self.outputs(k, x)
            return original(x) if out is None else out

        network.forward = types.MethodType(forward, network)

    def detach(self, k: int, network: nn.Module) -> None:
        """Member k's network back to its own forward; the cache goes once every member has
        been scored (members are scored one after another: it must outlive each of them)."""
        if self._originals.pop(k, None) is not None:
            del network.forward  # the instance attribute set by attach
        self._pending.discard(k)
        if not self._pending:
            self.cache.clear()
            self.used, self.full = 0, False
