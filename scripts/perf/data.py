"""Figure 5: the data path — regbench's loader and its batched augmentation against by-hand code.

(a) Training steps fed by regbench's loader (``TensorBatches`` from a datamodule's
    ``train_dataloader``: a fresh permutation per epoch, a batch is ``x[idx], y[idx]``) against
    the same steps fed by slicing the same in-memory tensors by hand (permute once per epoch,
    then contiguous slices). Same MLP, Adam, batch size 128; digits, and MNIST when its files
    are found ($BENCH_DATA_DIR or ../shared/data/torchvision). Target: ≥ 0.97×.
(b) One epoch of augmented batches (random crop with 4 px zero padding, horizontal flip, a
    16×16 cutout; CIFAR-sized random images, batch 256): regbench's ``augment`` regularizer on
    whole batches of the in-memory standardized tensors, against torchvision v2 per-sample
    transforms through a ``DataLoader`` over the uint8 images, standardizing on the way
    (``num_workers=0``: workers would only share the same cores). torchvision's
    ``RandomErasing`` keeps its square inside the image where cutout lets it cross the
    border: the same work. Target: ≥ 5×.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from bench.data.base import ArrayDataModule
from bench.data.batches import TensorBatches
from bench.data.digits import DigitsDataModule
from bench.data.vision import MNISTDataModule
from bench.models.mlp import MLP
from bench.regularizers.augment import Augment
from perf.common import Result, alternate

FIGURE = "5 data path"
LOADER_TARGET = 0.97
AUGMENT_TARGET = 5.0
TRAIN_BATCH = 128
AUGMENT_BATCH, SIDE, PADDING, CUTOUT = 256, 32, 4, 16
REPO = Path(__file__).resolve().parents[2]


def mnist_dir() -> Path:
    """Where MNIST's torchvision folder lives: $BENCH_DATA_DIR, else the team's shared copy."""
    env = os.environ.get("BENCH_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "torchvision"


# ------------------------------------------------------------------ (a) loader vs slicing


def datamodules(quick: bool) -> dict[str, tuple[ArrayDataModule, int]]:
    """Loaded datamodules and the epochs one repetition trains (about a second of work each)."""
    out: dict[str, tuple[ArrayDataModule, int]] = {
        "digits": (DigitsDataModule(batch_size=TRAIN_BATCH), 2 if quick else 50)
    }
    mnist = MNISTDataModule(
        data_dir=str(mnist_dir()), batch_size=TRAIN_BATCH, train_size=2000 if quick else 20000
    )
    if mnist.missing_files():
        print(f"[data: MNIST not found in {mnist_dir()}; its row is left out]", file=sys.stderr)
    else:
        out["MNIST"] = (mnist, 1)
    for dm, _ in out.values():
        dm.setup("fit")
    return out


def trainer_step(
    dm: ArrayDataModule, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One hand-written training step of an MLP with Adam, shared by both sides."""
    torch.manual_seed(0)
    model = MLP(tuple(dm.input_shape), dm.num_outputs).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def loader_row(
    name: str, dm: ArrayDataModule, epochs: int, args: argparse.Namespace, device: torch.device
) -> Result:
    """``epochs`` epochs of training steps fed by ``dm.train_dataloader()`` vs by slicing."""
    dm.tensors = {k: (x.to(device), y.to(device)) for k, (x, y) in dm.tensors.items()}
    x, y = dm.tensors["train"]
    step = trainer_step(dm, device)
    loader = dm.train_dataloader()
    generator = torch.Generator().manual_seed(0)

    def ours() -> None:
        for _ in range(epochs):
            for xb, yb in loader:
                step(xb, yb)

    def by_hand() -> None:
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=generator).to(device)
            xs, ys = x[perm], y[perm]
            for start in range(0, len(xs), TRAIN_BATCH):
                step(xs[start : start + TRAIN_BATCH], ys[start : start + TRAIN_BATCH])

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    timing = alternate(ours, by_hand, args.reps, args.warmups, sync)
    steps = epochs * len(loader)
    return timing.result(
        FIGURE,
        f"{name} MLP training steps: regbench's loader vs slicing tensors",
        overhead=False,
        target=LOADER_TARGET,
        note=f"{len(x)} samples, batch {TRAIN_BATCH}, {steps} steps",
        extra={"samples": len(x), "steps": steps},
    )


# ------------------------------------------------------------------ (b) batched vs per-sample


class PerSample(Dataset):
    """uint8 images through a torchvision v2 transform, one image at a time (the usual way)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: nn.Module) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def augment_row(args: argparse.Namespace, device: torch.device) -> Result:
    """One epoch of crop+flip+cutout batches: ``augment`` on whole batches vs v2 per sample."""
    n = 512 if args.quick else 5120
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, SIDE, SIDE), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    mean = images.float().mean(dim=(0, 2, 3))
    std = images.float().std(dim=(0, 2, 3))
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    # regbench: standardized once when the data are loaded, then whole batches on the device.
    x = ((images.float() - mean[:, None, None]) / std[:, None, None]).to(device)
    loader = TensorBatches(x, labels.to(device), AUGMENT_BATCH, torch.Generator().manual_seed(1))
    augment = Augment(
        crop_padding=PADDING, hflip=True, rotation_degrees=0.0, brightness=0.0, contrast=0.0,
        cutout_size=CUTOUT,
    )  # fmt: skip
    shape = SimpleNamespace(is_image=True, input_shape=(3, SIDE, SIDE), name="cifar10")
    augment.setup(shape, nn.Identity())  # type: ignore[arg-type]

    def ours() -> torch.Tensor:
        for xb, yb in loader:
            out, _ = augment.transform_batch(xb, yb)
        return out

    # torchvision's usual recipe, the same crop, flip and square: geometry on the uint8 image
    # (~5% faster than on floats; its padding is black, not the mean), then standardized.
    transform = v2.Compose(
        [
            v2.RandomCrop(SIDE, padding=PADDING, fill=0),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=False),
            v2.Normalize(mean.tolist(), std.tolist()),
            v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0),
        ]
    )
    per_sample = DataLoader(
        PerSample(images, labels, transform),
        batch_size=AUGMENT_BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(1),
        num_workers=0,
        pin_memory=device.type == "cuda",
    )

    def torchvision_loader() -> torch.Tensor:
        for xb, _yb in per_sample:
            out = xb.to(device, non_blocking=True)
        return out

    a, b = ours(), torchvision_loader()
    if a.shape != b.shape or a.dtype != b.dtype:
        raise RuntimeError(f"augmented batches differ: {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
    timing = alternate(ours, torchvision_loader, args.reps, args.warmups, sync)
    return timing.result(
        FIGURE,
        "augmentation (crop+flip+cutout): batched on the device vs per-sample v2 DataLoader",
        overhead=False,
        target=AUGMENT_TARGET,
        note=f"{n} images 3×{SIDE}×{SIDE}, batch {AUGMENT_BATCH}, DataLoader num_workers=0",
        extra={"images": n, "num_workers": 0},
    )


def run(args: argparse.Namespace) -> list[Result]:
    device = torch.device(args.device)
    rows = [
        loader_row(name, dm, n, args, device) for name, (dm, n) in datamodules(args.quick).items()
    ]
    return [*rows, augment_row(args, device)]
