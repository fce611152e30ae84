"""Data-side regularizers (batch transforms) against their definitions and independent references:
torch.eye one-hots, scipy's Beta distribution, torchvision's crop/flip/rotate, scikit-learn's ridge
and cross_entropy's own label smoothing.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from scipy import stats
from sklearn.linear_model import Ridge
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.build import build_regularizers
from bench.data.digits import DigitsDataModule
from bench.data.regression import DiabetesDataModule, SyntheticRegressionDataModule
from bench.data.vision import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
)
from bench.errors import ConfigError
from bench.evaluate import EvalSettings, evaluate
from bench.module import BenchModule
from bench.regularizers.augment import Augment, rotate
from bench.regularizers.cutmix import CutMix
from bench.regularizers.input_noise import InputNoise
from bench.regularizers.label_smoothing import LabelSmoothing
from bench.regularizers.mixup import MixUp
from bench.train import run
from bench.uncertainty.base import OutputHead
from bench.uncertainty.deterministic import Deterministic

K = 10  # classes in every classification dataset here
ONLY = dict(
    crop_padding=0, hflip=False, rotation_degrees=0, brightness=0, contrast=0, cutout_size=0
)  # every augmentation off; a test switches on the one it checks


def ready(reg, datamodule):
    reg.setup(datamodule, nn.Identity())
    return reg


def image_dm(shape=(3, 32, 32), name="cifar10"):
    """Just what ``setup`` reads, for image sizes no real dataset has."""
    return SimpleNamespace(
        name=name, task="classification", is_image=True, input_shape=shape, num_classes=K
    )


def is_interval(mask: torch.Tensor) -> bool:
    idx = mask.nonzero().flatten()
    return len(idx) > 0 and bool((idx == torch.arange(idx[0], idx[0] + len(idx))).all())


def is_rectangle(mask: torch.Tensor) -> bool:
    """``mask`` (H, W) is rows × cols for two contiguous, non-empty intervals."""
    rows, cols = mask.any(1), mask.any(0)
    return is_interval(rows) and is_interval(cols) and torch.equal(mask, rows[:, None] & cols)


# ---------------------------------------------------------------------------------------- mixup
@pytest.mark.parametrize("per_sample", [False, True])
def test_mixup_is_the_convex_combination_of_inputs_and_one_hot_labels(per_sample):
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(K, (64,))
    mixup = ready(MixUp(alpha=0.4, per_sample=per_sample), DigitsDataModule())
    x_mix, y_mix = mixup.transform_batch(x, y)
    perm, lam = mixup.last_perm, mixup.last_weight.float()
    assert torch.equal(perm.sort().values, torch.arange(64)) and (perm != torch.arange(64)).any()
    assert lam.unique().numel() == (64 if per_sample else 1)
    assert ((lam >= 0) & (lam <= 1)).all()
    onehot = torch.eye(K)
    expected_y = lam[:, None] * onehot[y] + (1 - lam[:, None]) * onehot[y[perm]]
    torch.testing.assert_close(y_mix, expected_y, rtol=0, atol=1e-7)
    lam4 = lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(x_mix, lam4 * x + (1 - lam4) * x[perm], rtol=0, atol=1e-6)
    torch.testing.assert_close(y_mix.sum(1), torch.ones(64), rtol=0, atol=1e-6)
    # The module's loss takes these as class probabilities.
    assert y_mix.dtype == torch.float32 and y_mix.shape == (64, K)


def test_mixup_mixes_soft_targets_directly_and_converts_integer_inputs():
    torch.manual_seed(1)
    x = torch.randint(0, 255, (32, 3, 4, 4), dtype=torch.uint8)
    soft = torch.distributions.Dirichlet(torch.ones(K)).sample((32,))
    mixup = ready(MixUp(alpha=1.0, per_sample=True), CIFAR10DataModule())
    x_mix, y_mix = mixup.transform_batch(x, soft)
    perm, lam = mixup.last_perm, mixup.last_weight.float()[:, None]
    assert x_mix.is_floating_point()
    torch.testing.assert_close(y_mix, lam * soft + (1 - lam) * soft[perm], rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_lambda_is_beta_distributed(alpha):
    """Mean 1/2 and variance 1/(4(2α+1)) of Beta(α, α); KS test against scipy's Beta."""
    var = 1 / (4 * (2 * alpha + 1))
    torch.manual_seed(2)
    # per_sample: 200,000 draws in one batch; SE(mean) ≈ 1e-3, SE(var) ≈ 2e-3 relative.
    mixup = ready(MixUp(alpha=alpha, per_sample=True), DigitsDataModule())
    n = 200_000
    mixup.transform_batch(torch.randn(n, 1), torch.randint(K, (n,)))
    lam = mixup.last_weight.double().numpy()
    assert abs(lam.mean() - 0.5) < 0.005
    assert lam.var() == pytest.approx(var, rel=0.03)
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    # per batch: one shared λ per call, 3,000 calls; SE(mean) ≤ 0.008.
    mixup = ready(MixUp(alpha=alpha, per_sample=False), DigitsDataModule())
    draws = []
    for _ in range(3000):
        mixup.transform_batch(torch.randn(8, 1), torch.randint(K, (8,)))
        assert mixup.last_weight.unique().numel() == 1
        draws.append(mixup.last_weight[0].item())
    draws = np.array(draws)
    assert abs(draws.mean() - 0.5) < 0.03
    assert draws.var() == pytest.approx(var, rel=0.1)
    assert stats.kstest(draws, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


# --------------------------------------------------------------------------------------- cutmix
@pytest.mark.parametrize("per_sample", [False, True])
def test_cutmix_pastes_one_box_and_weights_labels_by_its_area(per_sample):
    torch.manual_seed(3)
    n, h, w = 256, 32, 32
    x, y = torch.randn(n, 3, h, w), torch.randint(K, (n,))
    cutmix = ready(CutMix(alpha=1.0, per_sample=per_sample), CIFAR10DataModule())
    x_mix, y_mix = cutmix.transform_batch(x, y)
    perm, weight = cutmix.last_perm, cutmix.last_weight
    onehot = torch.eye(K)
    boxes = []
    for i in range(n):
        own, pasted = x_mix[i] == x[i], x_mix[i] == x[perm[i]]
        assert (own | pasted).all()  # every pixel comes from one of the two images
        if perm[i] == i:
            continue
        box = pasted.all(0)
        assert torch.equal(box, pasted.any(0))  # all channels together
        if box.any():
            assert is_rectangle(box)
        boxes.append(box)
        assert weight[i].item() == 1 - box.sum().item() / (h * w)  # exact: k/1024 is binary
    w32 = weight.float()[:, None]
    expected_y = w32 * onehot[y] + (1 - w32) * onehot[y[perm]]
    torch.testing.assert_close(y_mix, expected_y, rtol=0, atol=1e-7)
    distinct = len({tuple(b.flatten().tolist()) for b in boxes})
    if per_sample:
        assert distinct > n // 2
        assert 0 < weight.min() < 0.5 < weight.max() <= 1  # λ ~ U(0, 1) spreads the areas
    else:
        assert distinct == 1  # one box per batch, as in the paper


def test_cutmix_box_sides_are_sqrt_one_minus_lambda_around_a_uniform_centre():
    """α = 10⁴ pins λ to 1/2 (sd 0.0035; any λ in (0.44, 0.52] gives the same box): unclipped
    boxes are 2·⌊½·√(1−λ)·32⌋ = 22 px square (the authors' rounding), area 0.47 ≈ 1 − λ."""
    torch.manual_seed(14)
    cutmix = ready(CutMix(alpha=1e4, per_sample=True), CIFAR10DataModule())
    x = torch.randn(400, 1, 32, 32)
    x_mix, _ = cutmix.transform_batch(x, torch.randint(K, (400,)))
    perm = cutmix.last_perm
    sides = []
    for i in range(len(x)):
        if perm[i] != i:
            box = (x_mix[i] != x[i]).all(0)
            sides.append((box.any(1).sum().item(), box.any(0).sum().item()))
    assert max(max(s) for s in sides) == 22
    # Unclipped needs both centre coordinates in [11, 21]: (11/32)² = 12 % of uniform centres.
    assert sum(s == (22, 22) for s in sides) > 0.05 * len(sides)
    assert sum(min(s) < 22 for s in sides) > 0.75 * len(sides)


def test_cutmix_and_mixup_refuse_what_they_cannot_mix():
    with pytest.raises(ConfigError, match="cutmix needs image data, not dataset=diabetes"):
        ready(
            CutMix(),
            SimpleNamespace(name="diabetes", task="classification", is_image=False, num_classes=K),
        )
    for reg in (MixUp(), CutMix(), LabelSmoothing()):
        with pytest.raises(
            ConfigError, match=f"{reg.name} needs a classification dataset, not dataset=diabetes"
        ):
            ready(reg, DiabetesDataModule())


# -------------------------------------------------------------------------------------- augment
def test_cutout_zeroes_exactly_one_clipped_square_per_image():
    torch.manual_seed(4)
    for dm, size in [(DigitsDataModule(), "auto"), (CIFAR10DataModule(), 5)]:
        aug = ready(Augment(**{**ONLY, "cutout_size": size}), dm)
        s = aug.cutout_size
        c, h, w = dm.input_shape
        x = torch.randn(512, c, h, w)  # no exact zeros
        out, _ = aug.transform_batch(x, torch.zeros(512, dtype=torch.long))
        # A clipped square's row (column) range is [c - s//2, c - s//2 + s) ∩ [0, H) for a centre
        # c on the grid: the allowed ranges, written out.
        allowed = {(max(0, c0 - s // 2), min(h, c0 - s // 2 + s)) for c0 in range(h)}
        clipped = inside = 0
        for i in range(len(x)):
            zero = out[i] == 0
            assert torch.equal(out[i][~zero], x[i][~zero])  # the rest is untouched
            square = zero.all(0)
            assert torch.equal(square, zero.any(0)) and is_rectangle(square)
            rows, cols = square.any(1).nonzero().flatten(), square.any(0).nonzero().flatten()
            assert (rows[0].item(), rows[-1].item() + 1) in allowed
            assert (cols[0].item(), cols[-1].item() + 1) in allowed
            full = len(rows) == s and len(cols) == s
            inside += full
            clipped += not full
        assert inside > 0 and clipped > 0  # centres spread over the whole image
    assert ready(Augment(), DigitsDataModule()).cutout_size == 4
    assert ready(Augment(), MNISTDataModule()).cutout_size == 14
    assert ready(Augment(), CIFAR10DataModule()).cutout_size == 16


def test_auto_crop_padding_and_hflip_follow_the_dataset():
    expected = {  # dataset: (crop padding = round(H/8), hflip)
        DigitsDataModule: (1, False),
        MNISTDataModule: (4, False),
        SVHNDataModule: (4, False),
        FashionMNISTDataModule: (4, True),
        CIFAR10DataModule: (4, True),
    }
    for cls, (pad, flip) in expected.items():
        aug = ready(Augment(), cls())
        assert (aug.crop_padding, aug.hflip) == (pad, flip), cls.name
    forced = ready(Augment(crop_padding=2, hflip=True, cutout_size=3), DigitsDataModule())
    assert (forced.crop_padding, forced.hflip, forced.cutout_size) == (2, True, 3)
    assert not ready(Augment(hflip=False), CIFAR10DataModule()).hflip


@pytest.mark.parametrize("dm", [DigitsDataModule(), CIFAR10DataModule()], ids=lambda d: d.name)
def test_crops_are_per_sample_zero_padded_shifts(dm):
    torch.manual_seed(5)
    aug = ready(Augment(**{**ONLY, "crop_padding": "auto"}), dm)
    p = aug.crop_padding
    c, h, w = dm.input_shape
    img = torch.randn(c, h, w)
    out, _ = aug.transform_batch(img.expand(256, c, h, w).clone(), torch.zeros(256).long())
    # torchvision's RandomCrop(padding=p) as the reference: pad with zeros, take a window.
    padded = TF.pad(img, [p])
    candidates = {
        (top, left): TF.crop(padded, top, left, h, w)
        for top in range(2 * p + 1)
        for left in range(2 * p + 1)
    }
    offsets = []
    for o in out:
        match = [tl for tl, ref in candidates.items() if torch.equal(o, ref)]
        assert len(match) == 1
        offsets.append(match[0])
    # Each image draws its own offset: nearly all (2p+1)² offsets appear in 256 images.
    assert len(set(offsets)) >= 0.9 * len(candidates)


def test_hflip_is_per_sample_and_augment_leaves_labels_alone():
    torch.manual_seed(6)
    aug = ready(Augment(**{**ONLY, "hflip": True}), CIFAR10DataModule())
    img = torch.randn(3, 32, 32)
    out, _ = aug.transform_batch(img.expand(400, 3, 32, 32).clone(), torch.zeros(400).long())
    flipped = torch.tensor([torch.equal(o, TF.horizontal_flip(img)) for o in out])
    kept = torch.tensor([torch.equal(o, img) for o in out])
    assert (flipped ^ kept).all()
    assert 0.4 < flipped.float().mean() < 0.6  # Bernoulli(1/2) per image: 0.5 ± 0.025 (1 SE)
    full = ready(Augment(), CIFAR10DataModule())  # every augmentation on
    y = torch.randint(K, (64,))
    x_aug, y_aug = full.transform_batch(torch.randn(64, 3, 32, 32), y.clone())
    assert torch.equal(y_aug, y) and x_aug.shape == (64, 3, 32, 32)


def test_rotation_matches_torchvision_rotate():
    torch.manual_seed(7)
    imgs = torch.randn(4, 3, 32, 32)
    angles = torch.tensor([10.0, -7.5, 33.0, 90.0])
    out = rotate(imgs, angles)
    for img, angle, o in zip(imgs, angles.tolist(), out, strict=True):
        ref = TF.rotate(img, angle, interpolation=InterpolationMode.BILINEAR)
        assert (o - ref).abs().max() < 1e-4  # float32 grid arithmetic; values are O(1)
    # A non-square image: the rotation stays rigid in pixel units.
    img = torch.randn(1, 12, 20)
    ref = TF.rotate(img, 25.0, interpolation=InterpolationMode.BILINEAR)
    assert (rotate(img[None], torch.tensor([25.0]))[0] - ref).abs().max() < 1e-4


def test_rotation_angles_are_uniform_per_sample():
    """Recover each image's angle by a 0.1° grid search with torchvision; U(±10°) has sd 5.77°."""
    torch.manual_seed(8)
    aug = ready(Augment(**{**ONLY, "rotation_degrees": 10}), image_dm((1, 16, 16)))
    img = F.avg_pool2d(torch.randn(1, 1, 20, 20), 5, stride=1)[0]  # smooth 16x16 image
    out, _ = aug.transform_batch(img.expand(200, 1, 16, 16).clone(), torch.zeros(200).long())
    grid = np.round(np.arange(-15, 15.01, 0.1), 1)
    refs = torch.stack(
        [TF.rotate(img, float(a), interpolation=InterpolationMode.BILINEAR) for a in grid]
    )
    dist = ((out[:, None] - refs[None]) ** 2).flatten(2).sum(2)  # (200, angles)
    best = grid[dist.argmin(1).numpy()]
    assert np.abs(best).max() <= 10.1
    assert dist.min(1).values.max() < 1e-2  # each output is a rotation of the input
    assert 4.8 < best.std() < 6.8 and abs(best.mean()) < 1.5  # SE(mean) = 0.41


def test_brightness_contrast_are_affine_per_image():
    """out = c·(x − mean x) + mean x + b with c ∈ 1 ± contrast, b ∈ ± brightness per image."""
    torch.manual_seed(9)
    aug = ready(Augment(**{**ONLY, "brightness": 0.3, "contrast": 0.5}), CIFAR10DataModule())
    x = torch.randn(256, 3, 32, 32, dtype=torch.float64)
    out, _ = aug.transform_batch(x, torch.zeros(256).long())
    xs, zs = x.flatten(1), out.flatten(1)
    xc = xs - xs.mean(1, keepdim=True)
    slope = (xc * (zs - zs.mean(1, keepdim=True))).sum(1) / (xc**2).sum(1)  # least squares
    offset = zs.mean(1) - xs.mean(1)  # contrast keeps the mean, brightness shifts it
    residual = zs - (slope[:, None] * xc + xs.mean(1, keepdim=True) + offset[:, None])
    assert residual.abs().max() < 1e-12
    assert slope.min() >= 0.5 and slope.max() <= 1.5 and slope.max() - slope.min() > 0.9
    assert offset.abs().max() <= 0.3 and offset.max() - offset.min() > 0.54


def test_augment_refuses_non_image_data():
    with pytest.raises(ConfigError, match="augment needs image data, not dataset=diabetes"):
        ready(Augment(), DiabetesDataModule())
    with pytest.raises(ConfigError, match=r"regularizer\.augment\.crop_padding must be < "):
        ready(Augment(crop_padding=8), DigitsDataModule())
    with pytest.raises(ConfigError, match=r"regularizer\.augment\.cutout_size must be <= "):
        ready(Augment(cutout_size=9), DigitsDataModule())


def test_only_training_batches_are_transformed(tmp_path, cfg_factory):
    """Through BenchModule and the final evaluation: validation, test and the eval-mode pass over
    the training set see the loaders' tensors untouched; every training sample goes through."""
    cfg = cfg_factory("trainer.max_epochs=2")
    dm = instantiate(cfg.dataset)
    dm.setup("fit")
    model = instantiate(cfg.model, input_shape=tuple(dm.input_shape), num_outputs=K)
    aug = ready(Augment(), dm)
    transformed = []
    original = aug.transform_batch
    aug.transform_batch = lambda x, y: (transformed.append(len(x)), original(x, y))[1]
    module = BenchModule(
        model, "classification", optimizer=partial(torch.optim.Adam, lr=1e-3), regularizers=[aug]
    )
    seen_in_eval = []
    module.model.register_forward_pre_hook(
        lambda m, args: None if m.training else seen_in_eval.append(args[0].clone())
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=2,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=dm)
    evaluate([module.model], OutputHead("classification"), dm, [Deterministic()], EvalSettings())
    assert sum(transformed) == 2 * dm.n_train
    untouched = [
        x
        for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.train_eval_dataloader())
        for x, _ in loader
    ]
    # One batch each: the sanity check, 2 validation epochs, evaluate's train/val/test passes.
    assert len(seen_in_eval) == 1 + 2 + 3
    for x in seen_in_eval:
        assert any(x.shape == u.shape and torch.equal(x, u) for u in untouched)


# ---------------------------------------------------------------------------------- input noise
def test_input_noise_on_a_linear_model_converges_to_ridge_with_lambda_sigma_squared():
    """Bishop (1995): least squares on K noisy copies of X → ridge with λ = σ² as K grows.

    Mean-over-samples MSE + σ²‖w‖² has the minimizer (XᵀX + nσ²I)⁻¹Xᵀy (centred data), i.e.
    scikit-learn's Ridge(alpha = nσ²). The stacked least-squares solution deviates from it by
    O(1/√K); the RMS relative error over a few repeats is checked at K = 10, 100, 1000.
    """
    dm = SyntheticRegressionDataModule()
    dm.setup("fit")
    x, y = (t.double() for t in dm.tensors["train"])
    n, d = x.shape
    sigma = 0.5
    ridge = torch.from_numpy(Ridge(alpha=n * sigma**2).fit(x.numpy(), y.numpy()).coef_)
    xc, yc = x - x.mean(0), y - y.mean()
    closed = torch.linalg.solve(xc.T @ xc + n * sigma**2 * torch.eye(d, dtype=x.dtype), xc.T @ yc)
    torch.testing.assert_close(ridge, closed, rtol=0, atol=1e-12)
    ols = torch.linalg.lstsq(xc, yc[:, None]).solution[:, 0]
    assert (ols - ridge).norm() / ridge.norm() > 0.2  # the penalty matters here

    noise = InputNoise(std=sigma)
    torch.manual_seed(10)
    rms = {}
    for copies, repeats in [(10, 20), (100, 5), (1000, 3)]:
        errors = []
        for _ in range(repeats):
            noisy = torch.cat([noise.transform_batch(x, y)[0] for _ in range(copies)])
            design = torch.cat([noisy, torch.ones(len(noisy), 1, dtype=x.dtype)], 1)  # + bias
            w = torch.linalg.lstsq(design, y.repeat(copies)[:, None]).solution[:d, 0]
            errors.append(((w - ridge).norm() / ridge.norm()).item())
        rms[copies] = float(np.sqrt(np.mean(np.square(errors))))
    assert rms[10] > rms[100] > rms[1000]
    assert rms[1000] < 3e-3
    assert rms[10] / rms[1000] > 4  # 1/√K predicts 10


def test_input_noise_adds_gaussian_noise_of_the_configured_std():
    torch.manual_seed(11)
    x = torch.randn(2000, 50)
    out, _ = InputNoise(std=0.3).transform_batch(x, torch.zeros(2000))
    noise = (out - x).double().flatten().numpy()
    assert noise.std() == pytest.approx(0.3, rel=0.01)  # SE 0.16 %
    assert stats.kstest(noise / 0.3, "norm").pvalue > 1e-3
    assert torch.equal(InputNoise(std=0).transform_batch(x, None)[0], x)


# ------------------------------------------------------------------------------ label smoothing
def test_label_smoothing_targets_and_loss_match_cross_entropy_reference():
    eps = 0.2
    ls = ready(LabelSmoothing(epsilon=eps), DigitsDataModule())
    y = torch.randint(K, (100,), generator=torch.Generator().manual_seed(12))
    _, target = ls.transform_batch(torch.randn(100, 64), y)
    torch.testing.assert_close(target.sum(1), torch.ones(100), rtol=0, atol=1e-6)
    true = target[torch.arange(100), y]
    torch.testing.assert_close(true, torch.full((100,), 1 - eps + eps / K))
    others = target.masked_select(~torch.eye(K, dtype=torch.bool)[y])
    torch.testing.assert_close(others, torch.full((100 * (K - 1),), eps / K))
    logits = torch.randn(100, K)
    torch.testing.assert_close(
        F.cross_entropy(logits, target), F.cross_entropy(logits, y, label_smoothing=eps)
    )


@pytest.mark.parametrize("listed", ["[label_smoothing,mixup]", "[mixup,label_smoothing]"])
def test_mixup_then_label_smoothing_whatever_the_list_order(cfg_factory, listed):
    cfg = cfg_factory(f"regularizer={listed}", "regularizer.label_smoothing.epsilon=0.1")
    regs = build_regularizers(cfg)
    assert [r.name for r in regs] == listed.strip("[]").split(",")  # the order as given
    for reg in regs:
        ready(reg, DigitsDataModule())
    module = BenchModule(
        nn.Identity(), "classification", optimizer=torch.optim.SGD, regularizers=regs
    )
    assert [r.name for r in module.batch_transforms] == ["mixup", "label_smoothing"]
    torch.manual_seed(13)
    images, labels = torch.randn(32, 1, 8, 8), torch.randint(K, (32,))
    x, y = images, labels
    for reg in module.batch_transforms:  # exactly what training_step does
        x, y = reg.transform_batch(x, y)
    mixup = next(r for r in regs if r.name == "mixup")
    lam, perm = mixup.last_weight.float()[:, None], mixup.last_perm
    onehot = torch.eye(K)
    mixed = lam * onehot[labels] + (1 - lam) * onehot[labels[perm]]
    torch.testing.assert_close(y, 0.9 * mixed + 0.1 / K, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- config and runs
@pytest.mark.parametrize(
    "overrides",
    [
        ["regularizer=[augment,mixup]"],
        ["regularizer=[cutmix,label_smoothing]", "model=cnn"],
        ["regularizer=[augment,input_noise,mixup,label_smoothing]"],
        ["regularizer=[input_noise]", "dataset=diabetes", "model=linear"],
    ],
    ids=lambda o: o[0].split("=")[1],
)
def test_runs_complete_from_the_config(tmp_path, cfg_factory, overrides):
    record = run(cfg_factory(*overrides, "trainer.max_epochs=2", "logger=csv", run_dir=tmp_path))
    assert record["status"] == "completed"
    names = overrides[0].split("=")[1].strip("[]").split(",")
    assert record["regularizers"] == names
    if "augment" in names:
        assert record["augment"] == {"crop_padding": 1, "hflip": False, "cutout_size": 4}
    if record["dataset"] == "digits":
        assert record["metrics"]["test/acc"] > 0.5  # learnt something despite the transforms
    logged = {
        "augment": "augment/cutout_fraction",
        "mixup": "mixup/lam",
        "cutmix": "cutmix/lam",
        "input_noise": "input_noise/noise_rms",
        "label_smoothing": "label_smoothing/target_max",
    }
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {logged[name] for name in names} <= set(header)


def test_runs_are_reproducible(tmp_path, cfg_factory):
    over = ("regularizer=[augment,mixup]", "trainer.max_epochs=2", "seed=4")
    a = run(cfg_factory(*over, run_dir=tmp_path / "a"))
    b = run(cfg_factory(*over, run_dir=tmp_path / "b"))
    assert a["metrics"] == b["metrics"]


@pytest.mark.parametrize("name", ["augment", "mixup", "cutmix", "label_smoothing"])
def test_regression_or_tabular_data_is_refused_naming_both(tmp_path, cfg_factory, name):
    cfg = cfg_factory(f"regularizer=[{name}]", "dataset=diabetes", "model=mlp", run_dir=tmp_path)
    with pytest.raises(ConfigError, match=f"regularizer {name} needs .* not dataset=diabetes"):
        run(cfg)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("mixup", "alpha", "0"),
        ("mixup", "alpha", "-1"),
        ("cutmix", "alpha", "0"),
        ("mixup", "per_sample", "maybe"),
        ("input_noise", "std", "-0.1"),
        ("label_smoothing", "epsilon", "1.0"),
        ("label_smoothing", "epsilon", "-0.1"),
        ("augment", "crop_padding", "-1"),
        ("augment", "cutout_size", "big"),
        ("augment", "hflip", "sometimes"),
        ("augment", "rotation_degrees", "-5"),
        ("augment", "brightness", "-0.1"),
        ("augment", "contrast", "1.0"),
    ],
)
def test_bad_values_are_one_line_naming_the_key_before_loading(
    tmp_path, cfg_factory, monkeypatch, name, field, value
):
    def no_loading(self):
        raise AssertionError("data was loaded before the config was validated")

    monkeypatch.setattr(DigitsDataModule, "load_arrays", no_loading)
    cfg = cfg_factory(
        f"regularizer=[{name}]", f"regularizer.{name}.{field}={value}", run_dir=tmp_path
    )
    with pytest.raises(ConfigError, match=rf"^regularizer\.{name}\.{field} must be ") as info:
        run(cfg)
    assert "\n" not in str(info.value)
