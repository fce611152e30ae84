"""Temperature scaling against references written here: a numpy NLL, a dense grid search and a
synthetic model whose true temperature is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.uncertainty.base import OutputHead
from bench.uncertainty.deterministic import Deterministic
from bench.uncertainty.temperature import TemperatureScaling

CLASSIFICATION = OutputHead(task="classification")
N_FEATURES, N_CLASSES = 4, 5


def linear_network(weight: torch.Tensor) -> nn.Module:
    """A fixed linear layer: its logits are exactly x @ weight.T, so they are known."""
    net = nn.Linear(weight.shape[1], weight.shape[0], bias=False).double()
    with torch.no_grad():
        net.weight.copy_(weight)
    return net


def synthetic(n: int, seed: int, scale: float = 1.0, random_labels: bool = False):
    """Inputs, labels and a network whose logits are ``scale`` times those of a calibrated model.

    The labels are drawn from softmax(x @ W.T) itself, so the model with ``scale = 1`` is
    calibrated by construction and the temperature that undoes ``scale`` is ``scale``.
    """
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(N_CLASSES, N_FEATURES, generator=g, dtype=torch.float64)
    x = torch.randn(n, N_FEATURES, generator=g, dtype=torch.float64)
    if random_labels:
        y = torch.randint(0, N_CLASSES, (n,), generator=g)
    else:
        y = torch.multinomial((x @ weight.T).softmax(-1), 1, generator=g).squeeze(1)
    return x, y, linear_network(scale * weight)


def batches(x: torch.Tensor, y: torch.Tensor, size: int = 128):
    """A one-pass generator of (x, y) batches, like a validation loader."""
    return ((x[i : i + size], y[i : i + size]) for i in range(0, len(x), size))


def numpy_nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def numpy_nll_over_grid(logits: np.ndarray, labels: np.ndarray, temps: np.ndarray) -> np.ndarray:
    """Mean NLL of softmax(logits / T) for every T in ``temps`` (stable log-sum-exp by hand)."""
    scaled = logits[None, :, :] / temps[:, None, None]
    top = scaled.max(axis=2, keepdims=True)
    log_norm = top[..., 0] + np.log(np.exp(scaled - top).sum(axis=2))
    picked = scaled[:, np.arange(len(labels)), labels]
    return (log_norm - picked).mean(axis=1)


def fitted(x: torch.Tensor, y: torch.Tensor, net: nn.Module) -> TemperatureScaling:
    ts = TemperatureScaling()
    ts.fit([net], CLASSIFICATION, batches(x, y))
    return ts


@pytest.mark.parametrize(
    "scale, random_labels",
    [(4.0, False), (0.5, False), (1.0, False), (1.0, True)],
    ids=["over-confident", "under-confident", "calibrated", "random-labels"],
)
def test_validation_nll_never_increases(scale: float, random_labels: bool):
    x, y, net = synthetic(600, seed=1, scale=scale, random_labels=random_labels)
    ts = fitted(x, y, net)
    before = Deterministic()
    before.fit([net], CLASSIFICATION)
    inputs = [x[i : i + 100] for i in range(0, len(x), 100)]
    nll_before = numpy_nll(before.predict(inputs).probs.numpy(), y.numpy())
    nll_after = numpy_nll(ts.predict(inputs).probs.numpy(), y.numpy())
    assert nll_after <= nll_before
    if scale != 1.0 or random_labels:  # a miscalibrated model must actually improve
        assert nll_after < nll_before - 1e-3


def test_over_confident_model_gets_its_temperature_back():
    # Logits 4x those of a calibrated model: the true temperature is 4. Tolerance |T - 4| < 0.4
    # (10 %): the fitted T varies with the sample; over 40 seeds at N = 3000 its standard
    # deviation was 0.09, so this is over 4 standard deviations.
    x, y, net = synthetic(3000, seed=0, scale=4.0)
    ts = fitted(x, y, net)
    assert ts.temperature > 1
    assert abs(ts.temperature - 4.0) < 0.4
    assert ts.summary() == {"ts/temperature": ts.temperature}


@pytest.mark.parametrize("scale", [3.0, 0.6])
def test_temperature_is_the_grid_minimizer_of_the_nll(scale: float):
    x, y, net = synthetic(500, seed=2, scale=scale)
    ts = fitted(x, y, net)
    with torch.no_grad():
        logits = net(x).numpy()
    # 4001 log-spaced temperatures in [0.1, 10]. The NLL is unimodal in T (convex in 1/T), so
    # the true minimizer lies within one grid step of the grid's best point.
    log_temps = np.linspace(np.log(0.1), np.log(10.0), 4001)
    step = log_temps[1] - log_temps[0]
    best = log_temps[np.argmin(numpy_nll_over_grid(logits, y.numpy(), np.exp(log_temps)))]
    assert abs(np.log(ts.temperature) - best) <= step


def test_scaling_changes_confidence_not_accuracy():
    x, y, net = synthetic(400, seed=3, scale=4.0)
    ts = fitted(x, y, net)
    x_test, _, _ = synthetic(300, seed=4)
    plain = Deterministic()
    plain.fit([net], CLASSIFICATION)
    scaled = ts.predict([x_test[:150], x_test[150:]])
    assert torch.equal(scaled.probs.argmax(1), plain.predict([x_test]).probs.argmax(1))
    # The probabilities are softmax(logits / T), computed here in numpy.
    with torch.no_grad():
        z = net(x_test).numpy() / ts.temperature
    expected = np.exp(z - z.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(scaled.probs.numpy(), expected, rtol=1e-12, atol=1e-15)
    # Softer than the over-confident network: the maximum probability drops on every sample.
    assert (scaled.probs.max(1).values < plain.predict([x_test]).probs.max(1).values).all()


@pytest.mark.parametrize("val", [None, [], [(torch.zeros(0, N_FEATURES), torch.zeros(0))]])
def test_no_validation_data_keeps_temperature_one(val):
    x, _, net = synthetic(50, seed=5, scale=4.0)
    ts = TemperatureScaling()
    ts.fit([net], CLASSIFICATION, val)
    assert ts.summary() == {"ts/temperature": 1.0}
    plain = Deterministic()
    plain.fit([net], CLASSIFICATION)
    assert torch.equal(ts.predict([x]).probs, plain.predict([x]).probs)


def test_perfectly_separated_validation_stays_finite():
    # Every validation sample classified correctly: the NLL falls forever as T -> 0; the
    # temperature stops at its lower bound instead of making test errors infinitely costly.
    x, _, net = synthetic(200, seed=6)
    with torch.no_grad():
        y = net(x).argmax(1)
    ts = fitted(x, y, net)
    assert ts.temperature == pytest.approx(0.01)
    probs = ts.predict([x]).probs.numpy()
    assert np.isfinite(numpy_nll(probs, y.numpy()))


def test_fits_inside_inference_mode():
    # Lightning runs test hooks under torch.inference_mode; fitting must still work there.
    x, y, net = synthetic(500, seed=7, scale=4.0)
    expected = fitted(x, y, net).temperature
    with torch.inference_mode():
        ts = fitted(x, y, net)
    assert ts.temperature == expected


def test_supports_classification_only():
    ts = TemperatureScaling()
    assert ts.supports(CLASSIFICATION)
    assert not ts.supports(OutputHead(task="regression"))
