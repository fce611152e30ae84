"""Run and sweep directories named by what they compute (``bench/resume/identity.py``)."""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from bench.resume.identity import config_hash, run_id, sweep_name
from tests.conftest import CONF_DIR


def composed(*overrides: str) -> DictConfig:
    """The config as Hydra hands it to the resolvers: with its ``hydra`` node."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_a_run_id_is_readable_and_stable():
    cfg = composed("regularizer=[l2,dropout]", "seed=3")
    name = run_id(_root_=cfg)
    assert re.fullmatch(r"digits-mlp-l2\+dropout-s3-[0-9a-f]{8}", name)
    assert run_id(_root_=composed("seed=3", "regularizer=[l2,dropout]")) == name


@pytest.mark.parametrize(
    "other",
    [
        ["logger=none"],  # how it is observed
        ["threads=1", "trainer.enable_progress_bar=false"],
        ["checkpoint.keep=5", "optimized_metric=val/acc"],
        ["dataset=mnist", "dataset.data_dir=/elsewhere", "evaluation.ood.data_dir=/x"],  # files
    ],
)
def test_what_does_not_change_the_computation_keeps_the_id(other):
    base = [o for o in other if o.startswith("dataset=")]  # the same dataset, other paths
    assert config_hash(composed(*other)) == config_hash(composed(*base))


@pytest.mark.parametrize(
    "other",
    [["seed=1"], ["optimizer.lr=0.01"], ["regularizer=[l2]"], ["trainer.max_epochs=2"]],
)
def test_what_changes_the_computation_changes_the_id(other):
    assert config_hash(composed(*other)) != config_hash(composed())


def test_the_sweep_name_ignores_hydra_overrides_and_their_order():
    def named(*task: str) -> str:
        cfg = composed()
        cfg.hydra.overrides.task = list(task)
        return sweep_name(cfg)

    base = named("seed=0,1,2", "regularizer=[],[l2]")
    assert re.fullmatch(r"sweep-[0-9a-f]{8}", base)
    assert named("regularizer=[],[l2]", "seed=0,1,2") == base
    assert named("seed=0,1,2", "regularizer=[],[l2]", "hydra/launcher=slurm") == base
    assert named("seed=0,1,2", "regularizer=[],[l2]", "logger=csv") == base
    assert named("seed=0,1", "regularizer=[],[l2]") != base


def test_resume_false_starts_afresh_elsewhere():
    same = run_id(_root_=composed("seed=3"))
    fresh = run_id(_root_=composed("seed=3", "resume=false"))
    assert fresh.startswith(same + "-") and fresh != same
