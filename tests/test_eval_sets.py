"""Evaluation sets: standardization of extra inputs, OOD partners, dataset shift, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from scipy.stats import norm
from sklearn.datasets import load_digits
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.data import (
    CIFAR10DataModule,
    DiabetesDataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
    SyntheticRegressionDataModule,
    TorchvisionDataModule,
    shift,
)
from bench.data.ood import check_ood, load_ood, ood_available
from bench.data.shift import check_corruptions, corrupt, default_corruptions
from bench.data.standardize import MIN_STD, Standardizer, TargetScaler
from bench.errors import ConfigError, DatasetNotFoundError
from tests.conftest import SHARED_TORCHVISION as SHARED

needs_shared = pytest.mark.skipif(
    not (SHARED / "MNIST" / "raw").is_dir() or not (SHARED / "FashionMNIST" / "raw").is_dir(),
    reason=f"offline MNIST / Fashion-MNIST copies not found at {SHARED}",
)


def ready(dm):
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    return ready(DigitsDataModule())


@pytest.fixture(scope="module")
def digits_raw(digits) -> dict[str, np.ndarray]:
    """The raw digits images (float64) of each split, read independently of the datamodule."""
    images = load_digits().images[:, None].astype(np.float64)
    return {split: images[digits.split_indices[split]] for split in ("train", "val", "test")}


@pytest.fixture(scope="module")
def mnist() -> MNISTDataModule:
    return ready(MNISTDataModule(data_dir=str(SHARED)))


def build(cls, tmp_path):
    """A datamodule (not set up); the torchvision ones look for files in ``tmp_path``."""
    return cls(data_dir=str(tmp_path)) if issubclass(cls, TorchvisionDataModule) else cls()


def one_line(err: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


# --------------------------------------------------------------------------- standardization


def test_standardizer_per_feature_matches_float64_statistics(digits_raw):
    x = digits_raw["train"].astype(np.float32)
    fitted = Standardizer(per_channel=False).fit(x)
    mean, std = digits_raw["train"].mean(0), digits_raw["train"].std(0)
    constant = std < MIN_STD
    assert constant.any() and (fitted.constant == constant).all()
    np.testing.assert_allclose(fitted.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(fitted.std, np.where(constant, 1.0, std), rtol=1e-6)
    assert fitted.mean.dtype == fitted.std.dtype == np.float32

    before = x.copy()
    z = fitted.transform(x)
    assert z.dtype == np.float32 and np.array_equal(x, before)  # the input is not modified
    expected = (digits_raw["train"] - mean) / np.where(constant, 1.0, std)
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
    back = fitted.inverse(torch.from_numpy(z)).double().numpy()
    np.testing.assert_allclose(back, digits_raw["train"], atol=1e-4)


def test_standardizer_per_channel_matches_float64_statistics():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(500, 3, 4, 5), dtype=np.uint8)
    x[:, 2] = 7  # a constant channel
    fitted = Standardizer(per_channel=True).fit(x)
    assert fitted.mean.shape == fitted.std.shape == (3, 1, 1)
    x64 = x.astype(np.float64)
    for c in range(3):
        assert fitted.mean[c, 0, 0] == pytest.approx(x64[:, c].mean(), rel=1e-6)
    assert fitted.std[0, 0, 0] == pytest.approx(x64[:, 0].std(), rel=1e-6)
    assert fitted.std[1, 0, 0] == pytest.approx(x64[:, 1].std(), rel=1e-6)
    assert fitted.std[2, 0, 0] == 1.0 and fitted.constant[2, 0, 0]
    z = fitted.transform(x)
    assert (z[:, 2] == 0).all()
    # The torch path gives the same bits as the numpy one.
    assert torch.equal(fitted.transform_tensor(torch.from_numpy(x)), torch.from_numpy(z))


def test_target_scaler_matches_numpy():
    y = np.array([3.0, 5.0, 10.0, -2.0])
    scaler = TargetScaler.fit(y)
    assert (scaler.mean, scaler.std) == pytest.approx((y.mean(), y.std()))
    np.testing.assert_allclose(scaler.transform(y).numpy(), (y - y.mean()) / y.std(), rtol=1e-6)
    assert TargetScaler.fit(np.full(5, 2.0)).std == 1.0


def test_standardize_reproduces_the_test_tensor_exactly(digits, digits_raw):
    raw = digits_raw["test"].astype(np.float32)
    expected = digits.tensors["test"][0]
    assert torch.equal(digits.standardize(raw), expected)
    assert torch.equal(digits.standardize(torch.from_numpy(raw)), expected)
    assert digits.feature_mean is digits.standardizer.mean  # the old attribute names still work


def test_unstandardize_standardize_round_trip(digits, digits_raw):
    x = digits.tensors["test"][0]
    raw = digits.unstandardize(x)
    np.testing.assert_allclose(raw.double().numpy(), digits_raw["test"], atol=1e-4)
    torch.testing.assert_close(digits.standardize(raw), x, rtol=1e-5, atol=1e-4)


def test_standardize_needs_setup_and_the_right_shape(digits):
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().standardize(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"\(N, \*\(1, 8, 8\)\)"):
        digits.standardize(np.zeros((2, 1, 28, 28)))


# --------------------------------------------------------------------------- OOD: noise


def censored_normal_moments(mu, sigma, lo, hi):
    """Mean and std of clip(N(mu, sigma^2), lo, hi), in closed form."""
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    inside = norm.cdf(b) - norm.cdf(a)
    m1 = lo * norm.cdf(a) + hi * norm.sf(b) + mu * inside + sigma * (norm.pdf(a) - norm.pdf(b))
    m2 = (
        lo**2 * norm.cdf(a)
        + hi**2 * norm.sf(b)
        + mu**2 * inside
        + 2 * mu * sigma * (norm.pdf(a) - norm.pdf(b))
        + sigma**2 * (inside + a * norm.pdf(a) - b * norm.pdf(b))
    )
    return m1, np.sqrt(m2 - m1**2)


def test_noise_partner_for_digits_follows_per_pixel_training_statistics(digits, digits_raw):
    noise = load_ood(digits, "noise", None, max_samples=10**6, seed=0)
    n = len(digits_raw["test"])  # as many as the in-distribution test set
    assert noise.shape == (n, 1, 8, 8) and noise.dtype == torch.float32
    raw = digits.unstandardize(noise).double().numpy()
    assert raw.min() >= -1e-4 and raw.max() <= 16 + 1e-4

    mu, sigma = digits_raw["train"].mean(0), digits_raw["train"].std(0)
    varying = sigma > 0.5  # pixels with a clear spread (the near-constant ones are checked below)
    exp_mean, exp_std = censored_normal_moments(mu[varying], sigma[varying], 0.0, 16.0)
    got_mean, got_std = raw.mean(0)[varying], raw.std(0)[varying]
    # Per-pixel sample of n = 360: 5 standard errors on the mean, 25 % on the std.
    assert (np.abs(got_mean - exp_mean) < 5 * exp_std / math.sqrt(n)).all()
    assert (np.abs(got_std - exp_std) < 0.25 * exp_std).all()
    assert (raw[:, sigma == 0] == 0).all()  # always-blank training pixels stay blank

    assert len(load_ood(digits, "noise", None, max_samples=50, seed=0)) == 50
    assert torch.equal(noise, load_ood(digits, "noise", None, 10**6, seed=0))
    assert not torch.equal(noise, load_ood(digits, "noise", None, 10**6, seed=1))


@needs_shared
def test_noise_partner_for_mnist_follows_per_channel_statistics(mnist):
    noise = load_ood(mnist, "noise", None, max_samples=2000, seed=0)
    assert noise.shape == (2000, 1, 28, 28)
    raw = mnist.unstandardize(noise).double().numpy()
    assert raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3
    train = torchvision.datasets.MNIST(str(SHARED), train=True).data.numpy()
    counts = np.bincount(train[mnist.split_indices["train"]].ravel(), minlength=256)
    values = np.arange(256.0)
    mean = (counts * values).sum() / counts.sum()  # exact training statistics, via a histogram
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    exp_mean, exp_std = censored_normal_moments(mean, std, 0.0, 255.0)
    assert raw.mean() == pytest.approx(exp_mean, rel=0.01)
    assert raw.std() == pytest.approx(exp_std, rel=0.01)


# --------------------------------------------------------------------------- OOD: datasets


def area_resize_28_to_8(image: np.ndarray) -> np.ndarray:
    """Average of the source pixels each target pixel's window covers, written with loops."""
    out = np.empty((8, 8))
    for i in range(8):
        r0, r1 = (i * 28) // 8, -((-(i + 1) * 28) // 8)
        for j in range(8):
            c0, c1 = (j * 28) // 8, -((-(j + 1) * 28) // 8)
            out[i, j] = image[r0:r1, c0:c1].mean()
    return out


