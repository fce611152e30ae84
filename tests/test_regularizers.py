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
