"""Figure 4: MC dropout — regbench's sampler against the three ways a user would write it.

T stochastic passes of one batch (T = 50, batch 256; digits-sized 1×8×8 inputs), four ways, all
returning the raw outputs (T, B, out) as CPU float64 like ``MCDropout.sample``:

    sequential     T full forward passes in a Python loop
    repeat         the whole batch repeated T times, one forward of T·B rows
    prefix-once    the blocks before the first dropout once, the rest on the repeated result
                   (one forward of T·B rows, no memory budget)
    ours           ``MCDropout.sample``: the same split, found and checked by a probe, the
                   remainder in chunks sized by ``memory_mb``

"Ours" is the per-batch path ``MCDropout.predict`` runs for every batch; its one-off planning
(probe passes that find the prefix and size the chunks, once per predicted split) is reported in
``extra``, not timed. Models: the project's CNN with dropout only in its dense head (p_conv = 0),
whose conv blocks form the prefix, and the default MLP (dropout from its first hidden layer on,
so there is little prefix to save). ``run_model`` is shared with figure 7 (resnet18 on a GPU).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from bench.models.cnn import CNN
from bench.models.mlp import MLP
from bench.regularizers.dropout import Dropout
from bench.uncertainty.base import OutputHead
from bench.uncertainty.mc_dropout import MCDropout, random_stream, sampling_mode
from perf.common import Result, alternate

FIGURE = "4 MC dropout"
INPUT_SHAPE = (1, 8, 8)
SAMPLES, BATCH = 50, 256
QUICK_SAMPLES, QUICK_BATCH = 10, 64
BEST_VARIANT = 0.95  # ours ≥ 0.95× every variant, hence ≥ 0.95× the best one measured
CNN_SEQUENTIAL = 4.0  # ours ≥ 4× sequential passes for the CNN with head dropout

VARIANTS = ("sequential", "repeat", "prefix-once")
Sampler = Callable[[], torch.Tensor]


def head_dropout_models(input_shape: tuple[int, ...] = INPUT_SHAPE) -> dict[str, nn.Sequential]:
    """The CNN with dropout in its dense head only, and the MLP with dense dropout."""
    torch.manual_seed(0)
    dropout = Dropout(p_input=0.0, p_dense=0.5, p_conv=0.0)
    return {
        "CNN, head dropout": dropout.configure_model(CNN(input_shape, 10)),
        "MLP": dropout.configure_model(MLP(input_shape, 10)),
    }


def first_stochastic_block(net: nn.Sequential) -> int:
    """Index of the first block holding a dropout layer: what a user splitting by hand finds."""
    for i, block in enumerate(net):
        if any(isinstance(m, _DropoutNd) and m.p > 0 for m in block.modules()):
            return i
    return len(net)


def hand_variants(net: nn.Sequential, x: torch.Tensor, samples: int) -> dict[str, Sampler]:
    """The three hand-written ways; call them in sampling mode, under ``torch.no_grad``."""
    k = first_stochastic_block(net)
    prefix, remainder = nn.Sequential(*list(net)[:k]), nn.Sequential(*list(net)[k:])
    rows = len(x)

    def sequential() -> torch.Tensor:
        return torch.stack([net(x) for _ in range(samples)]).double().cpu()

    def repeat() -> torch.Tensor:
        out = net(x.repeat(samples, *[1] * (x.ndim - 1)))
        return out.reshape(samples, rows, -1).double().cpu()

    def prefix_once() -> torch.Tensor:
        h = prefix(x)
        out = remainder(h.repeat(samples, *[1] * (h.ndim - 1)))
        return out.reshape(samples, rows, -1).double().cpu()

    return {"sequential": sequential, "repeat": repeat, "prefix-once": prefix_once}


@torch.no_grad()
def run_model(
    label: str,
    net: nn.Sequential,
    x: torch.Tensor,
    samples: int,
    args: argparse.Namespace,
    figure: str = FIGURE,
    targets: dict[str, float | None] | None = None,
    note: str = "",
    variants: tuple[str, ...] = VARIANTS,
) -> list[Result]:
    """One row per hand variant named in ``variants``: time(variant) / time(ours), alternated.

    ``targets`` maps a variant to its target (default: ``BEST_VARIANT`` for every one).
    """
    targets = targets if targets is not None else dict.fromkeys(variants, BEST_VARIANT)
    device = x.device
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    net = net.to(device)
    with sampling_mode(net), random_stream(device, seed=0):
        predictor = MCDropout(samples=samples)
        predictor.fit([net], OutputHead("classification"))
        start = time.perf_counter()
        predictor.predict([x])  # plans the split and the chunks, as for a split's first batch
        plan_s = time.perf_counter() - start

        def ours() -> torch.Tensor:
            return predictor.sample(x)

        hand = {k: v for k, v in hand_variants(net, x, samples).items() if k in variants}
        shapes = {name: tuple(fn().shape) for name, fn in {**hand, "ours": ours}.items()}
        if len(set(shapes.values())) != 1:
            raise RuntimeError(f"MC variants disagree on the output shape: {shapes}")
        extra = {
            "samples": samples,
            "batch": len(x),
            "prefix_blocks": predictor.prefix_length,
            "blocks": len(net),
            "t_chunk": predictor.t_chunk,
            "predict_first_call_s": plan_s,
        }
        rows = []
        for name, baseline in hand.items():
            timing = alternate(ours, baseline, args.reps, args.warmups, sync)
            rows.append(
                timing.result(
                    figure,
                    f"{label}: ours vs {name}",
                    overhead=False,
                    target=targets.get(name),
                    note=note,
                    extra=extra,
                )
            )
    if len(rows) > 1:  # the target is "≥ 0.95× the best variant": say which one that was
        fastest = min(rows, key=lambda r: r.baseline_s or float("inf"))
        fastest.note = f"{fastest.note}; the fastest hand variant".lstrip("; ")
    return rows


def run(args: argparse.Namespace) -> list[Result]:
    samples, batch = (QUICK_SAMPLES, QUICK_BATCH) if args.quick else (SAMPLES, BATCH)
    device = torch.device(args.device)
    x = torch.randn(batch, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for label, net in head_dropout_models().items():
        targets = dict.fromkeys(VARIANTS, BEST_VARIANT)
        if label.startswith("CNN"):
            targets["sequential"] = CNN_SEQUENTIAL
        note = f"T={samples}, batch {batch}"
        rows += run_model(label, net, x, samples, args, targets=targets, note=note)
    return rows
