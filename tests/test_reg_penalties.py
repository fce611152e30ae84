"""Penalty and proximal regularizers (l2, l1, elastic_net, weight_decay, max_norm) against the
textbook: closed forms, scikit-learn's coordinate-descent solvers and PyTorch's own optimizers.

Fits are full-batch, float64, through the real code path (datamodule → Linear → BenchModule →
its optimizer with the after-step hook), see ``tests/theory.py``. Conventions: loss = mean squared
error (no ½) + penalty as written, bias unpenalized, data standardized by the datamodule. Hence
ridge: w = (XcᵀXc + nλI)⁻¹Xcᵀyc; l1 λ ≡ sklearn Lasso(alpha=λ/2); elastic net (λ₁, λ₂) ≡
ElasticNet(alpha=λ₁/2 + λ₂, l1_ratio=λ₁/(λ₁ + 2λ₂)). Step 1/L for plain SGD, L the largest
Hessian eigenvalue. Each λ is checked to leave a margin in the reference's KKT conditions, so no
coefficient sits on the threshold.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import get_class
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import Lasso
from torch import nn

from bench.build import build_regularizers
from bench.data.regression import DiabetesDataModule, SyntheticRegressionDataModule
from bench.errors import ConfigError
from bench.models.mlp import MLP
from bench.regularizers.elastic_net import ElasticNet
from bench.regularizers.l1 import L1, soft_threshold_, step_per_unit_gradient
from bench.regularizers.l2 import L2
from bench.regularizers.max_norm import MaxNorm
from bench.regularizers.weight_decay import WeightDecay
from bench.train import run
from tests.theory import (
    centred,
    coef,
    fit,
    kkt_margin,
    linear_module,
    lipschitz,
    ridge,
    sgd,
    training_data,
)

NAMES = {
    "l1": L1,
    "elastic_net": ElasticNet,
    "weight_decay": WeightDecay,
    "max_norm": MaxNorm,
    "l2": L2,
}


def lasso(x: torch.Tensor, y: torch.Tensor, lam: float) -> np.ndarray:
    """Reference for mean((y − Xw − b)²) + λ‖w‖₁ (sklearn halves the squared error)."""
    return (
        Lasso(alpha=lam / 2, fit_intercept=True, tol=1e-12, max_iter=10**6)
        .fit(x.numpy(), y.numpy())
        .coef_
    )


def weights_only(optimizer: type[torch.optim.Optimizer], decay: float, **kwargs):
    """A torch optimizer whose own (built-in) weight_decay acts on tensors with ndim >= 2 only."""

    def make(params):
        params = list(params)
        return optimizer(
            [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
            ],
            **kwargs,
        )

    return make


@pytest.fixture(scope="module")
def diabetes():
    dm = DiabetesDataModule(batch_size=None)
    return dm, *training_data(dm)


# --------------------------------------------------------------------------- config and values


@pytest.mark.parametrize("name", sorted(NAMES))
def test_yaml_builds_the_class_with_the_constructors_defaults(cfg_factory, name):
    cfg = cfg_factory(f"regularizer=[{name}]")
    (reg,) = build_regularizers(cfg)
    assert type(reg) is NAMES[name] and reg.name == name == NAMES[name].name
    node = dict(cfg.regularizer[name])
    assert get_class(node.pop("_target_")) is NAMES[name]
    defaults = {k: p.default for k, p in inspect.signature(NAMES[name]).parameters.items()}
    assert node == defaults


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: L1(strength=-1e-3), "regularizer.l1.strength"),
        (lambda: L1(strength=float("nan")), "regularizer.l1.strength"),
        (lambda: L1(strength="0.1"), "regularizer.l1.strength"),
        (lambda: L1(mode="ista"), "regularizer.l1.mode"),
        (lambda: L1(params="biases"), "regularizer.l1.params"),
        (lambda: ElasticNet(l1_strength=-1), "regularizer.elastic_net.l1_strength"),
        (lambda: ElasticNet(l2_strength=math.inf), "regularizer.elastic_net.l2_strength"),
        (lambda: ElasticNet(params="every"), "regularizer.elastic_net.params"),
        (lambda: WeightDecay(strength=-0.1), "regularizer.weight_decay.strength"),
        (lambda: WeightDecay(params="none"), "regularizer.weight_decay.params"),
        (lambda: MaxNorm(max_norm=0), "regularizer.max_norm.max_norm"),
        (lambda: MaxNorm(max_norm=-3.0), "regularizer.max_norm.max_norm"),
        (lambda: MaxNorm(max_norm=math.inf), "regularizer.max_norm.max_norm"),
        (lambda: L2(strength=-1e-4), "regularizer.l2.strength"),
        (lambda: L2(strength="1e-4"), "regularizer.l2.strength"),
        (lambda: L2(strength=math.inf), "regularizer.l2.strength"),
        (lambda: L2(params="biases"), "regularizer.l2.params"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(make, key):
    with pytest.raises(ConfigError) as info:
        make()
    msg = str(info.value)
    assert msg.startswith(f"{key} must be ") and "\n" not in msg


def test_bad_value_from_the_command_line_names_the_key(cfg_factory):
    cfg = cfg_factory(
        "dataset=diabetes", "model=linear", "regularizer=[l1]", "regularizer.l1.mode=subgrad"
    )
    with pytest.raises(ConfigError, match=r"^regularizer\.l1\.mode must be one of"):
        run(cfg)


def test_unsupported_optimizer_is_refused_in_one_line(cfg_factory):
    cfg = cfg_factory(
        "dataset=diabetes",
        "model=linear",
        "regularizer=[l1]",
        "optimizer=sgd",
        "optimizer._target_=torch.optim.RMSprop",
        "~optimizer.nesterov",
    )
    with pytest.raises(ConfigError) as info:
        run(cfg)
    msg = str(info.value)
    assert "optimizer RMSprop" in msg and "regularizer.l1.mode=proximal" in msg
    assert "SGD, Adam, AdamW" in msg and "\n" not in msg


# --------------------------------------------------------------------------- building blocks


def test_soft_threshold_is_torchs_softshrink_and_keeps_exact_zeros():
    w = torch.tensor([-2.0, -0.3, -0.1, 0.0, 0.05, 0.3, 1.5], dtype=torch.float64)
    expected = F.softshrink(w, 0.2)
    soft_threshold_(w, 0.2)
    assert torch.equal(w, expected)
    assert (w == 0).sum() == 3 and not torch.signbit(w[w == 0]).any()  # no -0.0 either


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_step_size_is_the_actual_step_per_unit_of_first_moment(amsgrad):
    """Δw = η·m̂/(√v̂ + ε) per coordinate, so step_per_unit_gradient · m̂ must equal Δw."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    opt = torch.optim.Adam([w], lr=0.01, betas=(0.8, 0.95), eps=1e-3, amsgrad=amsgrad)
    for _ in range(4):
        before = w.detach().clone()
        opt.zero_grad()
        (w**3).sum().backward()
        opt.step()
        t = float(opt.state[w]["step"])
        m_hat = opt.state[w]["exp_avg"] / (1 - 0.8**t)
        s = step_per_unit_gradient(opt, opt.param_groups[0], w)
        torch.testing.assert_close(s * m_hat, before - w.detach(), rtol=1e-12, atol=1e-15)