@needs_shared
def test_fashion_mnist_shrunk_to_digits(digits, digits_raw):
    full = load_ood(digits, "fashion_mnist", SHARED, max_samples=10000, seed=0)
    assert full.shape == (10000, 1, 8, 8)
    raw = digits.unstandardize(full).double().numpy()
    assert raw.min() >= -1e-4 and raw.max() <= 16 + 1e-4 and raw.max() > 15

    images = torchvision.datasets.FashionMNIST(str(SHARED), train=False).data.double().numpy()
    for k in (0, 17, 4321, 9999):
        expected = area_resize_28_to_8(images[k]) * 16 / 255
        np.testing.assert_allclose(raw[k, 0], expected, atol=1e-4)
    # Standardized with the digits training statistics (per pixel).
    mean, std = digits_raw["train"].mean(0), digits_raw["train"].std(0)
    expected = (raw[:5] - mean) / np.where(std < MIN_STD, 1, std)
    np.testing.assert_allclose(full[:5].double().numpy(), expected, rtol=1e-4, atol=1e-4)

    # A subset: max_samples rows of the full set, in file order, fixed by the seed.
    sub = load_ood(digits, "fashion_mnist", SHARED, max_samples=100, seed=5)
    rows = [torch.nonzero((full == s).flatten(1).all(1)).flatten() for s in sub]
    assert all(len(r) >= 1 for r in rows)
    first = torch.stack([r[0] for r in rows])
    assert len(first.unique()) == 100 and (first.diff() > 0).all()
    assert torch.equal(sub, load_ood(digits, "fashion_mnist", SHARED, 100, seed=5))
    assert not torch.equal(sub, load_ood(digits, "fashion_mnist", SHARED, 100, seed=6))


