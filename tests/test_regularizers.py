"""Every regularizer: one file + one yaml, runs from the config, composes with the others."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from bench.errors import ConfigError
from bench.regularizers.base import Regularizer
from bench.train import run
from tests.conftest import CONF_DIR

NAMES = sorted(p.stem for p in (CONF_DIR / "regularizer").glob("*.yaml"))


def test_the_field_is_covered():
    assert set(NAMES) >= {
        "l2",
        "weight_decay",
        "l1",
        "elastic_net",
        "max_norm",
        "early_stopping",
        "dropout",
        "augment",
        "mixup",
        "cutmix",
        "input_noise",
        "label_smoothing",
    }


@pytest.mark.parametrize("name", NAMES)
def test_one_module_and_one_yaml_by_the_same_name(name):
    node = OmegaConf.load(CONF_DIR / "regularizer" / f"{name}.yaml")
    assert list(node) == [name], "each yaml nests its options under its own name"
    target = node[name]._target_
    assert target.startswith(f"bench.regularizers.{name}.")
    cls = get_class(target)
    assert issubclass(cls, Regularizer) and cls.name == name


@pytest.mark.parametrize("name", NAMES)
def test_each_regularizer_runs_on_the_default_job(tmp_path, cfg_factory, name):
    record = run(cfg_factory(f"regularizer=[{name}]", "trainer.max_epochs=2", run_dir=tmp_path))
    assert record["status"] == "completed"
    assert record["regularizers"] == [name]
    assert name in record["config"]["regularizer"]
    assert 0.5 < record["metrics"]["test/acc"] <= 1.0


def test_three_at_once_with_an_override(tmp_path, cfg_factory):
    record = run(
        cfg_factory(
            "regularizer=[l2,dropout,augment]",
            "regularizer.l2.strength=1e-4",
            "model=cnn",
            "trainer.max_epochs=2",
            "logger=csv",
            run_dir=tmp_path,
        )
    )
    assert record["regularizers"] == ["l2", "dropout", "augment"]
    assert record["config"]["regularizer"]["l2"]["strength"] == 1e-4
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "penalty/l2" in header


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["dataset=diabetes", "regularizer=[augment]"], ["augment", "diabetes"]),
        (["dataset=diabetes", "regularizer=[cutmix]"], ["cutmix", "diabetes"]),
        (["dataset=diabetes", "regularizer=[mixup]"], ["mixup", "diabetes"]),
        (["dataset=diabetes", "regularizer=[label_smoothing]"], ["label_smoothing", "diabetes"]),
        (["model=linear", "regularizer=[dropout]"], ["dropout", "linear"]),
    ],
)
def test_combinations_that_do_not_apply_are_refused_by_name(
    tmp_path, cfg_factory, monkeypatch, overrides, words
):
    from bench.data.base import ArrayDataModule

    def no_loading(self, stage=None):
        raise AssertionError("data was loaded before the combination was checked")

    monkeypatch.setattr(ArrayDataModule, "setup", no_loading)
    with pytest.raises(ConfigError) as info:
        run(cfg_factory(*overrides, run_dir=tmp_path))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


class CountingRegularizer(Regularizer):
    """Counts the hooks BenchModule calls, to check where the contract says they run."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = {"before_step": 0, "after_step": 0, "transform_batch": 0}

    def transform_batch(self, x, y):
        self.calls["transform_batch"] += 1
        return x, y

    def before_step(self, model, optimizer) -> None:
        self.calls["before_step"] += 1

    def after_step(self, model, optimizer) -> None:
        self.calls["after_step"] += 1


def test_step_hooks_run_once_per_real_optimizer_step_under_accumulation(tmp_path, monkeypatch):
    import bench.build
    import bench.train

    counter = CountingRegularizer()
    monkeypatch.setattr(bench.build, "build_regularizers", lambda cfg: [counter])
    captured = {}
    real_assemble = bench.train.assemble

    def assemble(cfg):
        captured["parts"] = real_assemble(cfg)
        return captured["parts"]

    monkeypatch.setattr(bench.train, "assemble", assemble)
    from tests.conftest import make_cfg

    # digits: 1,293 training samples → 11 batches of 128 per epoch, 2 epochs = 22 batches.
    run(make_cfg(tmp_path, "trainer.max_epochs=2", "trainer.accumulate_grad_batches=3"))
    trainer = captured["parts"][2]
    assert counter.calls["transform_batch"] == 22
    # Lightning steps every 3 batches and at the end of each epoch: 4 steps per epoch.
    assert trainer.global_step == 8
    assert counter.calls["before_step"] == counter.calls["after_step"] == 8


def test_a_step_skipped_by_the_amp_scaler_gets_no_proximal_step():
    """GradScaler skips optimizer.step() on inf gradients; the L1 threshold must skip too."""
    import functools

    import torch

    from bench.models.linear import Linear
    from bench.module import BenchModule
    from bench.regularizers.l1 import L1

    torch.manual_seed(0)
    module = BenchModule(
        Linear((4,), 1),
        "regression",
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        regularizers=[L1(strength=1.0)],
    )
    opt = module.configure_optimizers()
    scaler = torch.amp.GradScaler("cpu")
    x, y = torch.randn(8, 4), torch.randn(8)
    weight = module.model[-1].weight

    def scaled_step(poison: bool) -> None:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(module(x).squeeze(-1), y)
        scaler.scale(loss * (float("inf") if poison else 1.0)).backward()
        scaler.step(opt)
        scaler.update()

    before = weight.detach().clone()
    scaled_step(poison=True)
    assert torch.equal(weight, before)  # neither the update nor the threshold ran
    # The next, finite step is one SGD step followed by one soft-threshold at λ·η = 0.1.
    w = before.clone().requires_grad_(True)
    bias = module.model[-1].bias.detach()
    torch.nn.functional.mse_loss(x @ w.T.squeeze(-1) + bias, y).backward()
    stepped = before - 0.1 * w.grad
    expected = stepped.sign() * (stepped.abs() - 0.1).clamp_min(0)
    scaled_step(poison=False)
    torch.testing.assert_close(weight.detach(), expected)