def test_l2_gradient_is_2_lambda_w():
    torch.manual_seed(0)
    model = MLP((4,), 3, widths=(6, 5))
    for scope, grads_biases in (("weights", False), ("all", True)):
        model.zero_grad()
        L2(strength=0.3, params=scope).penalty(model).backward()
        for p in model.parameters():
            penalized = p.ndim >= 2 or grads_biases
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            torch.testing.assert_close(grad, 2 * 0.3 * p.detach() if penalized else 0 * grad)


def test_l2_with_sgd_is_torch_sgd_weight_decay_2_lambda(diabetes):
    dm, x, y = diabetes
    lam, lr, steps = 0.1, 0.05, 100
    ours = fit(linear_module(dm, [L2(lam)], sgd(lr)), x, y, steps)
    torchs = fit(linear_module(dm, [], weights_only(torch.optim.SGD, 2 * lam, lr=lr)), x, y, steps)
    plain = fit(linear_module(dm, [], sgd(lr)), x, y, steps)
    assert np.abs(ours - torchs).max() < 1e-12
    assert np.abs(ours - plain).max() > 1e-2  # λ mattered


# --------------------------------------------------------------------------- ridge


def test_l2_reaches_the_ridge_closed_form(diabetes):
    """Diabetes, λ=0.05, SGD step 1/(L + 2λ), 2000 steps: max |w − w_ridge| < 1e-6 (float64)."""
    dm, x, y = diabetes
    lam = 0.05
    module = linear_module(dm, [L2(lam)], sgd(1 / (lipschitz(x) + 2 * lam)))
    fit(module, x, y, 2000)
    w = coef(module)
    expected = ridge(x, y, lam)
    assert np.abs(w - expected).max() < 1e-6
    b = module.model[-1].bias.item()
    assert b == pytest.approx(float(y.mean() - x.mean(0) @ torch.from_numpy(w)), abs=1e-6)
    # The test can tell the conventions apart: the ridge of 2λ (a ½ slip) is far away.
    assert np.abs(ridge(x, y, 2 * lam) - expected).max() > 1e-2


