"""The baseline of figure 3: the benchmark's trainings written by hand in plain PyTorch.

    python scripts/perf/plain_loop.py spec.json

trains every grid point of ``spec.json`` (written by ``perf.sweep``) one after another in this
one process, on the very tensors regbench trains on: the same MLP, Adam settings, batch size,
epochs and per-epoch shuffling, a validation pass every epoch, and the loss and accuracy of
train/val/test at the end, written to ``<out>/<point>.json``. Each regularizer is written out
here as its regbench module documents it (no ``bench`` import: this is what a user would write
without the framework). A regularizer without a hand-written version here is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_features: int, widths: list[int], classes: int, p_input: float, p_dense: float):
    """regbench's MLP: [flatten, input dropout] → [linear, relu, dense dropout]× → linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    if p_input > 0:
        layers.append(nn.Dropout(p_input))
    for width in widths:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        if p_dense > 0:
            layers.append(nn.Dropout(p_dense))
        in_features = width
    layers.append(nn.Linear(in_features, classes))
    return nn.Sequential(*layers)


def transform(x: torch.Tensor, y: torch.Tensor, regs: dict, classes: int):
    """Input noise, then mixup, then label smoothing (regbench's transform order)."""
    target: torch.Tensor = y
    if "input_noise" in regs:
        x = x + regs["input_noise"]["std"] * torch.randn_like(x)
    if "mixup" in regs:
        perm = torch.randperm(len(x))
        alpha = torch.tensor(float(regs["mixup"]["alpha"]), dtype=torch.float64)
        lam = torch.distributions.Beta(alpha, alpha).sample().to(x.dtype)
        onehot = F.one_hot(y, classes).to(x.dtype)
        x = lam * x + (1 - lam) * x[perm]
        target = lam * onehot + (1 - lam) * onehot[perm]
    if "label_smoothing" in regs:
        eps = regs["label_smoothing"]["epsilon"]
        soft = target if target.is_floating_point() else F.one_hot(y, classes).to(x.dtype)
        target = (1 - eps) * soft + eps / classes
    return x, target


@torch.no_grad()
def after_step(model: nn.Module, opt: torch.optim.Adam, regs: dict, before: list) -> None:
    """Decoupled weight decay, proximal L1 (Adam's per-coordinate step) and max-norm."""
    weights = [p for p in model.parameters() if p.ndim >= 2]
    group = opt.param_groups[0]
    if "weight_decay" in regs:
        for w, w_prev in zip(weights, before, strict=True):
            w.sub_(w_prev, alpha=group["lr"] * regs["weight_decay"]["strength"])
    if "l1" in regs:
        beta2 = group["betas"][1]
        for w in weights:
            state = opt.state[w]
            v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
            t = regs["l1"]["strength"] * group["lr"] / (v_hat.sqrt() + group["eps"])
            w.sub_(torch.clamp(w, -t, t))
    if "max_norm" in regs:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.renorm_(2, 0, regs["max_norm"]["max_norm"])


@torch.no_grad()
def scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    out = model(x)
    model.train()
    acc = (out.argmax(1) == y).float().mean()
    return {"loss": F.cross_entropy(out, y).item(), "acc": acc.item()}


KNOWN = (
    "l2",
    "weight_decay",
    "l1",
    "max_norm",
    "dropout",
    "input_noise",
    "label_smoothing",
    "mixup",
)


def train(point: dict[str, Any], spec: dict[str, Any], data: dict) -> dict[str, Any]:
    regs = point["regularizers"]
    unknown = set(regs) - set(KNOWN)
    if unknown or regs.get("l1", {}).get("mode", "proximal") != "proximal":
        raise SystemExit(f"plain_loop: no hand-written version of {sorted(unknown) or 'l1'}")
    torch.manual_seed(point["seed"])
    x, y = data["train"]
    drop = regs.get("dropout", {})
    model = mlp(x[0].numel(), spec["widths"], spec["classes"], drop.get("p_input", 0.0),
                drop.get("p_dense", 0.0))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), **spec["adam"])
    weights = [p for p in model.parameters() if p.ndim >= 2]
    order = torch.Generator().manual_seed(point["seed"])
    for _ in range(spec["epochs"]):
        for idx in torch.randperm(len(x), generator=order).split(spec["batch_size"]):
            xb, target = transform(x[idx], y[idx], regs, spec["classes"])
            loss = F.cross_entropy(model(xb), target)
            if "l2" in regs:
                loss = loss + regs["l2"]["strength"] * sum((w**2).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            before = [w.detach().clone() for w in weights] if "weight_decay" in regs else []
            opt.step()
            after_step(model, opt, regs, before)
        scores(model, *data["val"])  # regbench validates every epoch
    return {split: scores(model, *data[split]) for split in ("train", "val", "test")}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    data = torch.load(spec["data"])
    out = Path(spec["out"])
    for point in spec["points"]:
        record = train(point, spec, data)
        (out / f"{point['name']}-s{point['seed']}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1])
