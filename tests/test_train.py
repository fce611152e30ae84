"""The training run in-process: results schema, metric definitions, reproducibility, records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from bench.errors import ConfigError
from bench.module import BenchModule
from bench.train import run

# The deterministic prediction's keys (other methods repeat them under mc/, ts/, ens/).
CLASSIFICATION_KEYS = {
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "gap/loss",
    "gap/acc",
} | {
    f"test/{k}"
    for k in (
        "loss",
        "acc",
        "nll",
        "brier",
        "ece",
        "mce",
        "aece",
        "cwece",
        "misclass_auroc",
        "aurc",
    )
}
REGRESSION_KEYS = (
    {f"{split}/{k}" for split in ("train", "val") for k in ("loss", "nll", "ll")}
    | {"gap/loss"}
    | {f"test/{k}" for k in ("loss", "rmse", "nll", "ll", "coverage50", "coverage80", "coverage90")}
    | {"test/coverage95", "test/coverage_error"}
)
SPLIT_FAMILIES = ("train", "val", "test", "gap")


def deterministic_keys(metrics: dict) -> set[str]:
    return {k for k in metrics if k.split("/")[0] in SPLIT_FAMILIES}


def ece_reference(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error written out from its definition (equal-width bins, L1)."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(
                (pred[inside] == labels[inside]).mean() - conf[inside].mean()
            )
    return total


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from tests.conftest import make_cfg

    run_dir = tmp_path_factory.mktemp("digits")
    cfg = make_cfg(run_dir, "seed=3", "logger=csv")
    return run_dir, cfg, run(cfg)


def test_results_record_schema(digits_run):
    run_dir, _, record = digits_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk == record
    assert record["status"] == "completed"
    assert record["dataset"] == "digits" and record["model"] == "mlp"
    assert record["regularizers"] == [] and record["seed"] == 3
    assert record["epochs"] == 3 and record["best_epoch"] == 3  # last weights, 1-based
    assert deterministic_keys(record["metrics"]) == CLASSIFICATION_KEYS
    # on by default for classification: temperature scaling, noise OOD images, shifted digits
    assert {"ts/test/nll", "ts/temperature", "ood/noise/max_prob/auroc"} <= set(record["metrics"])
    assert {"shift/mean/acc", "shift/blur/5/ece"} <= set(record["metrics"])
    assert record["config"]["model"]["widths"] == [256, 256]
    assert record["wall_time_s"] > 0
    assert {"torch", "lightning", "hydra-core", "python"} <= set(record["versions"])
    assert not list(run_dir.glob(".results.json.*"))  # no temporary file left behind
    m = record["metrics"]
    assert 0.8 < m["test/acc"] <= 1.0  # an MLP on digits after 3 epochs of Adam
    assert m["test/nll"] == m["test/loss"]
    assert m["gap/loss"] == pytest.approx(m["test/loss"] - m["train/loss"])
    assert m["gap/acc"] == pytest.approx(m["train/acc"] - m["test/acc"])


def test_test_metrics_match_their_definitions(digits_run):
    run_dir, _, record = digits_run
    with np.load(run_dir / "predictions.npz", allow_pickle=False) as f:
        probs, labels = f["probs"].astype(np.float64), f["labels"]
    assert probs.shape == (len(labels), 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    m = record["metrics"]
    assert m["test/acc"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert m["test/nll"] == pytest.approx(
        -np.log(probs[np.arange(len(labels)), labels]).mean(), rel=1e-4
    )
    onehot = np.eye(10)[labels]
    assert m["test/brier"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), rel=1e-4)
    assert m["test/ece"] == pytest.approx(ece_reference(probs, labels), abs=1e-4)


def test_train_metrics_are_the_eval_mode_empirical_risk(digits_run):
    run_dir, cfg, record = digits_run
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # no pickled code
    dm = instantiate(cfg.dataset)
    dm.setup("fit")
    model = instantiate(cfg.model, input_shape=tuple(dm.input_shape), num_outputs=10)
    module = BenchModule(model, "classification", optimizer=torch.optim.SGD)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    xs, ys = zip(*dm.train_eval_dataloader(), strict=True)
    with torch.no_grad():
        logits = module(torch.cat(xs))
    y = torch.cat(ys)
    assert len(y) == dm.n_train
    loss = torch.nn.functional.cross_entropy(logits.double(), y).item()
    assert record["metrics"]["train/loss"] == pytest.approx(loss, rel=1e-4)
    acc = (logits.argmax(1) == y).double().mean().item()
    assert record["metrics"]["train/acc"] == pytest.approx(acc)


def test_csv_log_has_training_curves_and_final_metrics(digits_run):
    run_dir, _, _ = digits_run
    text = (run_dir / "csv" / "metrics.csv").read_text()
    header = text.splitlines()[0].split(",")
    assert {"fit/loss", "val/loss", "val/acc", "final/test/acc"} <= set(header)
    assert "seed: 3" in (run_dir / "csv" / "hparams.yaml").read_text()


def test_same_seed_same_metrics_other_seed_differs(tmp_path, cfg_factory):
    a = run(cfg_factory("seed=7", "trainer.max_epochs=2", run_dir=tmp_path / "a"))
    b = run(cfg_factory("seed=7", "trainer.max_epochs=2", run_dir=tmp_path / "b"))
    c = run(cfg_factory("seed=8", "trainer.max_epochs=2", run_dir=tmp_path / "c"))
    assert a["metrics"] == b["metrics"]
    assert a["metrics"] != c["metrics"]
    # The seed changes initialization and batch order, never the data split.
    assert a["config"]["dataset"] == c["config"]["dataset"]


def test_regression_metrics_are_in_original_units(tmp_path, cfg_factory):
    from sklearn.datasets import load_diabetes

    record = run(
        cfg_factory(
            "dataset=diabetes",
            "model=linear",
            "trainer.max_epochs=20",
            "optimizer.lr=0.05",
            run_dir=tmp_path,
        )
    )
    assert deterministic_keys(record["metrics"]) == REGRESSION_KEYS
    assert not any(k.startswith("ts/") for k in record["metrics"])  # classification only
    with np.load(tmp_path / "predictions.npz", allow_pickle=False) as f:
        mean, var, targets = f["mean"], f["var"], f["targets"]
    raw = load_diabetes().target
    assert set(np.round(targets, 3)) <= set(np.round(raw, 3))  # original units, not z-scores
    m = record["metrics"]
    assert m["test/loss"] == pytest.approx(((mean - targets) ** 2).mean(), rel=1e-4)
    assert m["test/rmse"] == pytest.approx(math.sqrt(m["test/loss"]))
    # Without a variance head σ² is the training MSE.
    np.testing.assert_allclose(var, m["train/loss"], rtol=1e-4)
    nll = 0.5 * (np.log(2 * np.pi * var) + (targets - mean) ** 2 / var)
    assert m["test/nll"] == pytest.approx(nll.mean(), rel=1e-4)
    assert m["test/ll"] == -m["test/nll"]  # one Gaussian: its log-likelihood is −nll exactly
    assert 40 < m["test/rmse"] < 80  # a linear model on diabetes (target std ≈ 77)


def test_heteroscedastic_head_predicts_a_variance_per_point(tmp_path, cfg_factory):
    record = run(
        cfg_factory(
            "dataset=synthetic_regression",
            "dataset.heteroscedastic=true",
            "heteroscedastic=true",
            "trainer.max_epochs=5",
            run_dir=tmp_path,
        )
    )
    with np.load(tmp_path / "predictions.npz", allow_pickle=False) as f:
        mean, var = f["mean"], f["var"]
    assert var.shape == mean.shape and var.ndim == 1
    assert np.all(var > 0) and var.std() > 0  # input-dependent, not one shared σ²
    assert record["status"] == "completed"


def test_diverged_run_is_a_result(tmp_path, cfg_factory):
    record = run(
        cfg_factory(
            "dataset=diabetes",
            "model=linear",
            "optimizer=sgd",
            "optimizer.lr=1e6",
            run_dir=tmp_path,
        )
    )
    assert record["status"] == "diverged"
    # Stopped in the epoch where the loss went non-finite (1-based), not at max_epochs=3.
    assert record["diverged_at"]["epoch"] == record["epochs"] + 1 <= 3
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "diverged"


def test_failed_run_never_overwrites_a_completed_record(tmp_path, cfg_factory, monkeypatch):
    """A crash after results.json was written (closing a logger) leaves it as it is."""

    def broken_logger(*args):
        raise RuntimeError("logger service gone")

    monkeypatch.setattr("bench.finish.finish_loggers", broken_logger)
    with pytest.raises(RuntimeError, match="logger service gone"):
        run(cfg_factory("trainer.max_epochs=1", run_dir=tmp_path))
    completed = json.loads((tmp_path / "results.json").read_text())
    assert completed["status"] == "completed"
    failed = json.loads((tmp_path / "results.failed.json").read_text())
    assert failed["status"] == "failed" and "logger service gone" in failed["error"]


def test_failed_run_is_recorded(tmp_path, cfg_factory):
    with pytest.raises(Exception, match="precision"):
        run(cfg_factory("trainer.precision=bogus", run_dir=tmp_path))
    failed = json.loads((tmp_path / "results.json").read_text())
    assert failed["status"] == "failed" and "precision" in failed["error"]
    # The same schema as a completed record, so leaderboards can list failures.
    assert failed["dataset"] == "digits" and failed["model"] == "mlp"
    assert failed["regularizers"] == [] and failed["metrics"] == {} and failed["epochs"] is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.max_epochs=-1", "trainer.max_epochs"),
        ("dataset.batch_size=0", "dataset.batch_size"),
        ("dataset.batch_size=-5", "dataset.batch_size"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-0.1", "optimizer.lr"),
        ("dataset.train_size=100000", "dataset.train_size"),
        ("dataset.train_size=0", "dataset.train_size"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction"),
        ("optimizer.betas=[0.9,1.0]", "optimizer.betas"),
        ("regularizer=[l2]", "regularizer.l2.strength"),
    ],
)
def test_bad_values_fail_before_any_data_is_loaded(
    tmp_path, cfg_factory, monkeypatch, override, key
):
    from bench.data.digits import DigitsDataModule

    def no_loading(self):
        raise AssertionError("data was loaded before the config was validated")

    monkeypatch.setattr(DigitsDataModule, "load_arrays", no_loading)
    extra = ["regularizer.l2.strength=-1"] if key.startswith("regularizer") else []
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        run(cfg_factory(override, *extra, run_dir=tmp_path))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "results.json").exists()


def test_full_batch_is_valid(tmp_path, cfg_factory):
    record = run(cfg_factory("dataset.batch_size=null", "trainer.max_epochs=2", run_dir=tmp_path))
    assert record["status"] == "completed"
    assert not (tmp_path / "csv").exists()  # logger=none writes no CSV


def test_regularizers_compose_from_a_list(cfg_factory):
    cfg = cfg_factory("regularizer=[l2]", "regularizer.l2.strength=0.5")
    assert cfg.regularizer.l2.strength == 0.5
    assert dict(cfg_factory().regularizer) == {}


def test_l2_penalty_is_logged_apart_from_the_data_loss(tmp_path, cfg_factory):
    record = run(
        cfg_factory(
            "regularizer=[l2]",
            "regularizer.l2.strength=1e-2",
            "logger=csv",
            "trainer.max_epochs=2",
            run_dir=tmp_path,
        )
    )
    assert record["regularizers"] == ["l2"]
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"penalty/l2", "fit/data_loss", "fit/loss"} <= set(header)


def test_experiment_bundle_composes(cfg_factory):
    cfg = cfg_factory("experiment=small_digits")
    assert cfg.dataset.train_size == 300
    assert cfg.dataset._target_.endswith("DigitsDataModule")


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1


def test_cosine_schedule_decays_the_logged_learning_rate(tmp_path, cfg_factory):
    run(cfg_factory("scheduler=cosine", "trainer.max_epochs=4", "logger=csv", run_dir=tmp_path))
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("fit/lr")
    lrs = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    # CosineAnnealingLR(T_max=4) from 1e-3: lr_t = 1e-3·(1 + cos(πt/4))/2 at epochs t = 0..3.
    expected = [1e-3 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert lrs == pytest.approx(expected, rel=1e-6)