# --------------------------------------------------------------------------- lasso


def assert_lasso_solution(w: np.ndarray, expected: np.ndarray, atol: float) -> None:
    assert np.abs(w - expected).max() < atol
    np.testing.assert_array_equal(w == 0.0, expected == 0)  # our zeros are exact 0.0


def test_l1_proximal_sgd_is_sklearns_lasso(diabetes):
    """Diabetes, λ=0.1 (4 of 10 coefficients zero), step 1/L, 1000 steps; atol 1e-5."""
    dm, x, y = diabetes
    lam = 0.1
    expected = lasso(x, y, lam)
    stationarity, inside, smallest = kkt_margin(x, y, expected, lam)
    assert stationarity < 1e-9 and inside > 0.02 and smallest > 0.01
    assert (expected == 0).sum() == 4
    module = linear_module(dm, [L1(lam)], sgd(1 / lipschitz(x)))
    fit(module, x, y, 1000)
    assert_lasso_solution(coef(module), expected, atol=1e-5)
    # sklearn's own alpha=λ (no halving) has another zero pattern: the convention is tested.
    assert ((lasso(x, y, 2 * lam) == 0) != (expected == 0)).any()


def test_l1_with_more_features_than_samples():
    """n=40, d=100 Gaussian X, λ=0.2: at most n − 1 non-zeros, equal to sklearn's (atol 1e-5),
    with plain SGD (2000 steps) and heavy-ball momentum 0.9 (500 steps)."""
    dm = SyntheticRegressionDataModule(
        n_samples=50,
        n_features=100,
        val_fraction=0.0,
        test_fraction=0.2,
        batch_size=None,
        data_seed=0,
    )
    x, y = training_data(dm)
    n, lam = len(x), 0.2
    assert (n, x.shape[1]) == (40, 100)
    expected = lasso(x, y, lam)
    stationarity, inside, smallest = kkt_margin(x, y, expected, lam)
    assert stationarity < 1e-9 and inside > 0.02 and smallest > 1e-3
    for optimizer, steps in (
        (sgd(1 / lipschitz(x)), 2000),
        (sgd(1 / lipschitz(x), momentum=0.9), 500),
    ):
        module = linear_module(dm, [L1(lam)], optimizer)
        fit(module, x, y, steps)
        w = coef(module)
        assert 0 < (w != 0).sum() <= n - 1
        assert_lasso_solution(w, expected, atol=1e-5)


