"""Final evaluation: every prediction method, every split and every extra set, one metric code.

The training split is measured here, in eval mode and without batch transforms, because the
generalization gap is test risk minus *empirical* risk — not the running training loss, which
dropout and augmentation inflate.

Each predictor (``bench.uncertainty``) writes under its own prefix (``test/*``, ``mc/test/*``,
``ts/test/*``, ``ens/test/*``); nothing here knows which methods exist. Beyond train/val/test,
the in-distribution test set is compared with out-of-distribution partner sets (``ood/*``) and
scored under corruptions of growing severity (``shift/*``); both reuse the training split's
standardization (``datamodule.standardize``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bench.data.shift import corrupt
from bench.metrics import classification_metrics, ood_metrics, regression_metrics
from bench.uncertainty.base import OutputHead, Prediction, Predictor
from bench.uncertainty.ensemble import diversity

# Metrics kept for the train and validation splits (the gap); the test split keeps them all.
FIT_KEYS = {"classification": ("loss", "acc"), "regression": ("loss", "nll", "ll")}
# Metrics kept per shifted set, and averaged over corruptions and severities as shift/mean/*.
SHIFT_KEYS = {"classification": ("acc", "ece", "nll"), "regression": ("rmse", "nll")}
# Each ensemble member's own test metrics, summarized as mean / best / worst (+1: higher is better).
MEMBER_KEYS = {
    "classification": {"acc": 1, "nll": -1, "ece": -1},
    "regression": {"rmse": -1, "nll": -1},
}


@dataclass
class EvalSettings:
    """What to evaluate beyond the splits (``conf/evaluation/default.yaml``, resolved)."""

    splits: Sequence[str] = ("train", "val", "test")
    ood: dict[str, torch.Tensor] = field(default_factory=dict)  # partner → standardized inputs
    corruptions: Sequence[str] = ()
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    shift_max_samples: int | None = None
    seed: int = 0
    batch_size: int = 2048


@dataclass
class Evaluation:
    metrics: dict[str, float]
    arrays: dict[str, np.ndarray]  # for predictions.npz
    test_predictions: dict[str, Prediction]  # label → test prediction (reliability diagrams)
    labels: torch.Tensor  # test targets (original units for regression)


def batches(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(x.split(size))


def score(pred: Prediction, target: torch.Tensor, task: str) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(pred.probs, target)
    return regression_metrics(pred.mean, pred.var, target, pred.mixture)


def evaluate(
    networks: Sequence[nn.Module],
    head: OutputHead,
    datamodule,
    predictors: Sequence[Predictor],
    settings: EvalSettings,
) -> Evaluation:
    """Metrics of every predictor on every split and extra set, and the arrays to save.

    ``head`` comes from ``OutputHead.for_run`` (it carries the homoscedastic noise level)."""
    task, size = head.task, settings.batch_size
    data = {}
    for split in dict.fromkeys([*settings.splits, "val", "test"]):  # val fits, test reports
        x, y = datamodule.tensors[split]
        if task == "regression":
            y = y.double().cpu() * head.target_std + head.target_mean  # original units
        data[split] = (x, y.cpu())

    test_x, test_y = data["test"]
    shifted = shifted_sets(datamodule, test_x, test_y, settings)
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    test_predictions: dict[str, Prediction] = {}
    val_x, val_y = data["val"]
    val = list(zip(batches(val_x, size), val_y.split(size), strict=True)) if len(val_x) else None
    for predictor in predictors:
        if not predictor.supports(head):
            continue
        predictor.fit(networks, head, val)
        p = f"{predictor.prefix}/" if predictor.prefix else ""
        preds = {}
        for split in settings.splits:
            x, y = data[split]
            if len(x) == 0:
                continue
            preds[split] = predictor.predict(batches(x, size))
            values = score(preds[split], y, task)
            keep = values if split == "test" else {k: values[k] for k in FIT_KEYS[task]}
            metrics.update({f"{p}{split}/{k}": v for k, v in keep.items()})
        if "train" in preds and "test" in preds:
            metrics[f"{p}gap/loss"] = metrics[f"{p}test/loss"] - metrics[f"{p}train/loss"]
            if task == "classification":
                metrics[f"{p}gap/acc"] = metrics[f"{p}train/acc"] - metrics[f"{p}test/acc"]
        test = preds["test"]
        metrics.update(member_metrics(test, test_y, task, p))
        for partner, ood_x in settings.ood.items():
            ood = predictor.predict(batches(ood_x, size))
            for name, in_score in test.scores.items():
                for k, v in ood_metrics(in_score, ood.scores[name]).items():
                    metrics[f"{p}ood/{partner}/{name}/{k}"] = v
            # per-sample scores on both sides, for histograms (in-distribution: <prefix>_scores_*)
            arrays.update(score_arrays(ood, predictor.prefix, f"ood_{partner}"))
        arrays.update(score_arrays(test, predictor.prefix, "scores"))
        metrics.update(shift_metrics(predictor, shifted, task, p, size))
        metrics.update(predictor.summary())
        arrays.update(prediction_arrays(test, predictor.prefix))
        test_predictions[predictor.label] = test
    arrays["labels" if task == "classification" else "targets"] = test_y.numpy()
    return Evaluation(metrics, arrays, test_predictions, test_y)


def member_metrics(pred: Prediction, target: torch.Tensor, task: str, p: str) -> dict[str, float]:
    """An ensemble's members scored alone (mean, best, worst) and their diversity."""
    if not pred.members:
        return {}
    out = {f"{p}test/{k}": v for k, v in diversity(pred.members, target).items()}
    scores = [score(m, target, task) for m in pred.members]
    for key, sign in MEMBER_KEYS[task].items():
        values = [s[key] for s in scores]
        out[f"{p}members/test/{key}/mean"] = float(np.mean(values))
        out[f"{p}members/test/{key}/best"] = max(values) if sign > 0 else min(values)
        out[f"{p}members/test/{key}/worst"] = min(values) if sign > 0 else max(values)
    return out


