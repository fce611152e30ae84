"""Benchmark: three ways to draw T MC-dropout samples of one batch, in one process.

    (a) plain   T full forward passes in a Python loop
    (b) repeat  the whole batch repeated T times, one forward of T·B rows
    (c) ours    MCDropout.sample: the deterministic prefix once, the remainder on t_chunk·B rows

Machines are noisy, so the figure that matters is the ratio to (a), measured back to back: each
repetition runs the three in a rotating order, and the table gives the median ratio
time(a)/time(x) (higher = faster than plain passes) with its min–max over repetitions.

    .venv/bin/python scripts/bench_mc.py [--samples 50] [--batch 256] [--reps 7] [--json out.json]

Models: the project's CNN with dropout only in its dense head (the dropout regularizer with
p_conv = 0), whose conv blocks form the prefix, and the default MLP (dropout from its first
hidden layer on, so there is little prefix to save); digits-sized inputs (1×8×8), float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from bench.models.cnn import CNN
from bench.models.mlp import MLP
from bench.regularizers.dropout import Dropout
from bench.uncertainty.base import OutputHead
from bench.uncertainty.mc_dropout import MCDropout, random_stream, sampling_mode

INPUT_SHAPE = (1, 8, 8)


def models() -> dict[str, nn.Sequential]:
    torch.manual_seed(0)
    dropout = Dropout(p_input=0.0, p_dense=0.5, p_conv=0.0)
    return {
        "cnn": dropout.configure_model(CNN(INPUT_SHAPE, 10)),
        "mlp": dropout.configure_model(MLP(INPUT_SHAPE, 10)),
    }


def samplers(
    net: nn.Sequential, x: torch.Tensor, samples: int, memory_mb: float
) -> tuple[dict[str, Callable[[], torch.Tensor]], MCDropout]:
    """The three ways, each returning (T, B, out) on the CPU in float64 like MCDropout.sample,
    and the predictor behind (c)."""
    predictor = MCDropout(samples=samples, memory_mb=memory_mb)
    predictor.fit([net], OutputHead("classification"))
    predictor.predict([x])  # plans the split into prefix and remainder, as for a first batch

    def plain() -> torch.Tensor:
        return torch.stack([net(x) for _ in range(samples)]).double().cpu()

    def repeat() -> torch.Tensor:
        out = net(x.repeat(samples, *[1] * (x.ndim - 1)))
        return out.reshape(samples, len(x), -1).double().cpu()

    return {"plain": plain, "repeat": repeat, "ours": lambda: predictor.sample(x)}, predictor


def timed(fn: Callable, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def bench(net: nn.Sequential, args: argparse.Namespace, device: torch.device) -> dict:
    net = net.to(device)
    x = torch.randn(args.batch, *INPUT_SHAPE, device=device)
    with sampling_mode(net), random_stream(device, seed=0):
        fns, predictor = samplers(net, x, args.samples, args.memory_mb)
        names = list(fns)
        times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(args.warmup + args.reps):
            order = names[rep % 3 :] + names[: rep % 3]  # rotate who runs first
            for name in order:
                t = timed(fns[name], device)
                if rep >= args.warmup:
                    times[name].append(t)
    result = {
        "prefix_blocks": predictor.prefix_length,
        "blocks": len(net),
        "t_chunk": predictor.t_chunk,
        "ms": {name: statistics.median(ts) * 1e3 for name, ts in times.items()},
    }
    for name in ("repeat", "ours"):
        ratios = [a / b for a, b in zip(times["plain"], times[name], strict=True)]
        result[f"speedup_{name}"] = {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument(
        "--memory-mb", type=float, default=None, help="MCDropout budget (None: auto)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the results to this path")
    args = parser.parse_args()
    if args.warmup < 3 or args.reps < 5:
        parser.error("use at least 3 warm-ups and 5 repetitions")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {name: bench(net, args, device) for name, net in models().items()}

    print(
        f"T={args.samples}, batch {args.batch}, memory_mb {args.memory_mb}, {args.device}, "
        f"{args.threads} thread(s), "
        f"{args.reps} reps after {args.warmup} warm-ups; speed-up = time(plain)/time(x)"
    )
    print(f"{'model':6} {'prefix':>7} {'t_chunk':>7} {'plain ms':>9} {'repeat ms':>9} "
          f"{'ours ms':>8}  {'repeat ×':>17}  {'ours ×':>17}")  # fmt: skip
    for name, r in results.items():
        ms = r["ms"]
        cols = [
            f"{r[f'speedup_{k}']['median']:.2f} ({r[f'speedup_{k}']['min']:.2f}–"
            f"{r[f'speedup_{k}']['max']:.2f})"
            for k in ("repeat", "ours")
        ]
        print(
            f"{name:6} {r['prefix_blocks']:>3}/{r['blocks']:<3} {r['t_chunk']:>7} "
            f"{ms['plain']:>9.2f} {ms['repeat']:>9.2f} {ms['ours']:>8.2f}  "
            f"{cols[0]:>17}  {cols[1]:>17}"
        )
    if args.json:
        keys = ("samples", "batch", "memory_mb", "warmup", "reps", "threads", "device")
        config = {k: getattr(args, k) for k in keys}
        with open(args.json, "w") as f:
            json.dump({"config": config, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