def test_l1_subgradient_mode_adds_the_penalty_and_never_reaches_zero(diabetes):
    """Subgradient mode: gradient λ·sign(w); 1000 SGD steps hover around the Lasso without a
    single exact zero (the coefficients the Lasso sets to zero stay ~1e-2 away)."""
    dm, x, y = diabetes
    lam = 0.1
    torch.manual_seed(0)
    model = MLP((4,), 2, widths=(3,))
    L1(lam, mode="subgradient").penalty(model).backward()
    for p in model.parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(grad, lam * p.detach().sign() if p.ndim >= 2 else 0 * grad)

    expected = lasso(x, y, lam)
    module = linear_module(dm, [L1(lam, mode="subgradient")], sgd(1 / lipschitz(x)))
    fit(module, x, y, 1000)
    w = coef(module)
    assert (w == 0).sum() == 0 and np.abs(w[expected == 0]).max() > 1e-3


class NaiveL1(L1):
    """The textbook-looking but optimizer-blind threshold η·λ (η = the group's lr)."""

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.ndim >= 2:
                    p.copy_(F.softshrink(p, group["lr"] * self.strength))


def test_l1_threshold_follows_momentum(diabetes):
    """SGD momentum 0.9, lr 1/L, 500 steps: Lasso(λ) to 1e-5. A naive ηλ threshold instead
    converges to the Lasso of λ(1 − μ) = λ/10, exactly as the steady-state step predicts."""
    dm, x, y = diabetes
    lam, mu, lr = 0.1, 0.9, 1 / lipschitz(x)
    module = linear_module(dm, [L1(lam)], sgd(lr, momentum=mu))
    fit(module, x, y, 500)
    assert_lasso_solution(coef(module), lasso(x, y, lam), atol=1e-5)

    naive = linear_module(dm, [NaiveL1(lam)], sgd(lr, momentum=mu))
    fit(naive, x, y, 500)
    w_naive = coef(naive)
    assert_lasso_solution(w_naive, lasso(x, y, lam * (1 - mu)), atol=1e-5)
    assert np.abs(w_naive - lasso(x, y, lam)).max() > 0.1


def test_l1_threshold_follows_adam(diabetes):
    """Adam, lr 0.1 decaying geometrically to 1e-6 over 1000 steps: Lasso(λ) to 1e-5 with its
    zero pattern. A naive ηλ threshold under the same schedule ends denser and far off."""
    dm, x, y = diabetes
    lam, steps = 0.1, 1000
    expected = lasso(x, y, lam)
    adam = functools.partial(torch.optim.Adam, lr=0.1)

    def schedule(t: int) -> float:
        return 0.1 * 1e-5 ** (t / (steps - 1))

    module = linear_module(dm, [L1(lam)], adam)
    fit(module, x, y, steps, schedule)
    assert_lasso_solution(coef(module), expected, atol=1e-5)

    naive = linear_module(dm, [NaiveL1(lam)], adam)
    fit(naive, x, y, steps, schedule)
    w_naive = coef(naive)
    assert (w_naive == 0).sum() < (expected == 0).sum()  # denser, and far from the solution
    assert np.abs(w_naive - expected).max() > 0.05


def test_elastic_net_is_sklearns(diabetes):
    """Diabetes, λ₁=0.1, λ₂=0.05, step 1/(L + 2λ₂), 1000 steps: sklearn ElasticNet to 1e-5."""
    dm, x, y = diabetes
    l1, l2 = 0.1, 0.05
    expected = (
        SkElasticNet(
            alpha=l1 / 2 + l2,
            l1_ratio=l1 / (l1 + 2 * l2),
            fit_intercept=True,
            tol=1e-12,
            max_iter=10**6,
        )
        .fit(x.numpy(), y.numpy())
        .coef_
    )
    stationarity, inside, smallest = kkt_margin(x, y, expected, l1, l2)
    assert stationarity < 1e-9 and inside > 0.02 and smallest > 0.01
    assert (expected == 0).sum() == 4
    module = linear_module(dm, [ElasticNet(l1, l2)], sgd(1 / (lipschitz(x) + 2 * l2)))
    fit(module, x, y, 1000)
    assert_lasso_solution(coef(module), expected, atol=1e-5)
    assert np.abs(expected - lasso(x, y, l1)).max() > 1e-3  # the L2 part mattered


