"""The temperature-scaling reproduction (Guo et al. 2017) against its sources.

- The composed experiments against the protocol the paper states: a validation split that fits
  T, seeds 0, 1, 2, and for CIFAR-100 He et al.'s (2016) ResNet recipe and Table 1's figures.
- CIFAR-100's real loading code (torchvision's reader and md5 check) on a small fake folder in
  torchvision's on-disk format, written here; a missing folder is one line naming the key.
- A smoke run of the MNIST experiment through the real CLI, whose recorded ECE before and after
  temperature scaling is recomputed from the saved predictions with a 15-bin ECE written here.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torchvision
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench.data.vision import CIFAR100DataModule
from bench.errors import DatasetNotFoundError
from tests.conftest import CONF_DIR, SHARED_TORCHVISION, make_cfg, run_cli, sweep_records

needs_mnist = pytest.mark.skipif(
    not (SHARED_TORCHVISION / "MNIST" / "raw").is_dir(),
    reason=f"offline MNIST copy not found at {SHARED_TORCHVISION} (set BENCH_SHARED_DATA)",
)


def composed(experiment: str, *overrides: str) -> DictConfig:
    """The experiment as ``bench-train`` composes it (with the hydra node, for the sweep)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", [f"experiment={experiment}", *overrides], return_hydra_config=True)


def ece_15_bins(probs: np.ndarray, labels: np.ndarray) -> float:
    """Guo et al.'s ECE, written out: bins (k/15, (k+1)/15] of the top-label confidence (the
    first also takes 0), each weighted by its share of the samples, |accuracy − confidence|."""
    confidence = probs.max(axis=1).astype(np.float64)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, 16)
    total = 0.0
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        members = (confidence > low) & (confidence <= high)
        if k == 0:
            members |= confidence == 0.0
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += members.mean() * gap
    return total


def ece_tolerance(probs: np.ndarray) -> float:
    """How far an ECE from float32 probabilities may be from the run's float64 one.

    Rounding moves a confidence by < 1e-6; only one that close to a bin edge can change bins,
    and each that does moves the ECE by at most 2/N.
    """
    confidence = probs.max(axis=1).astype(np.float64)
    near_edge = (np.abs(confidence[:, None] - np.linspace(0, 1, 16)[None, :]) < 1e-6).any(axis=1)
    return 1e-6 + 2 * near_edge.sum() / len(confidence)


# --------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize(
    ("experiment", "target"),
    [
        ("guo2017_mnist", "bench.data.vision.MNISTDataModule"),
        ("guo2017_fashion_mnist", "bench.data.vision.FashionMNISTDataModule"),
    ],
)
def test_the_mnist_experiments_overfit_a_cnn_and_hold_out_validation_for_t(
    experiment: str, target: str, tmp_path: Path
):
    cfg = composed(experiment, f"dataset.data_dir={tmp_path}")
    assert cfg.dataset._target_ == target and cfg.model._target_ == "bench.models.cnn.CNN"
    # Guo et al.: held-out data fit T by NLL; the training part is small and trained long with
    # SGD + momentum and no weight decay, the regime that makes a network over-confident.
    sizes = instantiate(cfg.dataset).split_sizes()
    assert sizes == {"train": cfg.dataset.train_size, "val": 6000, "test": 10000}
    assert (cfg.optimizer._target_, cfg.optimizer.momentum) == ("torch.optim.SGD", 0.9)
    assert cfg.optimizer.weight_decay == 0 and not cfg.regularizer
    steps = cfg.trainer.max_epochs * math.ceil(cfg.dataset.train_size / cfg.dataset.batch_size)
    assert steps >= 500
    predictors = cfg.evaluation.predictors
    assert predictors.temperature._target_.endswith("temperature.TemperatureScaling")
    assert predictors.deterministic._target_.endswith("deterministic.Deterministic")
    assert cfg.hydra.sweeper.params == {"seed": "0,1,2"}
    assert cfg.published is None  # Guo et al. did not run MNIST or Fashion-MNIST


