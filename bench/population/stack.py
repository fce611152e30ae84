"""M networks of one architecture as one network with a leading member axis.

``stack`` turns M ``nn.Sequential`` models that differ only in their weights (and dropout rates)
into one whose every parameter is ``(M, ...)`` and whose input and output are ``(M, B, ...)``:
one batched matmul (``baddbmm``) or grouped convolution per layer trains all M at once.
The layers are translated one for one, so the architecture is still written once (``bench/models``)
and ``unstack`` copies each member's weights back into its own network, names unchanged, for
evaluation, records and checkpoints.

Batched layers rather than ``torch.func.vmap`` over ``functional_call``: per-member dropout
rates (a member with p = 0 keeps its identity slot) would need a rate buffer inside torch's own
``nn.Dropout``, and the layers here are a few lines each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.blocks import DropoutSlot
from bench.models.masks import keep_mask

ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.ELU, nn.SiLU, nn.Sigmoid, nn.Identity)
PER_SAMPLE = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
DROPOUT = (nn.Dropout, nn.Dropout2d)


class NotStackable(ValueError):
    """A layer with no population form (batch norm, say): such runs train one at a time."""


class MemberLinear(nn.Module):
    """M ``nn.Linear`` layers: ``x (M, B, in) → (M, B, out)``."""

    unit_layer = True  # one row per output unit after the member axis (max-norm)

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        has_bias = layers[0].bias is not None
        self.bias = (
            nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))
            if has_bias
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class MemberConv2d(nn.Module):
    """M ``nn.Conv2d`` layers as one grouped convolution: ``(M, B, C, H, W) → (M, B, O, …)``."""

    unit_layer = True

    def __init__(self, layers: list[nn.Conv2d]) -> None:
        super().__init__()
        first = layers[0]
        if first.groups != 1 or first.padding_mode != "zeros":
            raise NotStackable("grouped or non-zero-padded convolutions")
        self.members = len(layers)
        self.options = dict(stride=first.stride, padding=first.padding, dilation=first.dilation)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = (
            nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))
            if first.bias is not None
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b = x.shape[:2]
        grouped = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])  # (B, M·C, H, W)
        weight = self.weight.flatten(0, 1)  # (M·O, C, k, k)
        bias = None if self.bias is None else self.bias.flatten()
        out = F.conv2d(grouped, weight, bias, groups=m, **self.options)
        return out.view(b, m, -1, *out.shape[2:]).transpose(0, 1)


class PerSample(nn.Module):
    """A layer that acts on each sample alone (pooling), applied to ``(M·B, ...)``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class MemberDropout(nn.Module):
    """Inverted dropout with one rate per member (``nn.Dropout`` / ``nn.Dropout2d`` semantics:
    unit-wise, or whole feature maps with ``maps``); a member with p = 0 is left untouched."""

    def __init__(self, rates: list[float], maps: bool) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(rates, dtype=torch.float64))
        self.maps = maps
        self.same = len(set(rates)) == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.device.type == "cpu" and not self.maps and bool((self.p < 1).all()):
            # numpy-drawn masks, 2-3x faster than torch's CPU bernoulli (bench/models/masks.py)
            keep = (1 - self.p).view(-1, *([1] * (x.ndim - 1)))
            return x * keep_mask(tuple(x.shape), keep, x)
        if self.same:  # one rate: torch's own kernel on the whole population
            p = float(self.p[0])
            return (
                F.dropout2d(x.flatten(0, 1), p).unflatten(0, x.shape[:2])
                if self.maps
                else F.dropout(x, p)
            )
        shape = (*x.shape[:3], *([1] * (x.ndim - 3))) if self.maps else x.shape
        keep = (1 - self.p).to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1)))
        scale = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep.expand(shape))
        return x * scale.div_(keep)  # kept units scaled by 1/(1 − p), as nn.Dropout does

    def extra_repr(self) -> str:
        return f"p={self.p.tolist()}, maps={self.maps}"


def stack(models: list[nn.Module]) -> nn.Module:
    """One population network from M networks of the same architecture (weights copied)."""
    first = models[0]
    if any(isinstance(m, DROPOUT) for m in models):  # rates differ, some may be 0 (a slot)
        if not all(isinstance(m, (*DROPOUT, DropoutSlot)) for m in models):
            raise NotStackable("members disagree on a layer")
        rates = [float(m.p) if isinstance(m, DROPOUT) else 0.0 for m in models]
        return MemberDropout(rates, maps=any(isinstance(m, nn.Dropout2d) for m in models))
    if len({type(m) for m in models}) != 1:
        raise NotStackable("members disagree on a layer")
    if isinstance(first, nn.Sequential):
        stacked = nn.Sequential(*(stack([m[i] for m in models]) for i in range(len(first))))
        return stacked
    if isinstance(first, nn.Linear):
        return MemberLinear(models)
    if isinstance(first, nn.Conv2d):
        return MemberConv2d(models)
    if isinstance(first, nn.Flatten):
        if first.end_dim != -1:
            raise NotStackable("nn.Flatten with an end_dim")
        return nn.Flatten(start_dim=first.start_dim + 1)
    if isinstance(first, (DropoutSlot, *ELEMENTWISE)):
        return first
    if isinstance(first, PER_SAMPLE):
        return PerSample(first)
    raise NotStackable(f"no population form for {type(first).__name__}")


def stack_networks(models: list[nn.Sequential]) -> nn.Sequential:
    """``stack`` plus the marker (``members``) the regularizers' helpers read."""
    network = stack(models)
    network.members = len(models)
    return network


@torch.no_grad()
def unstack(network: nn.Module, models: list[nn.Module]) -> None:
    """Member k's weights into ``models[k]`` (same parameter names, member axis dropped), in the
    population's dtype and device (a float64 population evaluates its members in float64)."""
    stacked = dict(network.named_parameters())
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            p.data = stacked[name][k].detach().clone()


@torch.no_grad()
def restack(network: nn.Module, models: list[nn.Module]) -> None:
    """Write every member's final weights (best weights restored) back into the stack."""
    stacked = dict(network.named_parameters())
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            stacked[name].data[k].copy_(p.data)


def bind(network: nn.Module, models: list[nn.Module]) -> None:
    """Make ``models[k]``'s parameters views of member k's slice of the population's: the
    single-run code that reads a network (a regularizer's ``log_values``) sees each member's
    current weights without a copy. Call after the population reached its device and dtype."""
    stacked = dict(network.named_parameters())
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            p.data = stacked[name].data[k]
