"""Synthetic results records with realistic configs and metrics, for tests and benchmarks.

The config mirrors a resolved ``conf/train.yaml`` — including the run directory repeated in
``paths``, ``trainer.default_root_dir``, the loggers' ``save_dir`` and the checkpoint
``dirpath``, and a wandb run name holding the seed — so grouping is exercised on what real
runs write. Metrics come from a toy response surface (the gap shrinks and the fit worsens as
the strength grows) plus seed noise, with the ``ts/``, ``mc/``, ``ood/`` and ``shift/`` keys a
full evaluation writes. Standard library only, like the rest of the reading path.
"""

from __future__ import annotations

import json
import math
import os
import random
from typing import Any

from bench.record import RESULTS_FILE, run_record

# Regularizer -> (hyperparameter, default grid, what else its config node holds).
METHODS: dict[str, tuple[str, tuple[float, ...], dict[str, Any]]] = {
    "l2": ("strength", (1e-5, 1e-4, 1e-3, 1e-2), {"params": "weights"}),
    "l1": ("strength", (1e-6, 1e-5, 1e-4, 1e-3), {"params": "weights", "mode": "proximal"}),
    "weight_decay": ("strength", (1e-3, 1e-2, 1e-1, 1.0), {"params": "weights"}),
    "dropout": ("p_dense", (0.1, 0.3, 0.5, 0.7), {"p_input": 0.0, "p_conv": 0.1, "mc": True}),
    "max_norm": ("max_norm", (0.5, 1.0, 2.0, 4.0), {}),
    "mixup": ("alpha", (0.1, 0.2, 0.4, 1.0), {"per_sample": False}),
    "label_smoothing": ("epsilon", (0.05, 0.1, 0.2, 0.3), {}),
    "input_noise": ("std", (0.05, 0.1, 0.2, 0.4), {}),
}
CORRUPTIONS = ("gaussian_noise", "rotation", "blur", "contrast")


def config(
    run_dir: str,
    seed: int,
    regularizer: dict[str, dict[str, Any]],
    dataset: str = "digits",
    model: str = "mlp",
    lr: float = 1e-3,
    train_size: int | None = 300,
) -> dict[str, Any]:
    """A resolved train config as ``results.json`` stores it."""
    nodes = {
        name: {"_target_": f"bench.regularizers.{name}.X", **n} for name, n in regularizer.items()
    }
    return {
        "seed": seed,
        "heteroscedastic": False,
        "optimized_metric": "val/loss",
        "ensemble": {"members": 1, "bootstrap": False},
        "regularizer": nodes,
        "scheduler": None,
        "paths": {"output_root": "outputs", "run_dir": run_dir},
        "dataset": {
            "_target_": f"bench.data.{dataset}.DataModule",
            "split_seed": 0,
            "train_size": train_size,
            "batch_size": 128,
            "data_dir": "./data",
        },
        "model": {"_target_": f"bench.models.{model}.Model", "widths": [256, 256]},
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr},
        "trainer": {
            "_target_": "lightning.Trainer",
            "default_root_dir": run_dir,
            "max_epochs": 30,
            "accelerator": "auto",
        },
        "logger": {
            "csv": {"save_dir": run_dir, "name": "csv"},
            "wandb": {
                "save_dir": run_dir,
                "name": f"{dataset}/{model}/seed{seed}",
                "group": os.path.dirname(run_dir),
                "offline": True,
            },
        },
        "callbacks": {"model_checkpoint": {"dirpath": f"{run_dir}/checkpoints"}},
        "evaluation": {"ood": {"partners": "auto", "data_dir": "./data"}, "seed": 0},
    }