@needs_shared
@pytest.mark.parametrize("direction", ["mnist->fashion_mnist", "fashion_mnist->mnist"])
def test_mnist_and_fashion_mnist_are_partners(direction, mnist):
    source, partner = direction.split("->")
    dm = mnist if source == "mnist" else ready(FashionMNISTDataModule(data_dir=str(SHARED)))
    assert partner in dm.ood_partners and ood_available(dm, partner, SHARED)
    got = load_ood(dm, partner, SHARED, max_samples=10000, seed=0)
    tv = torchvision.datasets.MNIST if partner == "mnist" else torchvision.datasets.FashionMNIST
    raw = tv(str(SHARED), train=False).data.numpy()[:, None].astype(np.float32)
    expected = (raw - dm.feature_mean) / dm.feature_std  # same size and range: no resampling
    assert torch.equal(got, torch.from_numpy(expected))


@pytest.mark.parametrize(
    ("cls", "partner"), [(CIFAR10DataModule, "svhn"), (SVHNDataModule, "cifar10")]
)
def test_missing_partner_files_are_one_line_errors(cls, partner, tmp_path):
    dm = cls(data_dir=str(tmp_path))
    empty = tmp_path / "empty"
    assert partner in dm.ood_partners
    assert not ood_available(dm, partner, empty) and ood_available(dm, "noise", empty)
    with pytest.raises(DatasetNotFoundError) as err:
        check_ood(dm, ["noise", partner], empty)
    one_line(err, partner, str(empty), "evaluation.ood.partners", "evaluation.ood.data_dir")
    with pytest.raises(DatasetNotFoundError):
        load_ood(dm, partner, empty, max_samples=10, seed=0)


@pytest.mark.parametrize(
    ("cls", "names", "expected"),
    [
        (MNISTDataModule, ["imagenet"], "unknown partner 'imagenet'"),
        (MNISTDataModule, ["svhn"], "svhn has 3 channel(s), mnist has 1"),
        (CIFAR10DataModule, ["fashion_mnist"], "fashion_mnist has 1 channel(s), cifar10 has 3"),
        (DigitsDataModule, ["digits"], "in-distribution dataset itself"),
        (DigitsDataModule, ["noise", "noise"], "twice"),
        (DiabetesDataModule, ["noise"], "must be [] for diabetes"),
    ],
)
def test_bad_partners_are_one_line_config_errors(cls, names, expected, tmp_path):
    dm = build(cls, tmp_path)
    with pytest.raises(ConfigError) as err:
        check_ood(dm, names, tmp_path)
    message = one_line(err, expected)
    assert message.startswith("evaluation.ood.partners")
    assert not isinstance(err.value, DatasetNotFoundError)


def test_max_samples_must_be_positive(digits):
    with pytest.raises(ConfigError, match=r"^evaluation\.ood\.max_samples"):
        load_ood(digits, "noise", None, max_samples=0, seed=0)


