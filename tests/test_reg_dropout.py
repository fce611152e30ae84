"""Dropout: inverted-dropout statistics, where the layers go in each model, and the full run."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from bench.errors import ConfigError
from bench.models.blocks import DropoutSlot, stochastic_prefix_length
from bench.regularizers.dropout import Dropout
from bench.train import run
from tests.conftest import make_cfg

DIGITS_SHAPE = (1, 8, 8)
# z-score bound for Monte Carlo checks; the draws are seeded, so this is deterministic, and a
# correct implementation fails a single comparison with probability ~7e-6.
Z = 4.5


def build(model: str, **rates: float) -> tuple[nn.Sequential, nn.Sequential]:
    """(plain model, copy configured by the dropout regularizer), same weights."""
    torch.manual_seed(0)
    cfg = make_cfg(Path("unused"), f"model={model}")
    plain = instantiate(cfg.model, input_shape=DIGITS_SHAPE, num_outputs=10)
    reg = Dropout(**rates)
    reg.setup(None, plain)
    return plain, reg.configure_model(copy.deepcopy(plain))


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


# --- the layer itself: E[h̃] = h, the drop fraction, channel-wise masks ----------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_inverted_dropout_is_unbiased(p: float):
    """Each unit is 0 or h/(1−p), and the Monte Carlo mean of 20,000 draws is h."""
    _, model = build("mlp", p_input=p, p_dense=p)
    layer = dropout_layers(model)[1]  # the first dense slot
    assert isinstance(layer, nn.Dropout) and layer.p == p
    layer.train()
    torch.manual_seed(1)
    h = torch.randn(64, dtype=torch.float64) + 0.5
    n = 20_000
    out = layer(h.expand(n, -1))
    kept = out != 0
    torch.testing.assert_close(out[kept], (h / (1 - p)).expand(n, -1)[kept], rtol=1e-12, atol=0)
    # h̃ = h·B/(1−p), B ~ Bernoulli(1−p): Var h̃ = h²·p/(1−p), so SE of the mean = |h|·√(p/((1−p)n))
    se = h.abs() * math.sqrt(p / ((1 - p) * n))
    z = ((out.mean(0) - h) / se).abs().max().item()
    assert z < Z, f"max |mean − h| is {z:.2f} standard errors"


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_fraction_is_p(p: float):
    _, model = build("mlp", p_dense=p)
    layer = dropout_layers(model)[0].train()
    torch.manual_seed(2)
    n = 200_000
    frac = (layer(torch.ones(n)) == 0).double().mean().item()
    se = math.sqrt(p * (1 - p) / n)  # binomial standard error
    assert abs(frac - p) < Z * se, f"dropped {frac:.4f}, p = {p}, SE = {se:.1e}"


def test_dropout2d_drops_whole_channels():
    p = 0.3
    _, model = build("cnn", p_conv=p)
    layer = next(m for m in dropout_layers(model) if isinstance(m, nn.Dropout2d)).train()
    torch.manual_seed(3)
    n, c = 1024, 32
    out = layer(torch.ones(n, c, 4, 4))
    zero_maps = (out == 0).all(dim=(2, 3))
    kept_maps = (out == 1 / (1 - p)).all(dim=(2, 3))
    assert bool((zero_maps | kept_maps).all()), "a feature map was partly dropped"
    frac = zero_maps.double().mean().item()
    se = math.sqrt(p * (1 - p) / (n * c))
    assert abs(frac - p) < Z * se, f"dropped {frac:.4f} of the maps, p = {p}"


# --- where the layers go ------------------------------------------------------------------
RATES = {"p_input": 0.2, "p_dense": 0.5, "p_conv": 0.1}
# (block index, layer type, rate, type of the module just before it in its block or None)
LAYOUT = {
    "mlp": [
        (0, nn.Dropout, 0.2, nn.Flatten),
        (1, nn.Dropout, 0.5, nn.ReLU),
        (2, nn.Dropout, 0.5, nn.ReLU),
    ],
    "cnn": [
        (0, nn.Dropout, 0.2, None),
        (1, nn.Dropout2d, 0.1, nn.MaxPool2d),
        (2, nn.Dropout2d, 0.1, nn.MaxPool2d),
        (3, nn.Dropout, 0.5, nn.ReLU),
    ],
    "resnet18": [(0, nn.Dropout, 0.2, None)]
    + [(i, nn.Dropout2d, 0.1, nn.Sequential) for i in (1, 2, 3, 4)]  # after layer1..layer4
    + [(5, nn.Dropout, 0.5, nn.Flatten)],  # on the pooled features
}


def layout(model: nn.Sequential) -> list[tuple]:
    found = []
    for i, block in enumerate(model):
        children = list(block.children()) if isinstance(block, nn.Sequential) else [block]
        for j, m in enumerate(children):
            if isinstance(m, nn.modules.dropout._DropoutNd):
                before = type(children[j - 1]) if j > 0 else None
                found.append((i, type(m), m.p, before))
    return found


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_layers_sit_in_the_documented_slots_and_never_after_the_head(name: str):
    plain, model = build(name, **RATES)
    assert layout(model) == LAYOUT[name]
    assert not any(isinstance(m, DropoutSlot) for m in model.modules())  # every slot was used
    assert isinstance(model[-1], nn.Linear)  # the head is the last block, bare
    # Behaviour, not only structure: in train mode the network's output is exactly the head's
    # output, so nothing masks the predictions.
    captured = {}
    model[-1].register_forward_hook(lambda mod, inp, out: captured.update(out=out))
    model.train()
    torch.manual_seed(4)
    out = model(torch.randn(16, *DIGITS_SHAPE))
    assert out is captured["out"]
    assert bool((out != 0).all())
    # MC dropout can run everything before the first dropout layer once.
    assert stochastic_prefix_length(model) == 0
    _, without_input = build(name, **{**RATES, "p_input": 0.0})
    assert stochastic_prefix_length(without_input) == 1


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_eval_mode_is_the_plain_network(name: str):
    plain, model = build(name, **RATES)
    x = torch.randn(32, *DIGITS_SHAPE, generator=torch.Generator().manual_seed(5))
    plain.eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
        model.train()
        plain.train()
        assert not torch.equal(model(x), plain(x))  # the same layers do act in training


def test_zero_rates_add_no_dropout_layer():
    plain, model = build("cnn", p_input=0.0, p_dense=0.0, p_conv=0.0)
    assert dropout_layers(model) == []
    assert sum(isinstance(m, DropoutSlot) for m in model.modules()) == 4  # input, 2 conv, dense
    model.train()
    plain.train()
    x = torch.randn(8, *DIGITS_SHAPE)
    assert torch.equal(model(x), plain(x))


# --- configuration errors ------------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value",
    [
        ("p_dense", "1.0"),
        ("p_input", "-0.1"),
        ("p_conv", "1.5"),
        ("p_dense", "half"),
        ("p_dense", "true"),
        ("p_input", "nan"),
    ],
)
def test_rate_outside_unit_interval_is_refused(cfg_factory, field: str, value: str):
    with pytest.raises(ConfigError) as err:
        run(cfg_factory("regularizer=[dropout]", f"regularizer.dropout.{field}={value}"))
    msg = str(err.value)
    assert msg.startswith(f"regularizer.dropout.{field} must be a number in [0, 1)")
    assert "\n" not in msg


def test_linear_model_is_refused(cfg_factory, tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        run(cfg_factory("regularizer=[dropout]", "model=linear"))
    msg = str(err.value)
    assert msg == "regularizer dropout does not apply to model=linear: it has no dropout positions"
    assert not (tmp_path / "run" / "results.json").exists()


# --- the real run ------------------------------------------------------------------------
def epoch_values(run_dir: Path, key: str) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_cnn_run_logs_the_realized_drop_rates(cfg_factory, tmp_path: Path):
    record = run(
        cfg_factory(
            "regularizer=[dropout]", "model=cnn", "logger=csv", "regularizer.dropout.p_conv=0.2"
        )
    )
    assert record["status"] == "completed" and record["regularizers"] == ["dropout"]
    assert record["config"]["regularizer"]["dropout"] == {
        "_target_": "bench.regularizers.dropout.Dropout",
        "p_input": 0.0,
        "p_dense": 0.5,
        "p_conv": 0.2,
        "mc": True,
    }
    dense = epoch_values(tmp_path / "run", "dropout/drop_rate/dense")
    conv = epoch_values(tmp_path / "run", "dropout/drop_rate/conv")
    assert len(dense) == len(conv) == 3  # one value per epoch
    assert "dropout/drop_rate/input" not in (tmp_path / "run" / "csv" / "metrics.csv").read_text()
    # One epoch counts > 10^4 masked units per kind (1293 images × 128 hidden units, × 32 maps),
    # so the binomial SE is < 0.005 and 0.02 is a > 4 SE bound.
    for value in dense:
        assert abs(value - 0.5) < 0.02
    for value in conv:
        assert abs(value - 0.2) < 0.02


def test_resnet18_run_completes(cfg_factory):
    record = run(
        cfg_factory(
            "regularizer=[dropout]",
            "model=resnet18",
            "trainer.max_epochs=1",
            "dataset.train_size=100",
            "regularizer.dropout.mc=false",  # 50 passes of a ResNet per input: not for CI
            "evaluation.shift.corruptions=[]",
        )
    )
    assert record["status"] == "completed" and record["model"] == "resnet18"
    assert record["epochs"] == 1 and math.isfinite(record["metrics"]["test/loss"])
