"""Dataset shift: the test set corrupted at severities 1..5 (Ovadia et al. 2019, "Can you trust
your model's uncertainty?", after Hendrycks & Dietterich 2019, "Benchmarking neural network
robustness to common corruptions and perturbations").

Images are corrupted in raw units (undo the standardization, corrupt, clip to the dataset's raw
range, standardize again with the training statistics) so that a severity means the same thing
whatever the statistics; tabular inputs get noise added to the standardized features directly.
Severity 0 is the clean set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.data.base import ArrayDataModule
from bench.data.checks import is_int
from bench.errors import ConfigError

MAX_SEVERITY = 5

# Parameter of each corruption at severities 1..5 (index severity - 1).
IMAGE_SEVERITIES: dict[str, tuple[float, ...]] = {
    # Std of additive Gaussian noise per pixel, as a fraction of the raw range (Hendrycks &
    # Dietterich's CIFAR-10-C gaussian_noise c, defined on images scaled to [0, 1]).
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    # Rotation angle in degrees, counter-clockwise about the image centre, bilinear, corners
    # filled with the low end of the raw range (black), as in Ovadia et al.'s rotated MNIST.
    "rotation": (15.0, 30.0, 45.0, 60.0, 75.0),
    # Gaussian blur sigma as a fraction of the image side, so one rule serves every size: the
    # 8x8 digits get 0.4..1 px (blurred, still legible; a fixed sigma of a few pixels, as in
    # ImageNet-C, would wipe an 8x8 digit out), 28x28 images 1.4..3.5 px, 32x32 photos 1.6..4 px
    # (stronger than CIFAR-10-C's 0.4..1 px, the price of visible blur on 8x8 digits at
    # severity 1).
    "blur": (0.05, 0.0625, 0.075, 0.1, 0.125),
    # Contrast factor c: each image becomes mean + c * (x - mean), around its own per-channel
    # mean (Hendrycks & Dietterich's ImageNet-C contrast values).
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
}
TABULAR_SEVERITIES: dict[str, tuple[float, ...]] = {
    # Std of Gaussian noise added to the standardized features (1.0 = one training std).
    "gaussian_noise": (0.1, 0.25, 0.5, 0.75, 1.0),
}


def _table(dm: ArrayDataModule) -> dict[str, tuple[float, ...]]:
    return IMAGE_SEVERITIES if dm.is_image else TABULAR_SEVERITIES


def default_corruptions(dm: ArrayDataModule) -> tuple[str, ...]:
    """Every corruption that applies to ``dm``: four for images, Gaussian noise for tabular data."""
    return tuple(_table(dm))


def check_corruptions(dm: ArrayDataModule, names: Sequence[str]) -> None:
    """One ``ConfigError`` line for a corruption that is unknown or does not apply to ``dm``."""
    allowed = default_corruptions(dm)
    for name in names:
        if name not in allowed:
            kind = "image" if dm.is_image else "tabular"
            raise ConfigError(
                f"evaluation.shift.corruptions must name corruptions from [{', '.join(allowed)}] "
                f"for {dm.name} ({kind} data); got {name!r}"
            )


def corrupt(
    dm: ArrayDataModule, x: torch.Tensor, corruption: str, severity: int, seed: int
) -> torch.Tensor:
    """``x`` (standardized inputs, e.g. the test tensor) under ``corruption`` at ``severity``.

    Severity 0 returns ``x`` itself. ``seed`` fixes the noise; the other corruptions are
    deterministic. The result is standardized and on ``x``'s device.
    """
    check_corruptions(dm, [corruption])
    if not (is_int(severity) and 0 <= severity <= MAX_SEVERITY):
        raise ConfigError(
            f"evaluation.shift.severities must be integers in [0, {MAX_SEVERITY}]; got {severity!r}"
        )
    if severity == 0:
        return x
    param = _table(dm)[corruption][severity - 1]
    generator = torch.Generator().manual_seed(seed)
    if not dm.is_image:  # only gaussian_noise applies
        return x + param * torch.randn(x.shape, generator=generator).to(x.device)

    assert dm.raw_range is not None
    lo, hi = dm.raw_range
    raw = dm.unstandardize(x)
    if corruption == "gaussian_noise":
        noise = torch.randn(raw.shape, generator=generator).to(raw.device)
        raw = raw + param * (hi - lo) * noise
    elif corruption == "rotation":
        fill = [lo] * raw.shape[1]
        raw = TF.rotate(raw, param, interpolation=InterpolationMode.BILINEAR, fill=fill)
    elif corruption == "blur":
        raw = _blur(raw, param)
    elif corruption == "contrast":
        mean = raw.mean(dim=(-2, -1), keepdim=True)
        raw = mean + param * (raw - mean)
    return dm.standardize(raw.clamp(lo, hi))


def _blur(raw: torch.Tensor, fraction: float) -> torch.Tensor:
    """Gaussian blur with sigma = ``fraction`` x the image side, per axis.

    The kernel spans +-3 sigma (odd size), capped so that torchvision's reflect padding stays
    smaller than the image.
    """
    sides = (raw.shape[-1], raw.shape[-2])  # torchvision takes (x, y): width first
    sigma = [fraction * side for side in sides]
    pairs = zip(sigma, sides, strict=True)
    kernel = [min(2 * math.ceil(3 * s) + 1, 2 * side - 1) for s, side in pairs]
    return TF.gaussian_blur(raw, kernel_size=kernel, sigma=sigma)
