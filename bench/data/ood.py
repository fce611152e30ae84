"""Out-of-distribution (OOD) evaluation sets: inputs a model should be unsure about.

A partner is either ``"noise"`` (Gaussian-noise images with the training set's statistics) or
another image dataset's official test split, brought into the in-distribution dataset's shape
and raw range and then standardized with the in-distribution *training* statistics, exactly as
the test set is. Partners must have the in-distribution dataset's channel count (no grey <-> colour
conversion); tabular datasets have none.

:func:`check_ood` runs before training (names and files), :func:`load_ood` after ``setup()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.base import ArrayDataModule
from bench.data.checks import is_int
from bench.data.vision import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
    TorchvisionDataModule,
)
from bench.errors import ConfigError, DatasetNotFoundError

KEY = "evaluation.ood.partners"
NOISE = "noise"
DATASETS: dict[str, type[TorchvisionDataModule]] = {
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "svhn": SVHNDataModule,
}


def allowed_partners(dm: ArrayDataModule) -> tuple[str, ...]:
    """Partners that fit ``dm``: noise and the other image sets with its channel count."""
    if not dm.is_image:
        return ()
    channels = dm.input_shape[0]
    same = [n for n, cls in DATASETS.items() if n != dm.name and cls.input_shape[0] == channels]
    return (NOISE, *same)


def ood_available(dm: ArrayDataModule, name: str, data_dir: Path | str | None) -> bool:
    """Whether partner ``name`` can be loaded: a file check only, nothing is read."""
    _check_name(dm, name)
    return name == NOISE or not _partner(name, data_dir).missing_files()


def check_ood(dm: ArrayDataModule, names: Sequence[str], data_dir: Path | str | None) -> None:
    """Before training: every partner is known, fits ``dm`` and has its files in ``data_dir``."""
    if len(set(names)) != len(names):
        raise ConfigError(f"{KEY} must not list a partner twice; got {list(names)}")
    for name in names:
        _check_name(dm, name)
        if name != NOISE and _partner(name, data_dir).missing_files():
            raise DatasetNotFoundError(_not_found_message(_partner(name, data_dir)))


def load_ood(
    dm: ArrayDataModule, name: str, data_dir: Path | str | None, max_samples: int, seed: int
) -> torch.Tensor:
    """The standardized inputs ``(N, *dm.input_shape)`` of partner ``name`` (CPU, float32).

    ``dm`` must be set up (its training statistics standardize the partner). At most
    ``max_samples`` samples; ``seed`` fixes the noise and the subset.
    """
    if not (is_int(max_samples) and max_samples >= 1):
        raise ConfigError(
            f"evaluation.ood.max_samples must be an integer >= 1; got {max_samples!r}"
        )
    check_ood(dm, [name], data_dir)
    if not dm.is_loaded:
        raise RuntimeError(f"{dm.name}: call setup() before load_ood()")
    if name == NOISE:
        return noise_images(dm, min(len(dm.tensors["test"][0]), max_samples), seed)
    return partner_images(dm, _partner(name, data_dir), max_samples, seed)


def noise_images(dm: ArrayDataModule, n: int, seed: int) -> torch.Tensor:
    """``n`` Gaussian-noise images, standardized.

    Each value is drawn independently with the raw training mean and std of its position, at the
    granularity ``dm`` standardizes with: per pixel for digits (so the noise keeps the average
    digit's outline, and pixels constant in training stay constant), per channel for the
    torchvision sets. Values are clipped to ``dm.raw_range``, as real images are.
    """
    assert dm.raw_range is not None and dm.feature_mean is not None and dm.feature_std is not None
    mean = torch.from_numpy(dm.feature_mean)
    std = torch.from_numpy(np.where(dm.standardizer.constant, 0.0, dm.feature_std))
    z = torch.randn((n, *dm.input_shape), generator=torch.Generator().manual_seed(seed))
    raw = (mean + std.float() * z).clamp(*dm.raw_range)
    return dm.standardize(raw)


def partner_images(
    dm: ArrayDataModule, partner: TorchvisionDataModule, max_samples: int, seed: int
) -> torch.Tensor:
    """The partner's official test images in ``dm``'s size and raw range, standardized.

    A random subset of ``max_samples`` (fixed by ``seed``, kept in file order) when larger.
    """
    x = _read_test_images(partner)
    if len(x) > max_samples:
        keep = np.random.default_rng(seed).choice(len(x), size=max_samples, replace=False)
        x = x[np.sort(keep)]
    images = resize(torch.from_numpy(x).to(torch.float32), dm.input_shape[1:])
    assert partner.raw_range is not None and dm.raw_range is not None
    return dm.standardize(rescale(images, partner.raw_range, dm.raw_range))


def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Images ``(N, C, H, W)`` resized to ``size`` = (H', W').

    Shrinking averages the source pixels each target pixel covers (``mode="area"``): it cannot
    alias, and it is how the 8x8 digits themselves were made (counts of set pixels in 4x4 blocks
    of 32x32 bitmaps), so a 28x28 image shrunk to 8x8 looks like a digit-style image. Enlarging
    (no supported pair needs it yet) interpolates bilinearly.
    """
    size = tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    shrink = all(s <= h for s, h in zip(size, images.shape[-2:], strict=True))
    mode = "area" if shrink else "bilinear"
    return F.interpolate(images, size=size, mode=mode)


def rescale(
    images: torch.Tensor, source: tuple[float, float], target: tuple[float, float]
) -> torch.Tensor:
    """Map raw values linearly from the ``source`` range onto the ``target`` range."""
    if source == target:
        return images
    (s_lo, s_hi), (t_lo, t_hi) = source, target
    return t_lo + (images - s_lo) * ((t_hi - t_lo) / (s_hi - s_lo))


# --------------------------------------------------------------------------- helpers


def _check_name(dm: ArrayDataModule, name: str) -> None:
    """One ``ConfigError`` line unless ``name`` is a partner that fits ``dm``."""
    allowed = allowed_partners(dm)
    if not dm.is_image:
        raise ConfigError(
            f"{KEY} must be [] for {dm.name}: tabular data has no out-of-distribution partners; "
            f"got {name!r}"
        )
    if name in allowed:
        return
    listed = ", ".join(allowed)
    if name == dm.name:
        why = f"{name} is the in-distribution dataset itself"
    elif name in DATASETS:
        why = f"{name} has {DATASETS[name].input_shape[0]} channel(s), {dm.name} has "
        why += f"{dm.input_shape[0]}"
    else:
        why = f"unknown partner {name!r}"
    raise ConfigError(f"{KEY} must name partners from [{listed}] for {dm.name}; {why}")


def _partner(name: str, data_dir: Path | str | None) -> TorchvisionDataModule:
    """The partner's datamodule, used only for its file layout and ``read_split``.

    ``data_dir=None`` falls back to the datamodules' own default (``BENCH_DATA_DIR`` or ./data).
    """
    return DATASETS[name](data_dir=None if data_dir is None else str(data_dir))


def _read_test_images(partner: TorchvisionDataModule) -> np.ndarray:
    try:
        return partner.read_split(train=False)[0]
    except RuntimeError as err:  # torchvision's word for missing or corrupted files
        if "Dataset not found" not in str(err):
            raise
        raise DatasetNotFoundError(_not_found_message(partner, "missing or corrupted")) from err


def _not_found_message(partner: TorchvisionDataModule, problem: str = "not found") -> str:
    missing = partner.missing_files() or partner.expected_files()
    example = missing[0].relative_to(partner.root)
    return (
        f"{KEY}: {partner.name} files {problem} in {partner.root} (e.g. {example}); point "
        "evaluation.ood.data_dir (or BENCH_DATA_DIR) at a folder in torchvision's layout (run "
        f"bench-train dataset={partner.name} dataset.download=true once to fetch it there), or "
        f"drop {partner.name} from {KEY}"
    )
