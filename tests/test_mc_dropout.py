"""MC dropout: sampling mode, the batched sampler against a plain loop, the uncertainty
decompositions against their formulas, the refusals, and the callback in a real Lightning fit."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from scipy.special import logsumexp
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from bench.callbacks.mc_dropout import MCDropoutCallback, validation_metrics
from bench.errors import ConfigError
from bench.module import BenchModule
from bench.regularizers.dropout import Dropout
from bench.train import run
from bench.uncertainty.base import OutputHead
from bench.uncertainty.mc_dropout import (
    MCDropout,
    check_stochastic,
    has_active_dropout,
    predict_split,
    sampling_mode,
)
from tests.conftest import make_cfg

DIGITS_SHAPE = (1, 8, 8)
CLASSES = OutputHead("classification")


def mc(network: nn.Module, head: OutputHead = CLASSES, **settings) -> MCDropout:
    predictor = MCDropout(**settings)
    predictor.fit([network], head)
    return predictor


def build(model: str, dropout: bool = True, **rates: float) -> nn.Sequential:
    """A project model for digits in float64, configured by the dropout regularizer or not."""
    torch.manual_seed(0)
    cfg = make_cfg(Path("unused"), f"model={model}")
    net = instantiate(cfg.model, input_shape=DIGITS_SHAPE, num_outputs=10).double()
    return Dropout(**rates).configure_model(net) if dropout else net


def entropy_loop(p: torch.Tensor) -> torch.Tensor:
    """H[p] row by row with an explicit sum over classes (0 log 0 = 0)."""
    out = torch.zeros(p.shape[0], dtype=torch.float64)
    for i in range(p.shape[0]):
        for k in range(p.shape[1]):
            if p[i, k] > 0:
                out[i] -= p[i, k] * math.log(p[i, k])
    return out


def capture_samples(network: nn.Sequential) -> list[torch.Tensor]:
    """Outputs of the last block in sampling passes (train mode), chunk by chunk."""
    captured: list[torch.Tensor] = []
    network[-1].register_forward_hook(
        lambda m, i, out: captured.append(out.detach().clone()) if m.training else None
    )
    return captured


# --- a user's model: functional dropout and batch norm ----------------------------------------
class UserNet(nn.Module):
    """Not built from our slots: dropout only as ``F.dropout(training=self.training)``."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(5, 16), nn.BatchNorm1d(16), nn.Linear(16, 3)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(torch.relu(self.bn(self.fc1(x))), self.p, training=self.training)
        return self.fc2(h)


def user_net() -> UserNet:
    torch.manual_seed(1)
    net = UserNet().double()
    with torch.no_grad():  # running statistics far from any batch's own
        net.bn.running_mean.uniform_(-2.0, 2.0)
        net.bn.running_var.uniform_(0.5, 3.0)
        net.bn.num_batches_tracked.fill_(7)
    return net


def test_user_model_samples_with_running_stats_and_leaves_everything_as_it_was():
    net = user_net()
    net.eval()
    net.fc2.train()  # a mixed state, to see it restored module by module
    modes = {name: m.training for name, m in net.named_modules()}
    stats = {k: v.clone() for k, v in net.bn.state_dict().items()}
    seen = []
    net.bn.register_forward_hook(lambda m, i, o: seen.append((m.training, i[0].clone(), o)))
    x = torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rng = torch.random.get_rng_state()

    first = mc(net, samples=16, seed=3).predict(x.split(8))

    assert torch.equal(torch.random.get_rng_state(), rng)  # the global stream is untouched
    assert {name: m.training for name, m in net.named_modules()} == modes
    for key, value in net.bn.state_dict().items():  # incl. num_batches_tracked
        assert torch.equal(value, stats[key]), key
    bn = net.bn
    for training, inp, out in seen:  # y = (x − running mean)/√(running var + eps)·γ + β
        assert not training
        for j in range(16):
            by_hand = (inp[:, j] - stats["running_mean"][j]) / math.sqrt(
                stats["running_var"][j] + bn.eps
            ) * bn.weight[j] + bn.bias[j]
            torch.testing.assert_close(out[:, j], by_hand, rtol=1e-12, atol=1e-12)
    assert first.scores["mutual_info"].min() > 0  # the samples differ
    again = mc(net, samples=16, seed=3).predict(x.split(8))
    assert torch.equal(again.probs, first.probs)  # same seed, same masks
    other = mc(net, samples=16, seed=4).predict(x.split(8))
    assert not torch.equal(other.probs, first.probs)