def test_the_cifar100_experiment_is_he_et_als_recipe_with_table_1s_figures(tmp_path: Path):
    cfg = composed("guo2017_cifar100", f"dataset.data_dir={tmp_path}")
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, CIFAR100DataModule) and dm.num_classes == 100
    assert dm.split_sizes() == {"train": 45000, "val": 5000, "test": 10000}  # Guo's split
    assert cfg.model._target_ == "bench.models.resnet18.ResNet18"
    assert cfg.trainer.accelerator == "gpu"
    # He et al. (2016) Sec. 4.2: SGD, momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 / 10 at
    # 32k and 48k iterations, 64k in all; pad-4 crop and flip, nothing else.
    assert (cfg.optimizer._target_, cfg.optimizer.lr) == ("torch.optim.SGD", 0.1)
    assert (cfg.optimizer.momentum, cfg.optimizer.nesterov) == (0.9, False)
    assert cfg.optimizer.weight_decay == 0 and list(cfg.regularizer) == ["l2", "augment"]
    l2 = cfg.regularizer.l2
    assert 2 * l2.strength == pytest.approx(1e-4) and l2.params == "all"  # SGD's coupled decay
    augment = OmegaConf.to_container(cfg.regularizer.augment)
    assert (augment["crop_padding"], augment["hflip"]) == (4, True)
    assert augment["rotation_degrees"] == augment["brightness"] == augment["contrast"] == 0
    assert augment["cutout_size"] == 0
    per_epoch = math.ceil(45000 / cfg.dataset.batch_size)
    assert cfg.dataset.batch_size == 128 and per_epoch == 352
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.MultiStepLR"
    assert cfg.scheduler.gamma == 0.1
    for epochs, iterations in zip(
        [*cfg.scheduler.milestones, cfg.trainer.max_epochs], [32000, 48000, 64000], strict=True
    ):
        assert abs(epochs * per_epoch - iterations) < per_epoch  # the nearest whole epoch
    assert OmegaConf.to_container(cfg.published) == {
        "table": "guo2017-table1",
        "source": "Guo et al. (2017), ICML, Table 1 (ECE, 15 bins); "
        "published ResNet-110, ours ResNet-18",
        "row": "cifar100-resnet110",
        "spread": "none",
        "n": None,
        "runs": {},
        "figures": {"cifar100-resnet110": {"test/ece": 0.1653, "ts/test/ece": 0.0126}},
    }  # Table 1, CIFAR-100 / ResNet 110: uncalibrated 16.53 %, temperature scaling 1.26 %
    assert cfg.hydra.sweeper.params == {"seed": "0,1,2"}


# --------------------------------------------------------------------------- CIFAR-100 files

N_POOL, N_TEST = 1000, 200  # a small stand-in for 50,000 + 10,000 (10 and 2 images per class)


def write_fake_cifar100(root: Path) -> dict[str, dict]:
    """``root/cifar-100-python/{train,test,meta}`` as the CIFAR-100 release pickles them: rows
    of 3072 bytes (the red, green and blue 32x32 planes), fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    splits = {}
    for name, n in (("train", N_POOL), ("test", N_TEST)):
        fine = rng.permutation(np.arange(n) % 100)
        splits[name] = {
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine // 5).tolist(),  # not what a loader must return
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(splits[name]))
    meta = {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["s"] * 20}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return splits


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def small_cifar100(monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR-100's sizes shrunk to the fake folder's, so the real size check passes."""
    monkeypatch.setattr(CIFAR100DataModule, "pool_size", N_POOL)
    monkeypatch.setattr(CIFAR100DataModule, "official_test_size", N_TEST)