ShiftedSets = dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]


def shifted_sets(
    datamodule, x: torch.Tensor, y: torch.Tensor, settings: EvalSettings
) -> ShiftedSets:
    """(corruption, severity) → (corrupted inputs, targets), on a fixed subset of the test set."""
    if not settings.corruptions:
        return {}
    n = settings.shift_max_samples
    if n is not None and n < len(x):
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(settings.seed))[:n]
        keep = keep.sort().values
        x, y = x[keep.to(x.device)], y[keep]
    return {
        (c, s): (corrupt(datamodule, x, c, s, seed=settings.seed), y)
        for c in settings.corruptions
        for s in settings.severities
    }


def shift_metrics(
    predictor: Predictor, shifted: ShiftedSets, task: str, p: str, size: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    sums: dict[str, list[float]] = {k: [] for k in SHIFT_KEYS[task]}
    for (corruption, severity), (x, y) in shifted.items():
        values = score(predictor.predict(batches(x, size)), y, task)
        for k in SHIFT_KEYS[task]:
            out[f"{p}shift/{corruption}/{severity}/{k}"] = values[k]
            if severity > 0:
                sums[k].append(values[k])
    for k, values in sums.items():
        if values:
            out[f"{p}shift/mean/{k}"] = float(np.mean(values))
    return out


def score_arrays(pred: Prediction, prefix: str, group: str) -> dict[str, np.ndarray]:
    """Per-sample uncertainty scores as ``[<prefix>_]<group>_<score>`` (float32)."""
    name = f"{prefix}_" if prefix else ""
    return {f"{name}{group}_{k}": v.float().numpy() for k, v in pred.scores.items()}


def prediction_arrays(pred: Prediction, prefix: str) -> dict[str, np.ndarray]:
    """A predictor's test predictions for predictions.npz: ``probs`` / ``mc_probs`` ..."""
    name = f"{prefix}_" if prefix else ""
    fields = {"probs": pred.probs, "mean": pred.mean, "var": pred.var, **pred.arrays}
    return {
        f"{name}{k}": v.float().numpy() if k == "probs" else v.numpy()
        for k, v in fields.items()
        if v is not None
    }