# --------------------------------------------------------------------------- weight decay


def test_weight_decay_with_sgd_is_l2_of_half_strength(diabetes):
    """Plain SGD: decoupled decay γ, l2 with λ = γ/2 and torch SGD(weight_decay=γ) coincide."""
    dm, x, y = diabetes
    gamma, lr, steps = 0.2, 0.05, 200
    ours = fit(linear_module(dm, [WeightDecay(gamma)], sgd(lr)), x, y, steps)
    l2 = fit(linear_module(dm, [L2(gamma / 2)], sgd(lr)), x, y, steps)
    torchs = fit(linear_module(dm, [], weights_only(torch.optim.SGD, gamma, lr=lr)), x, y, steps)
    plain = fit(linear_module(dm, [], sgd(lr)), x, y, steps)
    assert np.abs(ours - l2).max() < 1e-10
    assert np.abs(ours - torchs).max() < 1e-10
    assert np.abs(ours - plain).max() > 1e-2


@pytest.mark.parametrize("scope", ["weights", "all"])
def test_weight_decay_with_adam_is_torch_adamw_not_l2(diabetes, scope):
    """Under Adam the decoupled decay is exactly torch's AdamW and measurably not l2(γ/2)."""
    dm, x, y = diabetes
    gamma, lr, steps = 0.2, 0.01, 200
    adam = functools.partial(torch.optim.Adam, lr=lr)
    ours = fit(linear_module(dm, [WeightDecay(gamma, params=scope)], adam), x, y, steps)
    if scope == "all":
        adamw = functools.partial(torch.optim.AdamW, lr=lr, weight_decay=gamma)
    else:
        adamw = weights_only(torch.optim.AdamW, gamma, lr=lr)
    reference = fit(linear_module(dm, [], adamw), x, y, steps)
    coupled = fit(linear_module(dm, [L2(gamma / 2, params=scope)], adam), x, y, steps)
    assert np.abs(ours - reference).max() < 1e-10
    assert np.abs(ours - coupled).max() > 1e-3


# --------------------------------------------------------------------------- max-norm


