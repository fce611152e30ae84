"""The MC-dropout UCI reproduction (Gal & Ghahramani 2016) piece by piece, then end to end.

Every number is checked against a computation written here: the prior's strength against its
closed form, the log-likelihood against the paper's logsumexp formula (scipy), the grid files
read with numpy, and the refit sweeper's choices against the grid runs' own records.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy.special import logsumexp

from bench.data.uci import UCI
from bench.errors import ConfigError
from bench.metrics import regression_metrics
from bench.models.mlp import MLP
from bench.regularizers.dropout import Dropout
from bench.regularizers.dropout_prior import DropoutPrior
from bench.uncertainty.base import OutputHead
from bench.uncertainty.mc_dropout import MCDropout
from bench.validation import validate_config
from tests.conftest import CONF_DIR, SHARED_UCI, needs_uci, run_cli, sweep_records

pytestmark = needs_uci


def grid(name: str, file: str) -> list[float]:
    return np.loadtxt(SHARED_UCI / name / f"{file}.txt", ndmin=1).tolist()


def experiment(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=["experiment=gal2016_uci", f"dataset.data_dir={SHARED_UCI}", *overrides],
            return_hydra_config=True,
        )


def test_the_prior_strength_is_the_closed_form_and_penalizes_weights_only():
    dm = UCI(name="yacht", split=2, validation=True, data_dir=str(SHARED_UCI))
    net = MLP((6,), 1, widths=[50])
    reg = DropoutPrior(length_scale=1e-2, p=0.05, tau=0.5)
    reg.setup(dm, net)
    n_fit = int(0.8 * len(np.loadtxt(SHARED_UCI / "yacht" / "index_train_2.txt")))  # N: the
    # rows the network trains on during the grid search (the reference code's int(0.8 n))
    assert reg.strength == pytest.approx(1e-4 * 0.95 / (2 * n_fit * 0.5), rel=1e-15)
    weights = [m.weight for m in net.modules() if isinstance(m, torch.nn.Linear)]
    expected = reg.strength * sum(
        float((w.detach() ** 2).sum()) for w in weights
    )  # no biases (Keras W_reg)
    assert float(reg.penalty(net).detach()) == pytest.approx(expected, rel=1e-6)


def test_the_prior_needs_tau_for_a_regression_and_takes_one_for_a_classifier():
    dm = UCI(name="yacht", split=0, data_dir=str(SHARED_UCI))
    with pytest.raises(ConfigError, match=r"^regularizer\.dropout_prior\.tau .*noise_precision"):
        DropoutPrior(p=0.1).setup(dm, MLP((6,), 1, widths=[8]))
    for bad in ({"p": 1.0}, {"tau": 0.0}, {"length_scale": -1.0}):
        with pytest.raises(ConfigError, match=r"^regularizer\.dropout_prior\."):
            DropoutPrior(**bad)


def test_noise_precision_sets_the_predictive_noise_and_is_validated():
    head = OutputHead.for_run(None, "regression", False, type("D", (), {"target_mean": 1.0,
                              "target_std": 2.0})(), noise_precision=4.0)  # fmt: skip
    assert head.noise_var == 0.25  # 1/τ, in original units as the protocol evaluates
    base = experiment()
    for bad in (0, -1.0, "x"):
        cfg = OmegaConf.merge(base, {"noise_precision": bad})
        with pytest.raises(ConfigError, match=r"^noise_precision must be"):
            validate_config(cfg)
    cfg = OmegaConf.merge(base, {"heteroscedastic": True})
    with pytest.raises(ConfigError, match=r"^noise_precision is the fixed noise"):
        validate_config(cfg)


def test_the_experiment_reads_the_protocol_from_the_sets_files():
    for name in ("bostonHousing", "wine-quality-red", "protein-tertiary-structure"):
        cfg = experiment(f"dataset.name={name}", "protocol.p_index=2", "protocol.tau_index=1")
        assert cfg.noise_precision == grid(name, "tau_values")[1]
        assert cfg.regularizer.dropout.p_input == cfg.regularizer.dropout.p_dense
        assert cfg.regularizer.dropout.p_dense == grid(name, "dropout_rates")[2]
        assert cfg.regularizer.dropout_prior.p == cfg.regularizer.dropout.p_dense
        assert cfg.regularizer.dropout_prior.tau == cfg.noise_precision
        assert list(cfg.model.widths) == [int(grid(name, "n_hidden")[0])]
        assert cfg.trainer.max_epochs == 100 * int(grid(name, "n_epochs")[0])
    assert cfg.trainer.max_epochs == 2000 and cfg.model.widths == [100]  # protein
    assert cfg.callbacks.mc_dropout.samples == 10_000 and cfg.dataset.batch_size == 128
    assert cfg.optimizer.lr == 1e-3 and cfg.regularizer.dropout_prior.length_scale == 1e-2
    sweeper = cfg.hydra.sweeper
    assert sweeper.select == "mc/val/ll" and sweeper.mode == "max"
    assert OmegaConf.to_container(sweeper.refit) == {
        "dataset.validation": False,  # the chosen pair retrained on the whole training split
        "evaluation.splits": ["test"],
    }
    assert list(cfg.evaluation.splits) == ["val", "test"]  # the grid search: no train pass
    bad = experiment("protocol.tau_index=3")
    with pytest.raises(Exception, match=r"tau_values.txt has 3 values \(index 0..2\)"):
        bad.noise_precision  # noqa: B018 — resolving the value is the check


def test_mc_log_likelihood_is_gals_logsumexp_formula():
    torch.manual_seed(0)
    net = Dropout(p_input=0.1, p_dense=0.1).configure_model(MLP((3,), 1, widths=[16]))
    x, y = torch.randn(40, 3), torch.randn(40).double() * 2 + 1
    tau = 0.7
    head = OutputHead("regression", target_mean=1.0, target_std=2.0, noise_var=1 / tau)
    predictor = MCDropout(samples=300)
    predictor.fit([net], head)
    pred = predictor.predict([x[:25], x[25:]])
    y_t = pred.mixture[0].numpy()  # (T, N): the T passes' predictions, original units
    assert y_t.shape == (300, 40) and np.allclose(y_t.mean(0), pred.mean.numpy())
    assert y_t.std(0).min() > 0  # every input saw different masks
    yn = y.numpy()
    ll = logsumexp(-0.5 * tau * (yn - y_t) ** 2, axis=0) - math.log(300)
    ll = np.mean(ll - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(tau))
    metrics = regression_metrics(pred.mean, pred.var, y, pred.mixture)
    assert metrics["ll"] == pytest.approx(ll, rel=1e-12)
    assert metrics["ll"] > -metrics["nll"] - 1.0  # a different number from the Gaussian's


@pytest.mark.slow
def test_grid_search_then_refit_end_to_end(tmp_path: Path):
    """The CI smoke version: 2 splits × 2 rates × 2 precisions, 40 epochs, T = 50."""
    args = (
        "--multirun",
        "experiment=gal2016_uci",
        "dataset.name=yacht",
        f"dataset.data_dir={SHARED_UCI}",
        "dataset.split=0,1",
        "protocol.p_index=0,3",
        "protocol.tau_index=0,2",
        "protocol.epochs_factor=1",
        "callbacks.mc_dropout.samples=50",
        "threads=1",
    )
    result = run_cli(*args, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "population of 8" in result.stderr + result.stdout  # the grid trained as one program
    records = [json.loads(p.read_text()) for p in sweep_records(tmp_path)]
    grid_runs = [r for r in records if r["config"]["dataset"]["validation"]]
    refits = [r for r in records if not r["config"]["dataset"]["validation"]]
    assert len(grid_runs) == 8 and len(refits) == 2
    taus, rates = grid("yacht", "tau_values"), grid("yacht", "dropout_rates")
    for refit in refits:
        split = refit["config"]["dataset"]["split"]
        mine = [r for r in grid_runs if r["config"]["dataset"]["split"] == split]
        best = max(mine, key=lambda r: r["metrics"]["mc/val/ll"])  # Gal's criterion
        for key in ("noise_precision", "protocol"):
            assert refit["config"][key] == best["config"][key]
        assert refit["config"]["noise_precision"] == taus[best["config"]["protocol"]["tau_index"]]
        p = refit["config"]["regularizer"]["dropout"]["p_dense"]
        assert p == rates[refit["config"]["protocol"]["p_index"]]
        assert math.isfinite(refit["metrics"]["mc/test/ll"])
    sweep = next((tmp_path / "out" / "multiruns").iterdir())
    choices = json.loads((sweep / "refit.json").read_text())
    assert len(choices["groups"]) == 2 and choices["select"] == "mc/val/ll"
    (row,) = [
        r for r in json.loads((sweep / "leaderboard_published.json").read_text())
        if r["metric"] == "mc/test/rmse"
    ]  # fmt: skip
    values = [r["metrics"]["mc/test/rmse"] for r in refits]
    assert row["row"] == "yacht" and row["n"] == 2 and row["published"] == 0.67
    assert row["ours"] == pytest.approx(np.mean(values))
    assert row["ours_se"] == pytest.approx(np.std(values, ddof=1) / math.sqrt(2))
    # The same command again: both phases find their runs complete and touch nothing.
    stamps = {p: p.stat().st_mtime_ns for p in sweep_records(tmp_path)}
    again = run_cli(*args, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in sweep_records(tmp_path)} == stamps
    assert json.loads((sweep / "refit.json").read_text())["groups"] == choices["groups"]
