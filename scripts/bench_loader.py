"""Benchmark: the in-memory index-batch loader against a standard DataLoader, same process.

Machines are noisy, so the figure that matters is the ratio of the two, measured back to back:

    .venv/bin/python scripts/bench_loader.py [--dataset digits|mnist] [--epochs 5]

MNIST reads the offline copy from $BENCH_DATA_DIR (e.g. ../shared/data/torchvision).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.train import CONF_DIR


def epoch_seconds(datamodule, epochs: int) -> float:
    """Median wall time of one pass over the training loader (touching every batch)."""
    times = []
    loader = datamodule.train_dataloader()
    for _ in range(epochs):
        start = time.perf_counter()
        total = 0.0
        for x, _y in loader:
            total += float(x[0, 0].sum())  # consume the batch
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    node = OmegaConf.load(f"{CONF_DIR}/dataset/{args.dataset}.yaml")
    node.batch_size = args.batch_size
    if "data_dir" in node:
        node.data_dir = os.environ.get("BENCH_DATA_DIR", "./data")
    results = {}
    for in_memory in (False, True):  # baseline first
        node.in_memory = in_memory
        dm = instantiate(node)
        dm.setup("fit")
        results[in_memory] = epoch_seconds(dm, args.epochs)
    base, fast = results[False], results[True]
    print(
        f"{args.dataset}: DataLoader {base * 1e3:.1f} ms/epoch, in-memory {fast * 1e3:.1f} "
        f"ms/epoch, speed-up ×{base / fast:.1f}"
    )


if __name__ == "__main__":
    main()