def test_max_norm_projects_each_units_incoming_weights():
    """Rows of Linear weights and whole output channels of conv kernels; small ones untouched."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 6))
    with torch.no_grad():
        for m in (model[0], model[2]):  # spread the unit norms on both sides of c
            scale = torch.linspace(0.1, 8.0, m.weight.shape[0])
            m.weight.mul_(scale.view(-1, *[1] * (m.weight.ndim - 1)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    c = 1.0
    with torch.no_grad():
        MaxNorm(c).after_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    for name in ("0.weight", "2.weight"):
        old, new = before[name].flatten(1).double(), dict(model.named_parameters())[name].flatten(1)
        norms = old.norm(dim=1)
        assert (norms > c).any() and (norms < c).any()
        expected = old * torch.clamp(c / norms, max=1.0).unsqueeze(1)
        torch.testing.assert_close(new.double(), expected, rtol=1e-6, atol=0)
        assert torch.equal(new[norms < c], before[name].flatten(1)[norms < c])  # bit-identical
    for name in ("0.bias", "2.bias"):
        assert torch.equal(dict(model.named_parameters())[name], before[name])


def unit_norms(state_dict: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            w.flatten(1).norm(dim=1)
            for k, w in state_dict.items()
            if k.endswith("weight") and w.ndim >= 2
        ]
    )


def test_max_norm_training_keeps_every_unit_inside_the_ball(tmp_path, cfg_factory):
    """digits + MLP, 1 epoch of Adam, c = 0.4: every row norm <= c (+1e-6) in the checkpoint,
    many at the bound, while the same run without the constraint has rows beyond c."""
    c = 0.4
    common = ("trainer.max_epochs=1", "dataset.train_size=400")
    run(
        cfg_factory(
            *common,
            "regularizer=[max_norm]",
            f"regularizer.max_norm.max_norm={c}",
            run_dir=tmp_path / "max_norm",
        )
    )
    run(cfg_factory(*common, run_dir=tmp_path / "plain"))

    def norms(name: str) -> torch.Tensor:
        ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        return unit_norms(ckpt["state_dict"])

    constrained, free = norms("max_norm"), norms("plain")
    assert constrained.max() <= c + 1e-6
    assert (constrained >= c * (1 - 1e-5)).float().mean() > 0.1  # the constraint was active
    assert (free > c).float().mean() > 0.1


# --------------------------------------------------------------------------- end to end


def test_all_four_compose_in_one_run_and_log_what_they_did(tmp_path, cfg_factory):
    """The four yaml files together through Lightning; each logs its values every epoch."""
    cfg = cfg_factory(
        "dataset=diabetes",
        "model=linear",
        "optimizer=sgd",
        "logger=csv",
        "regularizer=[l1,elastic_net,weight_decay,max_norm]",
        "regularizer.max_norm.max_norm=0.1",
    )
    record = run(cfg)
    assert record["status"] == "completed"
    assert record["regularizers"] == ["l1", "elastic_net", "weight_decay", "max_norm"]
    lines = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    logged = {
        "l1/sparsity",
        "l1/penalty",
        "elastic_net/sparsity",
        "elastic_net/l1_penalty",
        "penalty/elastic_net",
        "weight_decay/weight_norm",
        "max_norm/max_unit_norm",
        "max_norm/units_at_bound",
    }
    assert logged <= set(header)
    last = {}
    for line in lines[1:]:
        last.update({k: float(v) for k, v in zip(header, line.split(","), strict=True) if v})
    assert last["max_norm/max_unit_norm"] <= 0.1 + 1e-6  # the last hook of every step
    assert last["max_norm/units_at_bound"] == 1.0  # the only unit started above 0.1


def test_l1_from_the_command_line_reports_exact_zeros(tmp_path, cfg_factory):
    """Diabetes + linear + full-batch SGD + l1 λ=0.3 for 30 epochs: results.json's sparsity is
    the fraction of exact zeros in the saved weights, and some weights are zero."""
    cfg = cfg_factory(
        "dataset=diabetes",
        "model=linear",
        "regularizer=[l1]",
        "regularizer.l1.strength=0.3",
        "dataset.batch_size=null",
        "optimizer=sgd",
        "trainer.max_epochs=30",
    )
    record = run(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    w = ckpt["state_dict"]["model.1.weight"]
    assert w.shape == (1, 10)
    zeros = float((w == 0).float().mean())
    assert record["sparsity"] == pytest.approx(zeros)
    assert 0 < record["sparsity"] < 1
    assert ckpt["state_dict"]["model.1.bias"] != 0  # the bias is not regularized


def test_the_command_line_path_reproduces_the_lasso(tmp_path, cfg_factory):
    """The README's reproduction command, through Hydra + Lightning at trainer.precision=64-true:
    full-batch plain SGD with lr 1/L for 1000 epochs lands on scikit-learn's Lasso(alpha=λ/2)."""
    lam = 0.1
    dm = DiabetesDataModule(batch_size=None)
    x, y = training_data(dm)
    cfg = cfg_factory(
        "dataset=diabetes", "model=linear", "regularizer=[l1]", f"regularizer.l1.strength={lam}",
        "dataset.batch_size=null", "optimizer=sgd", f"optimizer.lr={1 / lipschitz(x)}",
        "trainer.precision=64-true", "trainer.max_epochs=1000", run_dir=tmp_path,
    )  # fmt: skip
    record = run(cfg)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    w = state["model.1.weight"].numpy().ravel()
    reference = Lasso(alpha=lam / 2, fit_intercept=True, tol=1e-12, max_iter=10**6).fit(
        *centred(x, y)
    )
    np.testing.assert_allclose(w, reference.coef_, atol=1e-5)
    np.testing.assert_array_equal(w == 0, reference.coef_ == 0)
    assert record["sparsity"] == pytest.approx((reference.coef_ == 0).mean())