@pytest.mark.parametrize(
    ("cls", "partners"),
    [
        (DigitsDataModule, ("noise", "fashion_mnist")),
        (MNISTDataModule, ("fashion_mnist", "noise")),
        (FashionMNISTDataModule, ("mnist", "noise")),
        (CIFAR10DataModule, ("svhn", "noise")),
        (SVHNDataModule, ("cifar10", "noise")),
        (DiabetesDataModule, ()),
        (SyntheticRegressionDataModule, ()),
    ],
)
def test_default_partners_and_raw_ranges(cls, partners, tmp_path):
    dm = build(cls, tmp_path)
    assert dm.ood_partners == partners
    for name in partners:  # every default is a valid partner (the files need not be here)
        ood_available(dm, name, tmp_path)
    expected_range = {DigitsDataModule: (0, 16)}.get(cls, (0, 255) if dm.is_image else None)
    assert dm.raw_range == expected_range


# --------------------------------------------------------------------------- shift


def test_default_and_unknown_corruptions():
    assert default_corruptions(DigitsDataModule()) == (
        "gaussian_noise",
        "rotation",
        "blur",
        "contrast",
    )
    assert default_corruptions(DiabetesDataModule()) == ("gaussian_noise",)
    for dm, name in [(DigitsDataModule(), "fog"), (DiabetesDataModule(), "rotation")]:
        with pytest.raises(ConfigError) as err:
            check_corruptions(dm, ["gaussian_noise", name])
        assert one_line(err, repr(name)).startswith("evaluation.shift.corruptions")
    x = torch.zeros(3, 1, 8, 8)
    with pytest.raises(ConfigError, match=r"^evaluation\.shift\.severities"):
        corrupt(DigitsDataModule(), x, "blur", 6, seed=0)


@pytest.mark.parametrize("make", [DigitsDataModule, DiabetesDataModule], ids=["digits", "diabetes"])
def test_severity_zero_is_clean_and_distance_grows(make):
    dm = ready(make())
    x = dm.tensors["test"][0]
    for name in default_corruptions(dm):
        assert torch.equal(corrupt(dm, x, name, 0, seed=0), x)
        distances = [(corrupt(dm, x, name, s, seed=0) - x).abs().mean().item() for s in range(1, 6)]
        assert distances[0] > 0 and all(np.diff(distances) > 0), (name, distances)


def test_image_corruptions_stay_in_the_raw_range(digits):
    x = digits.tensors["test"][0]
    for name in default_corruptions(digits):
        raw = digits.unstandardize(corrupt(digits, x, name, 5, seed=0))
        assert raw.min() >= -1e-3 and raw.max() <= 16 + 1e-3, name
    noisy = digits.unstandardize(corrupt(digits, x, "gaussian_noise", 5, seed=0))
    assert (noisy.abs() < 1e-3).float().mean() > 0.1  # clipping piles values up at 0 ...
    assert ((noisy - 16).abs() < 1e-3).float().mean() > 0.01  # ... and at 16