def test_user_model_samples_really_differ_and_its_functional_dropout_is_accepted():
    net = user_net()
    check_stochastic(net, (5,))  # accepted although it has no dropout layer
    captured = []
    net.fc2.register_forward_hook(lambda m, i, out: captured.append(out))
    predictor = mc(net, samples=6, seed=0)
    predictor.predict([torch.randn(4, 5, dtype=torch.float64)])
    assert predictor.prefix_length == 0  # not a Sequential: the whole model is repeated
    samples = captured[-1].reshape(6, 4, 3)
    for s in range(1, 6):
        assert not torch.equal(samples[s], samples[0])


class NoisyLinear(nn.Linear):
    """A block whose dropout is functional: invisible to the model's structure."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(super().forward(x), 0.5, training=self.training)


def test_functional_dropout_in_an_early_block_is_repeated_not_run_once():
    torch.manual_seed(8)
    net = nn.Sequential(NoisyLinear(5, 8), nn.Dropout(0.2), nn.Linear(8, 3)).double()
    rows = []
    net[0].register_forward_hook(lambda m, i, out: rows.append(len(out)) if m.training else None)
    captured = capture_samples(net)
    predictor = mc(net, samples=4)
    predictor.predict([torch.randn(10, 5, dtype=torch.float64)])
    assert predictor.prefix_length == 0  # the structure alone would say 1
    assert rows[-1] == 4 * 10  # the noisy block ran for every sample
    samples = captured[-1].reshape(4, 10, 3)
    assert not torch.equal(samples[0], samples[1])


@pytest.mark.parametrize(
    "layer,shape",
    [
        (nn.Dropout(0.5), (64, 10)),
        (nn.Dropout1d(0.5), (64, 8, 5)),
        (nn.Dropout2d(0.5), (64, 8, 3, 3)),
        (nn.Dropout3d(0.5), (64, 8, 2, 2, 2)),
        (nn.AlphaDropout(0.5), (64, 10)),
        (nn.FeatureAlphaDropout(0.5), (64, 8, 3, 3)),
    ],
)
def test_every_dropout_flavour_is_active_in_sampling_mode(layer: nn.Module, shape: tuple):
    net = nn.Sequential(nn.Identity(), layer).eval()
    x = torch.randn(shape)
    assert torch.equal(net(x), x)  # eval: identity
    with sampling_mode(net):
        assert layer.training and not torch.equal(net(x), x)
    assert not layer.training
    assert has_active_dropout(net, shape[1:])


# --- batched sampling == a plain loop over the same masks -------------------------------------
class RecordedDropout(_DropoutNd):
    """Unit-wise dropout that records the mask of every row it draws, or replays given rows."""

    def __init__(self, p: float) -> None:
        super().__init__(p)
        self.masks: list[torch.Tensor] = []
        self.replay: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.replay is not None:
            mask, self.replay = self.replay[: len(x)], self.replay[len(x) :]
        else:
            mask = torch.bernoulli(torch.full_like(x, 1 - self.p)) / (1 - self.p)
        self.masks.append(mask)
        return x * mask


def recorded_net() -> nn.Sequential:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(),  # deterministic prefix
        RecordedDropout(0.5), nn.Linear(16, 16), nn.ReLU(), RecordedDropout(0.3), nn.Linear(16, 4),
    ).double()  # fmt: skip


# Remainder activations per row, by hand: its input (16) and the outputs of dropout (16),
# linear (16), relu (16), dropout (16), linear (4), float64.
BYTES_PER_ROW = (16 * 5 + 4) * 8
T = 20


@torch.no_grad()
def looped_logits(net: nn.Sequential, x: torch.Tensor, m1, m2) -> torch.Tensor:
    """One plain pass per sample t with the masks' rows t·B … (t+1)·B − 1: (T, B, 4)."""
    b = len(x)
    out = []
    for t in range(T):
        h = torch.tanh(x @ net[0].weight.T + net[0].bias) * m1[t * b : (t + 1) * b]
        h = torch.relu(h @ net[3].weight.T + net[3].bias) * m2[t * b : (t + 1) * b]
        out.append(h @ net[6].weight.T + net[6].bias)
    return torch.stack(out)


