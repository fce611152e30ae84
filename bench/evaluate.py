"""Final evaluation: the weights chosen for testing, scored on train (eval mode), val and test.

The training split is measured here, in eval mode and without batch transforms, because the
generalization gap is test risk minus *empirical* risk — not the running training loss, which
dropout and augmentation inflate.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from bench.metrics import classification_metrics, regression_metrics
from bench.module import BenchModule


@torch.no_grad()
def collect_outputs(
    module: BenchModule, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the network in eval mode over ``batches``; return (outputs, targets) on the CPU."""
    was_training = module.training
    module.eval()
    param = next(module.parameters())
    outs, targets = [], []
    for x, y in batches:
        x = x.to(param.device, dtype=param.dtype if x.is_floating_point() else None)
        outs.append(module(x).cpu())
        targets.append(y.cpu())
    module.train(was_training)
    return torch.cat(outs), torch.cat(targets)


def predictive(
    module: BenchModule,
    out: torch.Tensor,
    target_mean: float,
    target_std: float,
    train_mse: float | None = None,
) -> dict[str, torch.Tensor]:
    """Turn raw network outputs into a predictive distribution (original units for regression).

    Without a variance head the Gaussian's variance is the training MSE (``train_mse``).
    """
    if module.task == "classification":
        return {"probs": out.double().softmax(dim=-1)}
    mean = out[:, 0].double() * target_std + target_mean
    if module.heteroscedastic:
        var = out[:, 1].double().exp() * target_std**2
    else:
        mse = train_mse if train_mse is not None else float("nan")
        var = torch.full_like(mean, mse)
    return {"mean": mean, "var": var}


def evaluate(module: BenchModule, datamodule) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics for train/val/test and the gap, plus test-set predictions for predictions.npz."""
    loaders = {split: datamodule.eval_dataloader(split) for split in ("train", "val", "test")}
    mean, std = float(datamodule.target_mean), float(datamodule.target_std)
    metrics: dict[str, float] = {}
    train_mse = None
    predictions: dict[str, np.ndarray] = {}
    for split, loader in loaders.items():
        out, target = collect_outputs(module, loader)
        if module.task == "classification":
            probs = predictive(module, out, mean, std)["probs"]
            values = classification_metrics(probs, target)
            keep = ("loss", "acc") if split != "test" else ("loss", "acc", "nll", "ece", "brier")
            if split == "test":
                predictions = {"probs": probs.float().numpy(), "labels": target.numpy()}
        else:
            y = target.double() * std + mean
            if split == "train":
                train_mse = ((out[:, 0].double() * std + mean - y) ** 2).mean().item()
            pred = predictive(module, out, mean, std, train_mse)
            values = regression_metrics(pred["mean"], pred["var"], y)
            keep = ("loss",) if split != "test" else ("loss", "rmse", "nll")
            if split == "test":
                predictions = {k: v.numpy() for k, v in pred.items()} | {"targets": y.numpy()}
        metrics.update({f"{split}/{k}": values[k] for k in keep})
    metrics["gap/loss"] = metrics["test/loss"] - metrics["train/loss"]
    if module.task == "classification":
        metrics["gap/acc"] = metrics["train/acc"] - metrics["test/acc"]
    return metrics, predictions