@pytest.fixture
def fake_cifar100(small_cifar100, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The fake folder under ``tmp_path/data``, its md5s the ones torchvision checks."""
    splits = write_fake_cifar100(tmp_path / "data")
    folder = tmp_path / "data" / "cifar-100-python"
    # torchvision verifies the release's md5s before reading; give it the fake files' own.
    tv = torchvision.datasets.CIFAR100
    monkeypatch.setattr(tv, "train_list", [["train", md5(folder / "train")]])
    monkeypatch.setattr(tv, "test_list", [["test", md5(folder / "test")]])
    monkeypatch.setattr(tv, "meta", {**tv.meta, "md5": md5(folder / "meta")})
    return splits


def test_a_cifar100_folder_loads_through_torchvisions_reader(fake_cifar100, tmp_path: Path):
    splits = fake_cifar100
    config = OmegaConf.load(CONF_DIR / "dataset" / "cifar100.yaml")
    dm = instantiate(config, data_dir=str(tmp_path / "data"))
    for train, name in ((True, "train"), (False, "test")):
        images, labels = dm.read_split(train=train)
        n = len(splits[name]["data"])
        assert images.shape == (n, 3, 32, 32) and images.dtype == np.uint8
        assert np.array_equal(images, splits[name]["data"].reshape(n, 3, 32, 32))  # RGB planes
        assert labels.dtype == np.int64 and labels.tolist() == splits[name]["fine_labels"]

    dm.setup()
    assert {k: len(y) for k, (_, y) in dm.tensors.items()} == {
        "train": 900,
        "val": 100,
        "test": 200,
    }
    assert dm.tensors["test"][1].tolist() == splits["test"]["fine_labels"]  # official test set
    assert sorted(dm.tensors["val"][1].tolist()) == list(range(100))  # stratified: one per class
    assert dm.tensors["train"][0].shape[1:] == (3, 32, 32)


@pytest.mark.slow
def test_the_cifar100_experiment_runs_end_to_end_on_the_fake_folder(fake_cifar100, tmp_path: Path):
    """Its ResNet-18, l2 on every tensor, crop + flip and MultiStepLR train (1 epoch, on CPU)."""
    from bench.train import run

    cfg = make_cfg(
        tmp_path / "run",
        "experiment=guo2017_cifar100",
        f"dataset.data_dir={tmp_path / 'data'}",
        "dataset.train_size=100",
        "dataset.eval_batch_size=100",
        "trainer.max_epochs=1",
        "evaluation.splits=[test]",  # val still fits T
        "evaluation.plots=false",
    )
    record = run(cfg)
    assert record is not None and record["status"] == "completed"
    assert record["dataset"] == "cifar100" and record["regularizers"] == ["l2", "augment"]
    metrics = record["metrics"]
    assert math.isfinite(metrics["test/ece"]) and math.isfinite(metrics["ts/test/ece"])
    assert metrics["ts/temperature"] > 0
    saved = np.load(tmp_path / "run" / "predictions.npz")
    assert saved["probs"].shape == (N_TEST, 100)
    assert saved["labels"].tolist() == fake_cifar100["test"]["fine_labels"]


def test_a_corrupted_cifar100_file_is_caught_by_the_md5_check(small_cifar100, tmp_path: Path):
    write_fake_cifar100(tmp_path)  # the release's md5s stay: these files do not match them
    dm = CIFAR100DataModule(data_dir=str(tmp_path))
    dm.check_files()  # present; their contents are checked at load
    with pytest.raises(DatasetNotFoundError, match="cifar100: dataset files missing or corrupted"):
        dm.setup()


def test_a_missing_cifar100_folder_is_one_line_naming_the_key(tmp_path: Path):
    missing = tmp_path / "nowhere"
    cfg = composed("guo2017_cifar100", f"dataset.data_dir={missing}")
    dm = instantiate(cfg.dataset)
    for step in (dm.check_files, dm.setup):
        with pytest.raises(DatasetNotFoundError) as err:
            step()
        message = str(err.value)
        assert "\n" not in message and message.startswith("cifar100: dataset files not found")
        assert str(missing) in message and "cifar-100-python" in message
        assert "dataset.data_dir" in message and "dataset.download=true" in message


# --------------------------------------------------------------------------- a smoke run


@needs_mnist
@pytest.mark.slow
def test_a_smoke_run_of_the_mnist_experiment_records_ece_before_and_after(tmp_path: Path):
    """One seed, one epoch, 300 training images, through the documented sweep command."""
    proc = run_cli(
        "--multirun",
        "experiment=guo2017_mnist",
        "hydra.sweeper.params.seed=0",
        "dataset.train_size=300",
        "trainer.max_epochs=1",
        f"dataset.data_dir={SHARED_TORCHVISION}",
        "threads=1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = sweep_records(tmp_path)
    record = json.loads(path.read_text())
    metrics = record["metrics"]
    assert record["status"] == "completed" and record["config"]["published"] is None
    assert math.isfinite(metrics["test/ece"]) and math.isfinite(metrics["ts/test/ece"])
    temperature = metrics["ts/temperature"]
    assert math.isfinite(temperature) and temperature > 0
    assert metrics["ts/test/acc"] == metrics["test/acc"]  # T never changes a prediction

    saved = np.load(path.parent / "predictions.npz")
    labels, probs, ts_probs = saved["labels"], saved["probs"], saved["ts_probs"]
    assert probs.shape == ts_probs.shape == (10000, 10)
    # The tempered prediction is softmax(logits / T) of the same network: log p = logits − c.
    logits = np.log(probs.astype(np.float64)) / temperature
    tempered = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(ts_probs, tempered / tempered.sum(axis=1, keepdims=True), atol=1e-5)
    for key, p in (("test/ece", probs), ("ts/test/ece", ts_probs)):
        assert metrics[key] == pytest.approx(ece_15_bins(p, labels), abs=ece_tolerance(p))