def test_batched_sampling_equals_a_plain_loop_and_does_not_depend_on_the_chunk_size():
    net = recorded_net()
    x = torch.randn(33, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    batches = [x[:16], x[16:28], x[28:]]  # 16, 12, 5 rows
    calls = {"prefix": [], "remainder": []}
    net[0].register_forward_hook(lambda m, i, o: calls["prefix"].append(len(i[0])))
    net[2].register_forward_hook(lambda m, i, o: calls["remainder"].append(len(i[0])))
    budget_mb = 7.5 * BYTES_PER_ROW * 16 / 2**20  # t_chunk = 7 for 16 rows
    predictor = mc(net, samples=T, memory_mb=budget_mb)
    batched = predictor.predict(batches)

    assert predictor.prefix_length == 2 and predictor.t_chunk == 7
    # The prefix runs once per batch (after three probe calls on the first 8 rows) ...
    assert calls["prefix"] == [8, 8, 8, 16, 12, 5]
    # ... the remainder in chunks of t_chunk·B rows, t_chunk = ⌊budget/(B·bytes per row)⌋.
    chunks = {16: [7, 7, 6], 12: [10, 10], 5: [20]}
    assert calls["remainder"] == [8] + [t * b for b in (16, 12, 5) for t in chunks[b]]

    m1, m2 = (torch.cat(net[i].masks) for i in (2, 5))  # the eval-mode probe drew none
    assert len(m1) == len(m2) == T * 33
    probs, expected = [], []
    offset = 0
    for xb in batches:
        n = T * len(xb)
        p_t = looped_logits(net, xb, m1[offset : offset + n], m2[offset : offset + n]).softmax(-1)
        offset += n
        probs.append(p_t.mean(0))
        expected.append(torch.stack([entropy_loop(p_t[t]) for t in range(T)]).mean(0))
    probs, expected = torch.cat(probs), torch.cat(expected)
    torch.testing.assert_close(batched.probs, probs, rtol=0, atol=1e-12)
    torch.testing.assert_close(batched.scores["entropy"], entropy_loop(probs), rtol=0, atol=1e-12)
    torch.testing.assert_close(batched.arrays["expected_entropy"], expected, rtol=0, atol=1e-12)
    mutual_info = entropy_loop(probs) - expected
    torch.testing.assert_close(batched.arrays["mutual_info"], mutual_info, rtol=0, atol=1e-12)

    for memory_mb, t_chunk in ((1e-9, 1), (3.5 * BYTES_PER_ROW * 16 / 2**20, 3), (1e3, T)):
        for i, mask in ((2, m1), (5, m2)):
            net[i].replay = mask
        other = mc(net, samples=T, memory_mb=memory_mb)
        replayed = other.predict(batches)
        assert other.t_chunk == t_chunk
        assert len(net[2].replay) == len(net[5].replay) == 0  # every row was used, in order
        torch.testing.assert_close(replayed.probs, batched.probs, rtol=0, atol=1e-12)
        for key in ("entropy", "expected_entropy", "mutual_info"):
            torch.testing.assert_close(
                replayed.arrays[key], batched.arrays[key], rtol=0, atol=1e-12
            )


# --- refusals -------------------------------------------------------------------------------
MESSAGE = (
    "MC dropout needs active dropout, but model={} has none: "
    "select regularizer=[dropout] or add dropout to the model"
)


@pytest.mark.parametrize("model", ["mlp", "linear"])
def test_a_model_without_dropout_is_refused_in_one_line(model: str):
    net = build(model, dropout=False)
    rng = torch.random.get_rng_state()
    with pytest.raises(ConfigError) as err:
        check_stochastic(net, DIGITS_SHAPE)
    assert str(err.value) == MESSAGE.format(model)
    assert torch.equal(torch.random.get_rng_state(), rng)
    with pytest.raises(ConfigError, match="MC dropout needs active dropout"):
        mc(net).predict([torch.randn(4, *DIGITS_SHAPE, dtype=torch.float64)])


def test_zero_rates_are_no_dropout():
    with pytest.raises(ConfigError):
        check_stochastic(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0)), (3,))
    check_stochastic(build("mlp", p_dense=0.1), DIGITS_SHAPE)


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("samples", 0, "an integer >= 1"),
        ("samples", 2.5, "an integer >= 1"),
        ("memory_mb", 0, "a number > 0 (megabytes) or null (auto)"),
        ("memory_mb", float("inf"), "a number > 0 (megabytes) or null (auto)"),
        ("seed", -1, "an integer in [0, 2**63)"),
        ("every_n_epochs", -1, "an integer >= 0 (0 = only after training)"),
        ("every_n_epochs", True, "an integer >= 0 (0 = only after training)"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(key: str, value, allowed: str):
    with pytest.raises(ConfigError) as err:
        MCDropoutCallback(**{key: value})
    assert str(err.value) == f"callbacks.mc_dropout.{key} must be {allowed}, got {value!r}"


# --- decompositions against their formulas ----------------------------------------------------
def test_classification_decomposition_and_a_single_sample():
    net = build("mlp", p_input=0.2, p_dense=0.5)
    captured = capture_samples(net)
    x = torch.randn(40, *DIGITS_SHAPE, dtype=torch.float64)
    pred = mc(net, samples=30).predict([x])
    p_t = torch.cat(captured).reshape(30, 40, 10).softmax(-1)
    total, expected = entropy_loop(p_t.mean(0)), sum(entropy_loop(p) for p in p_t) / 30
    torch.testing.assert_close(pred.scores["entropy"], total, rtol=0, atol=1e-12)
    torch.testing.assert_close(pred.scores["expected_entropy"], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(pred.scores["mutual_info"], total - expected, rtol=0, atol=1e-12)
    assert bool((pred.scores["mutual_info"] >= 0).all()) and pred.logits is None
    torch.testing.assert_close(pred.scores["max_prob"], -p_t.mean(0).max(-1).values)
    assert set(pred.arrays) == {"entropy", "expected_entropy", "mutual_info"}

    single = mc(net, samples=1).predict([x])
    assert bool((single.scores["mutual_info"] == 0).all())
    torch.testing.assert_close(single.scores["entropy"], single.scores["expected_entropy"])


@pytest.mark.parametrize("heteroscedastic", [True, False])
def test_regression_decomposition_in_original_units(heteroscedastic: bool):
    torch.manual_seed(7)
    net = Dropout(p_dense=0.3).configure_model(
        instantiate(make_cfg(Path("unused")).model, input_shape=(4,), num_outputs=2).double()
    )
    head = OutputHead("regression", heteroscedastic, target_mean=3.0, target_std=2.5)
    head.noise_var = 0.7
    captured = capture_samples(net)
    x = torch.randn(25, 4, dtype=torch.float64)
    pred = mc(net, head, samples=12).predict([x])
    out = torch.cat(captured).reshape(12, 25, 2)
    mean, epistemic, aleatoric = (torch.zeros(25, dtype=torch.float64) for _ in range(3))
    for t in range(12):
        mean += (out[t, :, 0] * 2.5 + 3.0) / 12
        aleatoric += (out[t, :, 1].exp() * 2.5**2 if heteroscedastic else 0.7) / 12
    for t in range(12):
        epistemic += (out[t, :, 0] * 2.5 + 3.0 - mean) ** 2 / 12
    torch.testing.assert_close(pred.mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(pred.arrays["var_epistemic"], epistemic, rtol=0, atol=1e-12)
    torch.testing.assert_close(pred.arrays["var_aleatoric"], aleatoric, rtol=0, atol=1e-12)
    torch.testing.assert_close(pred.var, epistemic + aleatoric, rtol=0, atol=1e-12)
    assert torch.equal(pred.scores["variance"], pred.var)
    assert torch.equal(pred.scores["var_epistemic"], pred.arrays["var_epistemic"])
    single = mc(net, head, samples=1).predict([x])
    assert bool((single.arrays["var_epistemic"] == 0).all())


# --- the callback and the dropout regularizer's hook -----------------------------------------
def test_callbacks_group_composes_and_the_regularizer_selects_mc(tmp_path: Path):
    cfg = make_cfg(tmp_path, "+callbacks=mc_dropout", "callbacks.mc_dropout.samples=7")
    assert set(cfg.callbacks) == {"mc_dropout"}
    callback = instantiate(cfg.callbacks.mc_dropout)
    assert (callback.samples, callback.every_n_epochs, callback.memory_mb) == (7, 0, None)
    predictor = callback.predictor()
    assert (predictor.samples, predictor.seed, predictor.summary()) == (7, 0, {"mc/samples": 7})
    cfg = make_cfg(tmp_path, "regularizer=[dropout]")
    assert [type(c) for c in instantiate(cfg.regularizer.dropout).callbacks()] == [
        MCDropoutCallback
    ]
    assert instantiate(cfg.regularizer.dropout, mc=False).callbacks() == []
    zero = instantiate(cfg.regularizer.dropout, p_dense=0.0, p_conv=0.0)
    assert zero.callbacks() == []  # nothing to sample: a sweep's p = 0 point still runs
    with pytest.raises(ConfigError, match=r"^regularizer.dropout.mc must be true or false"):
        Dropout(mc="yes")


def test_samples_zero_is_refused_before_training(tmp_path: Path):
    cfg = make_cfg(tmp_path, "+callbacks=mc_dropout", "callbacks.mc_dropout.samples=0")
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert str(err.value) == "callbacks.mc_dropout.samples must be an integer >= 1, got 0"
    assert not (tmp_path / "results.json").exists()


def fit_parts(tmp_path: Path, *overrides: str):
    cfg = make_cfg(tmp_path, "+callbacks=mc_dropout", *overrides)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    torch.manual_seed(0)
    model = instantiate(cfg.model, input_shape=DIGITS_SHAPE, num_outputs=10)
    regs = [instantiate(node) for node in cfg.regularizer.values()]
    module = BenchModule(model, "classification", instantiate(cfg.optimizer), regularizers=regs)
    callback = instantiate(cfg.callbacks.mc_dropout)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=CSVLogger(tmp_path, name="csv", version=""),
        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    return datamodule, module, callback, trainer


def test_callback_logs_mc_validation_metrics_every_epoch(tmp_path: Path):
    datamodule, module, callback, trainer = fit_parts(
        tmp_path,
        "regularizer=[dropout]",
        "callbacks.mc_dropout.every_n_epochs=1",
        "callbacks.mc_dropout.samples=8",
        "callbacks.mc_dropout.seed=3",
    )
    trainer.fit(module, datamodule=datamodule)
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("mc/val/nll")]
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert rows[0]["mc/val/nll"] != rows[1]["mc/val/nll"]

    # The last epoch's values are an MCDropout run on the val split with the final weights.
    predictor = MCDropout(samples=8, seed=3)
    predictor.fit([module.model], CLASSES)
    pred, labels = predict_split(predictor, datamodule.eval_dataloader("val"))
    probs = pred.probs.numpy()
    nll = -np.mean(np.log(probs[np.arange(len(labels)), labels.numpy()]))
    conf, hit = probs.max(1), probs.argmax(1) == labels.numpy()
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    ece = sum(
        abs(hit[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
        for b in range(15)
        if (bins == b).any()
    )
    assert float(rows[1]["mc/val/nll"]) == pytest.approx(nll, rel=1e-6)
    assert float(rows[1]["mc/val/ece"]) == pytest.approx(ece, rel=1e-5, abs=1e-7)
    assert float(trainer.callback_metrics["mc/val/nll"]) == pytest.approx(nll, rel=1e-6)


def test_callback_refuses_a_model_without_dropout_before_training(tmp_path: Path):
    datamodule, module, callback, trainer = fit_parts(tmp_path)
    with pytest.raises(ConfigError, match=r"^MC dropout needs active dropout, but model=mlp"):
        trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 0


def test_regression_validation_metrics_use_the_training_mse(tmp_path: Path):
    cfg = make_cfg(tmp_path, "dataset=diabetes")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    torch.manual_seed(0)
    model = Dropout().configure_model(instantiate(cfg.model, input_shape=(10,), num_outputs=1))
    module = BenchModule(model, "regression", instantiate(cfg.optimizer))
    metrics = validation_metrics(MCDropout(samples=5), module, datamodule)

    mu, sd = datamodule.target_mean, datamodule.target_std
    x_train, y_train = datamodule.tensors["train"]
    with torch.no_grad():
        fit = copy.deepcopy(model).eval()(x_train)[:, 0].double() * sd + mu
    noise_var = ((fit - (y_train.double() * sd + mu)) ** 2).mean().item()
    head = OutputHead("regression", target_mean=mu, target_std=sd, noise_var=noise_var)
    pred, y = predict_split(mc(model, head, samples=5), datamodule.eval_dataloader("val"))
    y = y.double() * sd + mu
    var = pred.var.numpy()
    nll = np.mean(0.5 * (np.log(2 * np.pi * var) + (y.numpy() - pred.mean.numpy()) ** 2 / var))
    rmse = math.sqrt(np.mean((y.numpy() - pred.mean.numpy()) ** 2))
    # ll: the exact mixture of the T Gaussians N(μ_t, noise_var), Gal & Ghahramani's form
    mu_t = pred.mixture[0].numpy()
    assert mu_t.shape == (5, len(y)) and np.allclose(mu_t.mean(0), pred.mean.numpy())
    log_p = -0.5 * np.log(2 * np.pi * noise_var) - (y.numpy() - mu_t) ** 2 / (2 * noise_var)
    ll = np.mean(logsumexp(log_p, axis=0) - np.log(5))
    assert metrics == pytest.approx({"nll": nll, "ll": ll, "rmse": rmse}, rel=1e-10)
