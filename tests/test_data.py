"""Datamodules: splits, standardization, batching, config errors, files, synthetic truth."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.datasets import load_diabetes, load_digits

from bench.data import (
    CIFAR10DataModule,
    DiabetesDataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
    SyntheticRegressionDataModule,
    TensorBatches,
)
from bench.errors import ConfigError, DatasetNotFoundError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data" / "torchvision"))
needs_shared = pytest.mark.skipif(
    not (SHARED / "MNIST" / "raw").is_dir(),
    reason=f"offline MNIST copy not found at {SHARED} (set BENCH_SHARED_DATA to its folder)",
)


def ready(dm):
    dm.setup()
    return dm


def batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def class_fractions(y: np.ndarray, n_classes: int = 10) -> np.ndarray:
    return np.bincount(y, minlength=n_classes) / len(y)


# --------------------------------------------------------------------------- splits


@pytest.mark.parametrize(
    "make",
    [DigitsDataModule, DiabetesDataModule, lambda **kw: SyntheticRegressionDataModule(**kw)],
    ids=["digits", "diabetes", "synthetic"],
)
def test_split_sizes_add_up_and_are_disjoint(make):
    dm = ready(make())
    idx = dm.split_indices
    sizes = {k: len(v) for k, v in idx.items()}
    assert dm.test_from_pool
    assert sum(sizes.values()) == dm.pool_size
    assert sizes == dm.split_sizes() == {k: len(dm.tensors[k][0]) for k in ("train", "val", "test")}
    assert dm.max_train_size() == sizes["train"] == dm.n_train
    union = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert len(np.unique(union)) == dm.pool_size  # no index in two splits, none left out


def test_split_rounding_matches_static_sizes_for_odd_fractions():
    for val, test in [(0.0, 0.5), (0.33, 0.07), (0.25, 0.013)]:
        dm = ready(DiabetesDataModule(val_fraction=val, test_fraction=test, split_seed=3))
        assert {k: len(dm.tensors[k][0]) for k in ("train", "val", "test")} == dm.split_sizes()
        assert dm.max_train_size() == len(dm.split_indices["train"])


def test_classification_splits_are_stratified():
    dm = ready(DigitsDataModule())
    y = load_digits().target
    pool = class_fractions(y)
    for split in ("train", "val", "test"):
        assert np.abs(class_fractions(y[dm.split_indices[split]]) - pool).max() < 0.01
    sub = ready(DigitsDataModule(train_size=300))
    assert np.abs(class_fractions(y[sub.split_indices["train"]]) - pool).max() < 0.01


def test_split_depends_only_on_split_seed():
    L.seed_everything(1)
    a = ready(DigitsDataModule(split_seed=0)).split_indices
    torch.manual_seed(12345)
    np.random.seed(999)
    b = ready(DigitsDataModule(split_seed=0)).split_indices
    c = ready(DigitsDataModule(split_seed=1)).split_indices
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a[split], b[split])
        assert not np.array_equal(a[split], c[split])


def test_train_size_subsamples_training_part_only():
    full = ready(DigitsDataModule())
    sub = ready(DigitsDataModule(train_size=250))
    assert len(sub.split_indices["train"]) == 250 == sub.n_train == len(sub.tensors["train"][0])
    assert np.isin(sub.split_indices["train"], full.split_indices["train"]).all()
    for split in ("val", "test"):
        np.testing.assert_array_equal(sub.split_indices[split], full.split_indices[split])
        # The test and validation inputs are standardized with the subsample's statistics, but
        # hold the same samples: the labels agree one to one.
        torch.testing.assert_close(sub.tensors[split][1], full.tensors[split][1])


def test_train_size_at_and_near_the_bound():
    limit = DigitsDataModule().max_train_size()
    assert len(ready(DigitsDataModule(train_size=limit)).split_indices["train"]) == limit
    # Keeping all but 3 samples cannot be stratified (10 classes); falls back to a plain subsample.
    near = ready(DigitsDataModule(train_size=limit - 3))
    assert len(near.split_indices["train"]) == limit - 3
    with pytest.raises(ConfigError, match=r"dataset\.train_size"):
        DigitsDataModule(train_size=limit + 1)


def test_val_fraction_zero_gives_empty_validation():
    dm = ready(DigitsDataModule(val_fraction=0.0))
    assert len(dm.split_indices["val"]) == 0
    assert len(dm.val_dataloader()) == 0
    assert dm.split_sizes()["train"] == 1797 - 360


# --------------------------------------------------------------------------- standardization


def test_digits_standardized_per_pixel_with_training_statistics():
    dm = ready(DigitsDataModule())
    images = load_digits().images[:, None].astype(np.float64)
    train_raw = images[dm.split_indices["train"]]
    mean, std = train_raw.mean(0), train_raw.std(0)
    constant = std < 1e-8
    assert constant.any()  # digits has pixels that are always 0

    x_train = dm.tensors["train"][0].double().numpy()
    assert np.isfinite(x_train).all()
    assert np.abs(x_train.mean(0)).max() < 1e-5
    np.testing.assert_allclose(x_train.std(0)[~constant], 1.0, atol=1e-4)
    assert (x_train[:, constant] == 0).all()

    # Validation and test use the training statistics, not their own.
    safe_std = np.where(constant, 1.0, std)
    for split in ("val", "test"):
        expected = (images[dm.split_indices[split]] - mean) / safe_std
        got = dm.tensors[split][0].double().numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert np.isfinite(got).all()
        assert np.abs(got.mean(0)).max() > 0.01  # not re-centred on its own mean


def test_regression_targets_standardized_with_training_statistics():
    dm = ready(DiabetesDataModule())
    bunch = load_diabetes(scaled=False)
    y_train = bunch.target[dm.split_indices["train"]]
    assert dm.target_mean == pytest.approx(y_train.mean())
    assert dm.target_std == pytest.approx(y_train.std())
    t = dm.tensors["train"][1]
    assert t.dtype == torch.float32 and t.shape == (dm.n_train,)
    assert abs(t.mean().item()) < 1e-5
    assert t.std(unbiased=False).item() == pytest.approx(1, abs=1e-5)
    for split in ("val", "test"):
        back = dm.tensors[split][1].double().numpy() * dm.target_std + dm.target_mean
        np.testing.assert_allclose(back, bunch.target[dm.split_indices[split]], rtol=1e-5)
    x = dm.tensors["train"][0].double()
    np.testing.assert_allclose(x.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(0, unbiased=False).numpy(), 1, atol=1e-4)


def test_target_statistics_need_setup_for_regression_only():
    with pytest.raises(RuntimeError, match="after setup"):
        _ = DiabetesDataModule().target_mean
    dm = DigitsDataModule()
    assert (dm.target_mean, dm.target_std) == (0.0, 1.0)
    assert dm.num_outputs == 10 and DiabetesDataModule().num_outputs == 1


def test_setup_runs_once_and_shapes_are_static():
    dm = DigitsDataModule()
    assert not dm.is_loaded and dm.input_shape == (1, 8, 8) and dm.num_classes == 10
    dm.setup("fit")
    first = dm.tensors["train"][0]
    dm.setup("test")
    assert dm.is_loaded and dm.tensors["train"][0] is first
    assert tuple(first.shape[1:]) == dm.input_shape and first.dtype == torch.float32
    assert dm.tensors["train"][1].dtype == torch.int64


# --------------------------------------------------------------------------- batching


def batch_order(seed: int, dm) -> list[torch.Tensor]:
    L.seed_everything(seed, verbose=False)
    return [y for _, y in dm.train_dataloader()]


def test_batch_order_follows_the_global_seed_and_changes_each_epoch():
    dm = ready(DigitsDataModule(batch_size=100))
    a, b, c = batch_order(0, dm), batch_order(0, dm), batch_order(1, dm)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))

    # The loader has its own generator: random draws elsewhere (dropout, say) leave it alone.
    L.seed_everything(0, verbose=False)
    loader = dm.train_dataloader()
    torch.rand(1000)
    assert all(torch.equal(p, y) for p, (_, y) in zip(a, loader, strict=True))

    L.seed_everything(0, verbose=False)
    loader = dm.train_dataloader()
    epoch1, epoch2 = batches(loader)[1], batches(loader)[1]
    assert not torch.equal(epoch1, epoch2)
    assert len(loader) == 13 and [len(y) for _, y in loader][-1] == 1293 - 12 * 100


def test_each_epoch_visits_every_training_sample_once():
    dm = ready(SyntheticRegressionDataModule(batch_size=64))
    x, _ = batches(dm.train_dataloader())
    torch.testing.assert_close(x[:, 0].sort().values, dm.tensors["train"][0][:, 0].sort().values)


def test_batch_size_none_is_full_batch():
    dm = ready(DigitsDataModule(batch_size=None))
    loader = dm.train_dataloader()
    assert len(loader) == 1
    ((x, y),) = list(loader)
    assert len(x) == len(y) == dm.n_train


def test_eval_loaders_are_ordered_and_use_eval_batch_size():
    dm = ready(DigitsDataModule(eval_batch_size=500))
    loader = dm.train_eval_dataloader()
    assert len(loader) == 3
    x, y = batches(loader)
    torch.testing.assert_close(x, dm.tensors["train"][0])
    torch.testing.assert_close(y, dm.tensors["train"][1])
    x, _ = batches(dm.test_dataloader())
    torch.testing.assert_close(x, dm.tensors["test"][0])


def test_generic_dataloader_path_yields_the_same_samples():
    fast = ready(SyntheticRegressionDataModule(batch_size=50))
    slow = ready(SyntheticRegressionDataModule(batch_size=50, in_memory=False))
    assert isinstance(slow.train_dataloader(), torch.utils.data.DataLoader)
    assert len(slow.train_dataloader()) == len(fast.train_dataloader())
    xf, yf = batches(fast.train_dataloader())
    xs, ys = batches(slow.train_dataloader())
    torch.testing.assert_close(xf[:, 0].sort().values, xs[:, 0].sort().values)
    torch.testing.assert_close(yf.sort().values, ys.sort().values)
    for name in ("val_dataloader", "test_dataloader", "train_eval_dataloader"):
        expected, got = batches(getattr(fast, name)()), batches(getattr(slow, name)())
        torch.testing.assert_close(expected, got)
    full = ready(SyntheticRegressionDataModule(batch_size=None, in_memory=False))
    assert len(full.train_dataloader()) == 1


def test_distributed_shards():
    x = torch.arange(10).float()[:, None]
    y = torch.arange(10)
    # Every rank draws the same permutation (same seed) and keeps its own slice of it.
    padded = [
        TensorBatches(x, y, 2, torch.Generator().manual_seed(0), rank, 4, pad=True)
        for rank in range(4)
    ]
    assert [len(p) for p in padded] == [2, 2, 2, 2]  # same step count on every rank
    seen = torch.cat([batches(p)[1] for p in padded])
    assert len(seen) == 12 and set(seen.tolist()) == set(range(10))
    exact = [TensorBatches(x, y, 2, None, r, 4) for r in range(4)]
    assert sorted(torch.cat([batches(e)[1] for e in exact]).tolist()) == list(range(10))

    # Via the datamodule: the rank and world size come from the trainer.
    dm = ready(DigitsDataModule(batch_size=64))
    strategy = SimpleNamespace(root_device=torch.device("cpu"), broadcast=lambda obj, src=0: obj)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2, strategy=strategy)
    assert sum(len(y) for _, y in dm.train_dataloader()) == 647  # ceil(1293 / 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensors_move_to_the_trainer_cuda_device():
    dm = DigitsDataModule()
    dm.trainer = SimpleNamespace(
        global_rank=0, world_size=1, strategy=SimpleNamespace(root_device=torch.device("cuda", 0))
    )
    dm.setup("fit")
    assert all(x.is_cuda and y.is_cuda for x, y in dm.tensors.values())
    x, y = next(iter(dm.train_dataloader()))
    assert x.is_cuda and y.is_cuda and len(x) == 128


def test_fits_with_a_lightning_trainer():
    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
            self.steps = 0

        def training_step(self, batch, _):
            self.steps += 1
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm, model = DigitsDataModule(batch_size=256), Tiny()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert model.steps == 2 * 6
    assert "val_loss" in trainer.callback_metrics


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"train_size": 0}, "dataset.train_size"),
        ({"train_size": 5}, "dataset.train_size"),  # fewer than the 10 classes
        ({"train_size": 10**6}, "dataset.train_size"),
        ({"train_size": 100.0}, "dataset.train_size"),
        ({"batch_size": 0}, "dataset.batch_size"),
        ({"batch_size": -4}, "dataset.batch_size"),
        ({"batch_size": True}, "dataset.batch_size"),
        ({"eval_batch_size": None}, "dataset.eval_batch_size"),
        ({"val_fraction": 1.0}, "dataset.val_fraction"),
        ({"val_fraction": -0.1}, "dataset.val_fraction"),
        ({"val_fraction": 0.001}, "dataset.val_fraction"),  # too few for one per class
        ({"test_fraction": 0.0}, "dataset.test_fraction"),
        ({"test_fraction": 1.0}, "dataset.test_fraction"),
        ({"split_seed": -1}, "dataset.split_seed"),
        ({"num_workers": -1}, "dataset.num_workers"),
        ({"in_memory": "yes"}, "dataset.in_memory"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        DigitsDataModule(**kwargs)
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"kind": "cubic"}, "dataset.kind"),
        ({"kind": "nonlinear", "n_features": 1}, "dataset.n_features"),
        ({"noise_std": -1.0}, "dataset.noise_std"),
        ({"n_samples": 50, "train_size": 40}, "dataset.train_size"),
    ],
)
def test_synthetic_bad_values(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        SyntheticRegressionDataModule(**kwargs)


def test_vision_limits_are_checked_without_files(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path))  # constructing never reads
    assert not dm.is_loaded and dm.max_train_size() == 54000
    assert SVHNDataModule(data_dir=str(tmp_path), val_fraction=0.2).max_train_size() == 58605
    with pytest.raises(ConfigError, match=r"dataset\.train_size"):
        CIFAR10DataModule(data_dir=str(tmp_path), train_size=45001)
    # The official test set is used: test_fraction 0 is fine there.
    assert CIFAR10DataModule(data_dir=str(tmp_path), test_fraction=0.0).split_sizes() == {
        "train": 45000, "val": 5000, "test": 10000,
    }  # fmt: skip


def test_data_dir_is_resolved_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert MNISTDataModule(data_dir="./data").root == tmp_path.resolve() / "data"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert MNISTDataModule(data_dir="~/d").root == tmp_path.resolve() / "d"


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf/dataset").glob("*.yaml")))
def test_dataset_configs_instantiate(name, monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    if name == "uci":  # one config, nine sets: it reads the set's small index files to know its
        uci = REPO.parent / "shared" / "data" / "uci"  # shapes, so it needs them (yacht here)
        if not uci.is_dir():
            pytest.skip(f"offline UCI copy not found at {uci}")
        monkeypatch.setenv("BENCH_UCI_DIR", str(uci))
    dm = instantiate(OmegaConf.load(REPO / "conf/dataset" / f"{name}.yaml"))
    assert dm.name == ("uci-yacht" if name == "uci" else name) and not dm.is_loaded
    if dm.is_image and dm.data_dir is not None and name != "digits":
        assert dm.root == tmp_path.resolve()


# --------------------------------------------------------------------------- torchvision


@pytest.fixture(scope="module")
def mnist():
    return ready(MNISTDataModule(data_dir=str(SHARED)))


@needs_shared
def test_mnist_from_the_shared_folder(mnist):
    assert mnist.input_shape == (1, 28, 28) and mnist.num_classes == 10
    assert not mnist.test_from_pool and mnist.split_indices["test"] is None
    assert mnist.split_sizes() == {"train": 54000, "val": 6000, "test": 10000}
    x, y = mnist.tensors["test"]
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    assert mnist.feature_mean.shape == (1, 1, 1)  # per channel
    xt = mnist.tensors["train"][0]
    assert abs(xt.mean().item()) < 1e-4 and xt.std().item() == pytest.approx(1, abs=1e-3)
    assert np.intersect1d(mnist.split_indices["train"], mnist.split_indices["val"]).size == 0


@needs_shared
def test_fashion_mnist_from_the_shared_folder():
    dm = FashionMNISTDataModule(data_dir=str(SHARED), train_size=1000)
    dm.check_files()
    dm.setup()
    assert dm.tensors["train"][0].shape == (1000, 1, 28, 28)
    assert dm.tensors["test"][0].shape == (10000, 1, 28, 28)


@pytest.mark.parametrize("cls", [MNISTDataModule, CIFAR10DataModule, SVHNDataModule])
def test_missing_files_raise_one_line_error(cls, tmp_path):
    dm = cls(data_dir=str(tmp_path / "empty"))
    for step in (dm.check_files, dm.setup):
        with pytest.raises(DatasetNotFoundError) as err:
            step()
        message = str(err.value)
        assert "\n" not in message and dm.name in message
        assert str(tmp_path / "empty") in message and "dataset.download=true" in message
    cls(data_dir=str(tmp_path), download=True).check_files()  # will download: no error yet


def test_corrupted_cifar_files_raise_dataset_not_found(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    for path in dm.expected_files():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a pickle")
    dm.check_files()  # the files exist; their checksums are verified by torchvision at load
    with pytest.raises(DatasetNotFoundError, match="missing or corrupted"):
        dm.setup()


def test_cifar_and_svhn_arrays_come_out_as_nchw(monkeypatch, tmp_path):
    hwc = np.broadcast_to(np.arange(3, dtype=np.uint8), (4, 32, 32, 3)).copy()
    chw = np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))
    fake_cifar = lambda root, train, download: SimpleNamespace(data=hwc, targets=[0, 1, 2, 3])  # noqa: E731
    fake_svhn = lambda root, split, download: SimpleNamespace(data=chw, labels=np.arange(4))  # noqa: E731
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar)
    monkeypatch.setattr(torchvision.datasets, "SVHN", fake_svhn)
    for dm in (CIFAR10DataModule(data_dir=str(tmp_path)), SVHNDataModule(data_dir=str(tmp_path))):
        x, y = dm.read_split(train=True)
        assert x.shape == (4, 3, 32, 32) and y.dtype == np.int64
        assert all((x[:, c] == c).all() for c in range(3))


# --------------------------------------------------------------------------- synthetic truth


def test_linear_least_squares_recovers_true_coefficients():
    dm = SyntheticRegressionDataModule(n_samples=2000, n_features=5, noise_std=0.1, data_seed=7)
    X, y = dm.generate()
    design = np.column_stack([X, np.ones(len(X))])
    fit = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(fit[:-1], dm.true_coef, atol=0.02)
    assert fit[-1] == pytest.approx(dm.true_intercept, abs=0.02)


def test_generation_depends_only_on_data_seed():
    torch.manual_seed(0)
    np.random.seed(0)
    a = SyntheticRegressionDataModule(data_seed=3).generate()
    np.random.seed(1)
    b = SyntheticRegressionDataModule(data_seed=3).generate()
    c = SyntheticRegressionDataModule(data_seed=4).generate()
    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a[1], c[1])


def test_heteroscedastic_noise_grows_with_abs_x0():
    dm = SyntheticRegressionDataModule(
        n_samples=20000, n_features=3, kind="nonlinear", noise_std=0.5, heteroscedastic=True
    )
    X, y = dm.generate()
    np.testing.assert_allclose(dm.noise_std_fn(X), 0.5 * (1 + np.abs(X[:, 0])))
    residual = y - dm.true_function(X)
    assert np.std(residual / dm.noise_std_fn(X)) == pytest.approx(1.0, abs=0.03)
    low, high = np.abs(X[:, 0]) < 0.3, np.abs(X[:, 0]) > 1.5
    ratio = residual[high].std() / residual[low].std()
    expected = dm.noise_std_fn(X[high]).mean() / dm.noise_std_fn(X[low]).mean()
    assert ratio == pytest.approx(expected, rel=0.1) and ratio > 1.8

    homo = SyntheticRegressionDataModule(noise_std=0.5)
    np.testing.assert_allclose(homo.noise_std_fn(X), 0.5)


def test_synthetic_loader_targets_match_raw_targets():
    dm = ready(SyntheticRegressionDataModule(kind="nonlinear"))
    _, y = dm.generate()
    back = dm.tensors["test"][1].double().numpy() * dm.target_std + dm.target_mean
    np.testing.assert_allclose(back, y[dm.split_indices["test"]], rtol=1e-5, atol=1e-5)
    raw_x = dm.tensors["test"][0].numpy() * dm.feature_std + dm.feature_mean
    np.testing.assert_allclose(raw_x, dm.generate()[0][dm.split_indices["test"]], atol=1e-5)