def metrics(quality: float, gap: float, rng: random.Random, mc: bool = False) -> dict[str, float]:
    """Classification metrics around a test loss ``quality`` and a loss gap ``gap``."""
    out: dict[str, float] = {}
    prefixes = ["", "ts/", *(["mc/"] if mc else [])]
    for p in prefixes:
        test_loss = quality + rng.gauss(0, 0.01) + (0.03 if p == "" else 0.0)
        acc = min(0.999, max(0.1, 1.0 - 0.6 * test_loss + rng.gauss(0, 0.005)))
        train_loss = max(0.0, test_loss - gap + rng.gauss(0, 0.005))
        train_acc = min(1.0, acc + 0.5 * gap)
        out.update(
            {
                f"{p}train/loss": train_loss,
                f"{p}train/acc": train_acc,
                f"{p}val/loss": test_loss + rng.gauss(0, 0.01),
                f"{p}val/acc": acc,
                f"{p}test/loss": test_loss,
                f"{p}test/acc": acc,
                f"{p}test/nll": test_loss,
                f"{p}test/brier": 0.5 * test_loss,
                f"{p}test/ece": abs(rng.gauss(0.05, 0.01)),
                f"{p}test/aece": abs(rng.gauss(0.05, 0.01)),
                f"{p}test/mce": 0.2,
                f"{p}gap/loss": test_loss - train_loss,
                f"{p}gap/acc": train_acc - acc,
            }
        )
        for partner in ("noise", "fashion_mnist"):
            for score in ("max_prob", "entropy", "energy"):
                for k in ("auroc", "aupr", "fpr95"):
                    out[f"{p}ood/{partner}/{score}/{k}"] = rng.uniform(0.5, 1.0)
        for c in CORRUPTIONS:
            for s in range(1, 6):
                out[f"{p}shift/{c}/{s}/acc"] = acc * (1 - 0.08 * s)
                out[f"{p}shift/{c}/{s}/ece"] = 0.05 + 0.02 * s
                out[f"{p}shift/{c}/{s}/nll"] = test_loss * (1 + 0.2 * s)
        out.update(
            {
                f"{p}shift/mean/acc": acc * 0.76,
                f"{p}shift/mean/ece": 0.11,
                f"{p}shift/mean/nll": test_loss * 1.6,
            }
        )
    out["ts/temperature"] = 1.3
    if mc:
        out["mc/samples"] = 50
    return out


def write_sweep(
    root: str, n_records: int, seeds: int = 3, seed: int = 0, methods: tuple[str, ...] = ()
) -> list[str]:
    """About ``n_records`` records under ``root``: every method at every grid point, ``seeds``
    seeds, over as many sections (dataset x model x lr x train size) as the count needs."""
    rng = random.Random(seed)
    methods = methods or ("none", *METHODS)
    points = [(m, v) for m in methods for v in (METHODS[m][1] if m in METHODS else (None,))]
    paths: list[str] = []
    k = 0
    while len(paths) < n_records:
        dataset = ("digits", "mnist", "fashion_mnist")[k % 3]
        model = ("mlp", "cnn")[(k // 3) % 2]
        lr = (1e-3, 3e-3, 1e-2)[(k // 6) % 3]
        train_size = 300 * (1 + k // 18)
        for method, value in points:
            reg = {}
            if method in METHODS:
                key, _, rest = METHODS[method]
                reg = {method: {key: value, **rest}}
            strength = 0.0 if value is None else math.log10(1 + 1000 * value)
            for s in range(seeds):
                if len(paths) >= n_records:
                    break
                run_dir = os.path.join(root, f"section{k}", f"{method}-{value}", f"seed{s}")
                record = run_record(
                    dataset=dataset,
                    model=model,
                    regularizers=list(reg),
                    seed=s,
                    epochs=30,
                    metrics=metrics(
                        0.3 + 0.03 * (strength - 1.5) ** 2,
                        0.3 / (1 + strength),
                        rng,
                        mc=method == "dropout",
                    ),
                    config=config(run_dir, s, reg, dataset, model, lr, train_size),
                    wall_time_s=1.4,
                    versions={"python": "3.11"},
                    extras={"best_epoch": 30, "sparsity": 0.0},
                )
                os.makedirs(run_dir, exist_ok=True)
                path = os.path.join(run_dir, RESULTS_FILE)
                with open(path, "w") as f:
                    json.dump(record, f)
                paths.append(path)
        k += 1
    return paths