def test_rotation_matches_torchvision_rotate(digits, digits_raw, monkeypatch):
    x = digits.tensors["test"][0]
    k = 11
    image = torch.from_numpy(digits_raw["test"][k]).float()  # (1, 8, 8)
    for severity in (1, 3):
        angle = shift.IMAGE_SEVERITIES["rotation"][severity - 1]
        assert angle == 15.0 * severity
        expected = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR, fill=[0.0])
        got = digits.unstandardize(corrupt(digits, x, "rotation", severity, seed=0))[k]
        torch.testing.assert_close(got, expected.clamp(0, 16), atol=1e-4, rtol=0)
    # A quarter turn (counter-clockwise) moves pixels exactly: compare with torch.rot90.
    monkeypatch.setitem(shift.IMAGE_SEVERITIES, "rotation", (90.0, 0, 0, 0, 0))
    got = digits.unstandardize(corrupt(digits, x, "rotation", 1, seed=0))
    expected = torch.rot90(torch.from_numpy(digits_raw["test"]).float(), 1, dims=(-2, -1))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_contrast_scales_each_image_around_its_mean(digits):
    x = digits.tensors["test"][0]
    raw = digits.unstandardize(x).double()
    out = digits.unstandardize(corrupt(digits, x, "contrast", 2, seed=0)).double()
    c = shift.IMAGE_SEVERITIES["contrast"][1]
    torch.testing.assert_close(out.mean((-2, -1)), raw.mean((-2, -1)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std((-2, -1)), c * raw.std((-2, -1)), atol=1e-4, rtol=0)


def test_blur_sigma_is_the_documented_fraction_of_the_side(digits):
    """A blurred point spreads with variance sigma^2 along each axis (sigma = fraction x 8)."""
    impulse = np.zeros((1, 1, 8, 8), dtype=np.float32)
    impulse[0, 0, 4, 4] = 16.0
    x = digits.standardize(impulse)
    out = digits.unstandardize(corrupt(digits, x, "blur", 5, seed=0))[0, 0].double().numpy()
    sigma = shift.IMAGE_SEVERITIES["blur"][4] * 8
    assert sigma == pytest.approx(1.0)
    offsets = np.arange(8) - 4.0
    for profile in (out.sum(1), out.sum(0)):  # mass per row, per column
        variance = (profile * offsets**2).sum() / profile.sum()
        # A Gaussian sampled at integers and cut at 3 sigma has variance 0.996 sigma^2; the
        # reflect padding folds the tail at the far border back in (+3 %).
        assert variance == pytest.approx(sigma**2, rel=0.05)


def test_tabular_noise_has_the_documented_std_and_follows_the_seed():
    dm = ready(DiabetesDataModule())
    x = dm.tensors["test"][0]
    for severity, std in enumerate(shift.TABULAR_SEVERITIES["gaussian_noise"], start=1):
        noise = corrupt(dm, x, "gaussian_noise", severity, seed=0) - x
        # 890 values: the sample std is within 10 % (about 4 standard errors).
        assert noise.std().item() == pytest.approx(std, rel=0.1)
    a = corrupt(dm, x, "gaussian_noise", 3, seed=0)
    assert torch.equal(a, corrupt(dm, x, "gaussian_noise", 3, seed=0))
    assert not torch.equal(a, corrupt(dm, x, "gaussian_noise", 3, seed=1))


# --------------------------------------------------------------------------- bootstrap


@pytest.fixture(scope="module")
def synthetic() -> SyntheticRegressionDataModule:
    # Continuous targets: each training sample is identified by its y.
    return ready(SyntheticRegressionDataModule(n_samples=20000, batch_size=1000))


def epoch_targets(loader) -> torch.Tensor:
    return torch.cat([y for _, y in loader])


def test_bootstrap_draws_with_replacement_per_seed(synthetic):
    dm = synthetic
    y_train = dm.tensors["train"][1]
    n = dm.n_train
    try:
        dm.set_bootstrap(7)
        torch.manual_seed(0)
        epoch = epoch_targets(dm.train_dataloader())
        assert len(epoch) == n == 14400
        # Distinct share of a bootstrap resample: 1 - (1 - 1/n)^n = 0.632; its sd at n = 14400 is
        # sqrt((e^-1 - 2 e^-2) / n) = 0.0026, so +-0.012 is about 4.5 sd.
        unique = len(epoch.unique()) / n
        assert abs(unique - (1 - (1 - 1 / n) ** n)) < 0.012
        assert torch.isin(epoch, y_train).all()
        idx = torch.from_numpy(dm.bootstrap_indices())
        torch.testing.assert_close(epoch.sort().values, y_train[idx].sort().values)

        # Same seed: same resample; batch order from the global seed; another seed: another one.
        torch.manual_seed(1)
        again = epoch_targets(dm.train_dataloader())
        assert torch.equal(again.sort().values, epoch.sort().values)
        assert not torch.equal(again, epoch)
        dm.set_bootstrap(8)
        assert not torch.equal(
            epoch_targets(dm.train_dataloader()).sort().values, epoch.sort().values
        )

        # Evaluation loaders keep the original splits, in order.
        assert torch.equal(epoch_targets(dm.eval_dataloader("train")), y_train)
        assert torch.equal(epoch_targets(dm.train_eval_dataloader()), y_train)
        assert torch.equal(epoch_targets(dm.test_dataloader()), dm.tensors["test"][1])
    finally:
        dm.set_bootstrap(None)
    assert dm.bootstrap_indices() is None
    assert torch.equal(epoch_targets(dm.train_dataloader()).sort().values, y_train.sort().values)


def test_bootstrap_on_the_dataloader_path_and_bad_seeds():
    fast = ready(SyntheticRegressionDataModule(batch_size=64))
    slow = ready(SyntheticRegressionDataModule(batch_size=64, in_memory=False))
    for dm in (fast, slow):
        dm.set_bootstrap(3)
    assert isinstance(slow.train_dataloader(), torch.utils.data.DataLoader)
    assert len(slow.train_dataloader()) == len(fast.train_dataloader())
    a, b = epoch_targets(fast.train_dataloader()), epoch_targets(slow.train_dataloader())
    assert torch.equal(a.sort().values, b.sort().values)
    assert len(b.unique()) < len(b)  # repeats: drawn with replacement
    with pytest.raises(ValueError, match="bootstrap seed"):
        fast.set_bootstrap(-1)
