"""The final evaluation end to end: every predictor, OOD partners, shift, ensembles, records.

Unit tests of the pieces live beside them (test_metrics, test_mc_dropout, test_temperature,
test_eval_sets); here the real config runs and the record is checked against the saved
predictions and against computations written in the test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from bench.errors import ConfigError
from bench.evaluate import EvalSettings, evaluate
from bench.metrics import classification_metrics, ood_metrics
from bench.train import run
from bench.uncertainty.base import OutputHead
from bench.uncertainty.deterministic import Deterministic
from bench.uncertainty.ensemble import Ensemble
from bench.uncertainty.mc_dropout import MCDropout

PREFIXES = ("", "mc/", "ts/")
MI_RATIO = 2.5  # measured 3.15-3.24 over seeds 0-2
TEST_KEYS = {"loss", "acc", "nll", "brier", "ece", "mce", "aece", "cwece", "misclass_auroc", "aurc"}


def test_dropout_run_scores_every_method_under_its_prefix(dropout_digits_run):
    run_dir, record = dropout_digits_run
    m = record["metrics"]
    assert json.loads((run_dir / "results.json").read_text()) == record
    for p in PREFIXES:
        assert {f"{p}test/{k}" for k in TEST_KEYS} <= set(m), p
        assert {f"{p}train/loss", f"{p}val/loss", f"{p}gap/loss", f"{p}gap/acc"} <= set(m), p
        assert m[f"{p}gap/loss"] == pytest.approx(m[f"{p}test/loss"] - m[f"{p}train/loss"])
    assert m["mc/samples"] == 8
    assert m["ts/temperature"] > 0
    # The MC prediction is not the deterministic one (dropout is really on at test time).
    assert m["mc/test/nll"] != m["test/nll"]
    assert (run_dir / "reliability.png").stat().st_size > 1000
    assert record["plots"] == {"reliability": "reliability.png"}


def test_saved_predictions_reproduce_the_recorded_metrics(dropout_digits_run):
    run_dir, record = dropout_digits_run
    with np.load(run_dir / "predictions.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    labels = arrays["labels"]
    for npz, prefix in (("probs", ""), ("mc_probs", "mc/"), ("ts_probs", "ts/")):
        probs = arrays[npz].astype(np.float64)
        probs /= probs.sum(1, keepdims=True)  # saved as float32
        recomputed = classification_metrics(probs, labels)
        for key in ("acc", "ece", "brier", "nll"):
            assert recomputed[key] == pytest.approx(
                record["metrics"][f"{prefix}test/{key}"], abs=2e-6
            )
    # MC's decomposition: total entropy = expected entropy + mutual information, MI >= 0.
    p = arrays["mc_probs"].astype(np.float64)
    total = -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
    assert np.allclose(arrays["mc_entropy"], total, atol=1e-5)
    assert np.allclose(
        arrays["mc_entropy"], arrays["mc_expected_entropy"] + arrays["mc_mutual_info"]
    )
    assert (arrays["mc_mutual_info"] >= 0).all()


def test_ood_and_shift_keys_follow_every_prefix(dropout_digits_run):
    _, record = dropout_digits_run
    m = record["metrics"]
    for p in PREFIXES:
        for stat in ("auroc", "aupr", "fpr95"):
            assert f"{p}ood/noise/max_prob/{stat}" in m
            assert f"{p}ood/noise/entropy/{stat}" in m
        for corruption in ("gaussian_noise", "rotation", "blur", "contrast"):
            for severity in range(1, 6):
                for key in ("acc", "ece", "nll"):
                    assert f"{p}shift/{corruption}/{severity}/{key}" in m
        assert {f"{p}shift/mean/acc", f"{p}shift/mean/ece"} <= set(m)
    assert "mc/ood/noise/mutual_info/auroc" in m
    assert "ood/noise/energy/auroc" in m and "ood/noise/max_logit/auroc" in m


def test_severity_zero_is_the_clean_test_set_and_accuracy_falls_with_severity(cfg_factory):
    record = run(
        cfg_factory(
            "trainer.max_epochs=15",
            "evaluation.shift.severities=[0,1,2,3,4,5]",
            "evaluation.shift.max_samples=null",
            "evaluation.ood.partners=[]",
        )
    )
    m = record["metrics"]
    corruptions = ("gaussian_noise", "rotation", "blur", "contrast")
    for c in corruptions:
        assert m[f"shift/{c}/0/acc"] == m["test/acc"]
        assert m[f"shift/{c}/0/nll"] == pytest.approx(m["test/nll"])
    mean_acc = [np.mean([m[f"shift/{c}/{s}/acc"] for c in corruptions]) for s in range(6)]
    assert all(a >= b for a, b in zip(mean_acc, mean_acc[1:], strict=False)), mean_acc
    assert mean_acc[5] < mean_acc[0] - 0.2  # severity 5 costs a trained MLP > 20 points
    # shift/mean averages severities 1..5 only
    assert m["shift/mean/acc"] == pytest.approx(np.mean(mean_acc[1:]))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dropout_mlp_is_more_uncertain_on_noise_than_on_digits(cfg_factory, tmp_path, seed):
    """Epistemic uncertainty (mutual information) flags inputs unlike anything in training.

    Margin, for each of 3 seeds: the mean MI on noise images is at least MI_RATIO times the mean
    MI on the test digits, and a noise image outranks a test digit with probability >= 0.85
    (the AUROC of MI with noise as positive). Measured: see README.
    """
    record = run(
        cfg_factory(
            f"seed={seed}",
            "trainer.max_epochs=20",
            "regularizer=[dropout]",
            "evaluation.shift.corruptions=[]",
            "evaluation.ood.partners=[noise]",
        )
    )
    with np.load(tmp_path / "run" / "predictions.npz") as f:
        mi_test, mi_noise = f["mc_scores_mutual_info"], f["mc_ood_noise_mutual_info"]
        assert np.allclose(mi_test, f["mc_mutual_info"])
    assert mi_noise.mean() >= MI_RATIO * mi_test.mean()
    assert record["metrics"]["mc/ood/noise/mutual_info/auroc"] >= 0.85


def test_an_ood_set_identical_to_the_test_set_is_indistinguishable():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    x = torch.randn(200, 5)
    y = torch.randint(0, 3, (200,))
    dm = TensorData(x, y)
    settings = EvalSettings(splits=("test",), ood={"same": x.clone()})
    head = OutputHead("classification")
    ev = evaluate([net], head, dm, [Deterministic(), MCDropout(samples=5, seed=1)], settings)
    for key, value in ev.metrics.items():
        if key.endswith("/auroc") and "/ood/" in f"/{key}":
            # identical inputs give identical scores: every in/out pair is a tie → exactly 0.5
            assert value == pytest.approx(0.5, abs=1e-12), key


def test_ensemble_of_identical_members_equals_the_member():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    x = torch.randn(50, 4)
    head = OutputHead("classification")
    single, ens = Deterministic(), Ensemble()
    single.fit([net], head)
    ens.fit([net, net, net], head)
    a, b = single.predict(x.split(16)), ens.predict(x.split(16))
    assert torch.allclose(a.probs, b.probs, atol=1e-15)
    assert torch.equal(b.scores["mutual_info"], torch.zeros(50, dtype=torch.float64))
    # members are evaluated in eval mode: dropout off, so two calls agree and match eval forward
    net.train()
    again = ens.predict(x.split(16))
    assert torch.equal(again.probs, b.probs)
    assert net.training  # the mode the caller had is restored
    with torch.no_grad():
        eval_probs = net.eval()(x).double().softmax(-1)
    assert torch.allclose(b.probs, eval_probs, atol=1e-6)


def test_regression_ensemble_is_the_gaussian_mixture():
    torch.manual_seed(0)
    nets = [nn.Linear(3, 2) for _ in range(4)]
    x = torch.randn(30, 3)
    head = OutputHead("regression", heteroscedastic=True, target_mean=2.0, target_std=3.0)
    ens = Ensemble()
    ens.fit(nets, head)
    pred = ens.predict([x])
    with torch.no_grad():
        outs = [n(x).double() for n in nets]
    means = torch.stack([o[:, 0] * 3.0 + 2.0 for o in outs])
    variances = torch.stack([o[:, 1].exp() * 9.0 for o in outs])
    mixture_mean = means.mean(0)
    # second moment of the mixture minus the squared mean
    mixture_var = (variances + means**2).mean(0) - mixture_mean**2
    assert torch.allclose(pred.mean, mixture_mean)
    assert torch.allclose(pred.var, mixture_var)


def test_deep_ensemble_run_reports_the_ensemble_members_and_diversity(cfg_factory, tmp_path):
    record = run(
        cfg_factory(
            "ensemble.members=3",
            "evaluation.shift.corruptions=[]",
            "evaluation.ood.partners=[]",
        )
    )
    m = record["metrics"]
    assert record["ensemble"]["members"] == 3 and record["ensemble"]["seeds"][0] == 0
    assert len(set(record["ensemble"]["seeds"])) == 3
    assert {f"ens/test/{k}" for k in TEST_KEYS} <= set(m)
    assert 0 < m["ens/test/disagreement"] < 1 and -1 <= m["ens/test/error_corr"] <= 1
    acc = [m[f"ens/members/test/acc/{s}"] for s in ("worst", "mean", "best")]
    assert acc[0] <= acc[1] <= acc[2]
    # member 0 is the run's own network: test/* equals the same run without an ensemble
    single = run(
        cfg_factory(
            "evaluation.shift.corruptions=[]",
            "evaluation.ood.partners=[]",
            run_dir=tmp_path / "single",
        )
    )
    assert single["metrics"]["test/nll"] == m["test/nll"]
    assert (tmp_path / "run" / "members" / "2" / "checkpoints" / "last.ckpt").is_file()
    with np.load(tmp_path / "run" / "predictions.npz") as f:
        assert f["ens_probs"].shape == f["probs"].shape
        # the ensemble's probabilities average the members: ensemble NLL <= mean member NLL
    assert m["ens/test/nll"] <= m["ens/members/test/nll/mean"] + 1e-12


def test_bagging_trains_members_on_bootstrap_resamples(cfg_factory):
    record = run(
        cfg_factory(
            "ensemble.members=2",
            "ensemble.bootstrap=true",
            "evaluation.shift.corruptions=[]",
            "evaluation.ood.partners=[]",
        )
    )
    assert record["ensemble"]["bootstrap"] is True
    assert "ens/test/nll" in record["metrics"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("+callbacks=mc_dropout",), "MC dropout"),
        (
            ("regularizer=[dropout]", "+callbacks=mc_dropout", "callbacks.mc_dropout.samples=0"),
            "samples",
        ),
        (("ensemble.members=0",), "ensemble.members"),
        (("evaluation.ood.partners=[nope]",), "evaluation.ood.partners"),
        (("evaluation.shift.corruptions=[melt]",), "evaluation.shift.corruptions"),
        (("evaluation.shift.severities=[6]",), "evaluation.shift.severities"),
        (("evaluation.splits=[train]",), "evaluation.splits"),
    ],
)
def test_bad_uncertainty_settings_are_one_line_before_training(cfg_factory, overrides, key):
    with pytest.raises(ConfigError) as err:
        run(cfg_factory(*overrides))
    assert key in str(err.value) and "\n" not in str(err.value)


def test_missing_explicit_ood_partner_is_one_line(cfg_factory, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(
            cfg_factory(
                "evaluation.ood.partners=[fashion_mnist]",
                f"evaluation.ood.data_dir={tmp_path / 'empty'}",
            )
        )
    assert "fashion_mnist" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "results.json").exists()


def test_ood_metric_against_pairwise_counting_on_real_scores(dropout_digits_run):
    """The recorded OOD AUROC equals a pairwise count over the saved entropy scores."""
    run_dir, record = dropout_digits_run
    del run_dir
    assert 0 <= record["metrics"]["ood/noise/entropy/auroc"] <= 1
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(1.0, size=30)
    pairs = sum((bj > ai) + 0.5 * (bj == ai) for ai in a for bj in b) / (len(a) * len(b))
    assert ood_metrics(a, b)["auroc"] == pytest.approx(pairs)


class TensorData:
    """The slice of the datamodule interface ``evaluate`` reads, over given tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.tensors = {split: (x, y) for split in ("train", "val", "test")}
