"""The UCI datamodule against the published split files, read here independently with numpy."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from bench.data.uci import ALIASES, SETS, UCI
from bench.errors import ConfigError, DatasetNotFoundError
from tests.conftest import CONF_DIR, SHARED_UCI, needs_uci

UCI_DIR = SHARED_UCI
pytestmark = needs_uci


def read(name: str, file: str, dtype: type = float) -> np.ndarray:
    return np.loadtxt(UCI_DIR / name / file, dtype=dtype, ndmin=1)


def reference(name: str, split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, train indices, test indices)`` of a set, straight from its files."""
    data = np.loadtxt(UCI_DIR / name / "data.txt", ndmin=2)
    x = data[:, read(name, "index_features.txt", int)]
    y = data[:, int(read(name, "index_target.txt", int)[0])]
    train = read(name, f"index_train_{split}.txt", int)
    test = read(name, f"index_test_{split}.txt", int)
    return x, y, train, test


def loaded(**kwargs) -> UCI:
    dm = UCI(data_dir=str(UCI_DIR), **kwargs)
    dm.setup("fit")
    return dm


def standardized(x: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """The protocol's standardization: numpy mean and std (ddof 0) of the fit rows, std 0 -> 1."""
    std = x[fit_rows].std(axis=0)
    return (x - x[fit_rows].mean(axis=0)) / np.where(std == 0, 1.0, std)


def test_yacht_split_0_holds_the_published_rows():
    x, y, train, test = reference("yacht", 0)
    dm = UCI(name="yacht", split=0, validation=False, data_dir=str(UCI_DIR))
    # Known before loading: what validation and the population's memory estimate read.
    assert dm.input_shape == (x.shape[1],) and dm.pool_size == len(x) == 308
    assert dm.split_sizes() == {"train": len(train), "val": 0, "test": len(test)}
    dm.setup("fit")
    assert {k: tuple(v[0].shape) for k, v in dm.tensors.items()} == {
        "train": (len(train), 6), "val": (0, 6), "test": (len(test), 6),
    }  # fmt: skip
    np.testing.assert_array_equal(dm.split_indices["train"], train)  # file order kept
    np.testing.assert_array_equal(dm.split_indices["test"], test)
    z = standardized(x, train)
    np.testing.assert_allclose(dm.tensors["test"][0].numpy(), z[test], rtol=1e-5, atol=1e-5)
    y_test = (y[test] - y[train].mean()) / y[train].std()
    np.testing.assert_allclose(dm.tensors["test"][1].numpy(), y_test, rtol=1e-5, atol=1e-6)


def test_validation_is_the_last_fifth_of_the_training_indices_in_file_order():
    x, y, train, _ = reference("yacht", 3)
    dm = loaded(name="yacht", split=3, validation=True)
    n_fit = int(0.8 * len(train))  # as the published code cut it
    assert (n_fit, len(train) - n_fit) == (221, 56)
    np.testing.assert_array_equal(dm.split_indices["train"], train[:n_fit])
    np.testing.assert_array_equal(dm.split_indices["val"], train[n_fit:])
    z = standardized(x, train[:n_fit])  # statistics of the rows the network trains on
    np.testing.assert_allclose(dm.tensors["val"][0].numpy(), z[train[n_fit:]], atol=1e-5)
    assert dm.split_sizes() == {"train": n_fit, "val": 56, "test": 31}


@pytest.mark.parametrize("validation", [True, False])
def test_statistics_are_numpys_on_the_training_rows(validation):
    x, y, train, _ = reference("concrete", 7)
    dm = loaded(name="concrete", split=7, validation=validation)
    rows = train[: int(0.8 * len(train))] if validation else train
    np.testing.assert_allclose(dm.feature_mean, x[rows].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(dm.feature_std, x[rows].std(axis=0), rtol=1e-5)
    assert dm.target_mean == pytest.approx(y[rows].mean(), rel=1e-12)
    assert dm.target_std == pytest.approx(y[rows].std(), rel=1e-12)  # ddof 0


def test_constant_naval_features_keep_std_one_and_map_to_zero():
    x, _, train, _ = reference("naval-propulsion-plant", 0)
    # Both hold one value; numpy's float64 std of the second is 1.1e-16, not 0 (rounding of the
    # mean), so the reference code's `std == 0 -> 1` rule misses it and maps it to +1, not 0.
    constant = np.flatnonzero((x[train] == x[train][0]).all(axis=0))
    assert constant.tolist() == [8, 11]
    dm = loaded(name="naval", split=0, validation=False)
    assert np.all(dm.feature_std[constant] == 1)
    assert torch.all(dm.tensors["train"][0][:, constant] == 0)
    assert torch.isfinite(dm.tensors["test"][0]).all()


def test_protocol_files_and_aliases():
    protein = UCI(name="protein", split=4, data_dir=str(UCI_DIR))
    assert (protein.name, protein.n_splits) == ("uci-protein-tertiary-structure", 5)
    folder = "protein-tertiary-structure"
    assert protein.n_hidden == int(read(folder, "n_hidden.txt")[0]) == 100
    assert protein.n_epochs == int(read(folder, "n_epochs.txt")[0])
    assert protein.dropout_rates == read(folder, "dropout_rates.txt").tolist()
    assert protein.tau_values == read(folder, "tau_values.txt").tolist()
    assert all(isinstance(v, float) for v in protein.dropout_rates + protein.tau_values)
    for alias, set_name in ALIASES.items():
        assert set_name in SETS
        assert UCI(name=alias, data_dir=str(UCI_DIR)).name == f"uci-{set_name}"
        assert UCI.record_name({"name": alias}) == f"uci-{set_name}"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"name": "yachts"}, r"dataset\.name must be one of bostonHousing, .*yacht \(or an alias"),
        ({"split": 20}, r"dataset\.split must be an integer in \[0, 19\] \(yacht has 20 "),
        ({"name": "protein", "split": 5}, r"dataset\.split .*\[0, 4\] .*has 5 published"),
        ({"split": -1}, r"dataset\.split must be"),
        ({"split": "1"}, r"dataset\.split must be"),
        ({"validation": "yes"}, r"dataset\.validation must be true or false"),
        ({"batch_size": 0}, r"dataset\.batch_size must be"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_key(kwargs, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        UCI(data_dir=str(UCI_DIR), **kwargs)
    assert "\n" not in str(err.value)


def test_missing_files_name_the_path_and_how_to_point_at_a_copy(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dataset.data_dir") as err:
        UCI(name="yacht", data_dir=str(tmp_path))
    assert str(tmp_path / "yacht") in str(err.value) and "BENCH_UCI_DIR" in str(err.value)
    shutil.copytree(UCI_DIR / "yacht", tmp_path / "yacht")
    os.chmod(tmp_path / "yacht", 0o755)  # the shared copy is read-only
    (tmp_path / "yacht" / "index_test_2.txt").unlink()
    UCI(name="yacht", split=1, data_dir=str(tmp_path))  # other splits are complete
    with pytest.raises(DatasetNotFoundError, match="index_test_2.txt not found"):
        UCI(name="yacht", split=2, data_dir=str(tmp_path))


def test_data_dir_defaults_to_the_environment(monkeypatch):
    def composed_dir() -> str:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=["dataset=uci"]).dataset.data_dir

    monkeypatch.delenv("BENCH_UCI_DIR", raising=False)
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    assert composed_dir() == "./data/uci"
    monkeypatch.setenv("BENCH_DATA_DIR", "/somewhere")
    assert composed_dir() == "/somewhere/uci"
    monkeypatch.setenv("BENCH_UCI_DIR", str(UCI_DIR))
    assert composed_dir() == str(UCI_DIR)
    assert UCI(name="yacht").folder == UCI_DIR.resolve() / "yacht"  # Python's default: the same


def test_a_run_records_the_set_and_reports_original_units(cfg_factory):
    from bench.train import run

    cfg = cfg_factory(
        "dataset=uci", f"dataset.data_dir={UCI_DIR}", "dataset.name=yacht",
        "trainer.max_epochs=2", "logger=none", "model=mlp", "model.widths=[50]",
    )  # fmt: skip
    record = run(cfg)
    assert record["dataset"] == "uci-yacht"
    _, y, _, test = reference("yacht", 0)
    rmse = record["metrics"]["test/rmse"]
    # Two epochs barely move off the mean: about the targets' std (15), which in standardized
    # units would read about 1.
    assert math.isfinite(rmse) and 0.3 * y[test].std() < rmse < 3 * y[test].std()


def test_a_bad_name_through_the_cli_config_is_one_line(cfg_factory):
    from bench.train import run

    with pytest.raises(ConfigError, match=r"^dataset\.name must be one of"):
        run(cfg_factory("dataset=uci", f"dataset.data_dir={UCI_DIR}", "dataset.name=nope"))
