"""The UCI reproduction's two speed-ups against their references, and their benchmark figures.

- ``keep_mask`` / ``FastDropout``: Bernoulli(keep) per member, kept units exactly 1/keep,
  seeded by torch's RNG, ``nn.Dropout``'s semantics (eval identity, unbiased in expectation).
- ``SweepComposer.compose`` == Hydra's ``load_sweep_config`` for every kind of override, with one
  template per config-group structure.
- ``scripts/benchmark.py --only masks,compose --quick`` runs, its equality checks hold, and the
  checks refuse a wrong mask or a wrong composer.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bench.models.masks import FastDropout, fast_dropout, keep_mask
from hydra_plugins.regbench_population.compose import SweepComposer
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))  # the perf package, as scripts/benchmark.py finds it
from perf.reproduction import check_composer, check_mask, loader_and_master  # noqa: E402

SCRIPT = REPO / "scripts" / "benchmark.py"
SIGMAS = 5.0
CPU = torch.empty(0)  # ``like`` for float32 masks on the CPU


def z_scores(mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-member |kept fraction − keep| in binomial standard deviations (inf if keep = 1 and
    anything was dropped)."""
    kept = (mask.reshape(len(keep), -1) != 0).double()
    gap = (kept.mean(dim=1) - keep).abs()
    sd = (keep * (1 - keep) / kept.shape[1]).sqrt()
    return torch.where(sd > 0, gap / sd, torch.where(gap == 0, 0.0, math.inf))


# -- keep_mask ---------------------------------------------------------------------------------


def test_per_member_keep_fractions_and_scale():
    torch.manual_seed(0)
    keep = torch.tensor([1.0, 0.995, 0.9, 0.5], dtype=torch.float64)
    mask = keep_mask((4, 500, 100), keep.view(-1, 1, 1), CPU)
    assert mask.dtype == torch.float32 and mask.shape == (4, 500, 100)
    assert bool((z_scores(mask, keep) < SIGMAS).all()), z_scores(mask, keep)
    for m, k in enumerate(keep.tolist()):
        values = mask[m][mask[m] != 0]
        # every kept unit is 1/keep rounded once to float32, as nn.Dropout scales
        assert torch.equal(values, torch.full_like(values, 1 / k))
    assert torch.equal(mask[0], torch.ones(500, 100))  # keep = 1: every unit kept


def test_keep_one_keeps_everything_and_dtype_follows_like():
    mask = keep_mask((3, 7), 1.0, torch.empty(0, dtype=torch.float64))
    assert mask.dtype == torch.float64 and torch.equal(mask, torch.ones(3, 7, dtype=torch.float64))


def test_adjacent_lanes_are_independent():
    """Two masks share each 64-bit word: neighbouring units must still be independent."""
    torch.manual_seed(1)
    kept = keep_mask((200_000,), 0.5, CPU) != 0
    both = (kept[0::2] & kept[1::2]).double().mean()  # the two halves of each word
    sd = math.sqrt(0.25 * 0.75 / 100_000)
    assert abs(float(both) - 0.25) < SIGMAS * sd


def test_masks_repeat_under_torch_manual_seed():
    torch.manual_seed(7)
    a = keep_mask((64, 50), 0.9, CPU)
    torch.manual_seed(7)
    b = keep_mask((64, 50), 0.9, CPU)
    c = keep_mask((64, 50), 0.9, CPU)  # the stream moved on: a new mask
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.5, 1.0])
def test_fast_dropout_is_nn_dropout_in_eval_and_in_expectation(p: float):
    torch.manual_seed(2)
    x = torch.randn(200, 50)
    fast, plain = FastDropout(p), nn.Dropout(p)
    assert torch.equal(fast.eval()(x), plain.eval()(x)) and torch.equal(fast(x), x)
    fast.train()
    if p in (0.0, 1.0):  # nothing random: nn.Dropout's exact output
        assert torch.equal(fast(x), plain.train()(x))
        return
    draws = 400
    mean = torch.stack([fast(x) for _ in range(draws)]).mean(dim=0)
    sd = math.sqrt(float((x**2).sum()) * p / (1 - p) / draws)  # of sum(mean − x)
    assert abs(float((mean - x).sum())) < SIGMAS * sd
    y = fast(x)
    dropped = y == 0
    assert torch.allclose(y[~dropped], x[~dropped] / (1 - p), rtol=1e-6, atol=0)
    assert float(z_scores(y.reshape(1, -1), torch.tensor([1 - p], dtype=torch.float64))) < SIGMAS


def test_fast_dropout_swaps_only_plain_dropout_and_restores():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Dropout2d(0.5))
    with pytest.raises(RuntimeError, match="inside"):
        with fast_dropout(net):
            assert type(net[1]) is FastDropout and type(net[2]) is nn.Dropout2d
            raise RuntimeError("inside")
    assert type(net[1]) is nn.Dropout


# -- SweepComposer vs Hydra --------------------------------------------------------------------

# (overrides, group structure the composer should cache it under, or None: the full path)
JOBS = [
    (["seed=3", "trainer.max_epochs=2"], ()),
    (["+foo.bar=3", "seed=1"], ()),
    (["++trainer.max_epochs=3", "++new_key=1"], ()),
    (["model=cnn", "seed=2"], ("model=cnn",)),
    (["seed=4", "model=cnn"], ("model=cnn",)),
    (["regularizer=[l2,dropout]", "regularizer.l2.strength=0.1"], ("regularizer=[l2,dropout]",)),
    (["+model@extra=mlp"], ("+model@extra=mlp",)),
    (["experiment=benchmark", "+grid=l2_1e-3", "seed=1"],
     ("experiment=benchmark", "+grid=l2_1e-3")),
    (["experiment=gal2016_uci", "dataset.name=yacht", "dataset.split=3", "protocol.p_index=1",
      "protocol.tau_index=2"], ("experiment=gal2016_uci",)),
    (["~evaluation.shift", "seed=1"], None),
    (["hydra.job.name=renamed", "seed=1"], None),
]  # fmt: skip


@pytest.fixture(scope="module")
def hydra_loader():
    return loader_and_master([])


def test_sweep_composer_equals_load_sweep_config(hydra_loader):
    loader, master = hydra_loader
    composer = SweepComposer(loader, master)
    full_path: list[list[str]] = []
    hydra_compose = loader.load_sweep_config

    def spy(master_config, overrides):  # what the composer hands to Hydra's own composition
        full_path.append(list(overrides))
        return hydra_compose(master_config, overrides)

    loader.load_sweep_config = spy  # type: ignore[method-assign]
    try:
        for overrides, groups in JOBS:
            full_path.clear()
            ours = composer.compose(overrides)
            expected = hydra_compose(master, list(overrides))
            assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(expected), overrides
            assert OmegaConf.is_struct(ours) == OmegaConf.is_struct(expected), overrides
            if groups is None:  # deletions and hydra.* keys: Hydra composes the whole job
                assert full_path == [overrides]
            else:  # at most the template, never the job's own values
                assert full_path in ([], [list(groups)])
    finally:
        del loader.load_sweep_config
    assert set(composer.templates) == {g for _, g in JOBS if g is not None}
    assert len(composer.templates) == 6  # the 9 cached jobs have 6 group structures


def test_a_composed_config_is_the_jobs_own(hydra_loader):
    """Changing one job's config (as a task does) leaves the template and the next job alone."""
    loader, master = hydra_loader
    composer = SweepComposer(loader, master)
    first = composer.compose(["seed=1"])
    first.trainer.max_epochs = 12345
    second = composer.compose(["seed=2"])
    expected = loader.load_sweep_config(master, ["seed=2"])
    assert OmegaConf.to_yaml(second) == OmegaConf.to_yaml(expected)


# -- the figures -------------------------------------------------------------------------------


def test_the_checks_refuse_a_wrong_mask_or_config(hydra_loader):
    torch.manual_seed(3)
    keep = torch.tensor([0.9, 0.5], dtype=torch.float64)
    mask = keep_mask((2, 100, 50), keep.view(-1, 1, 1), CPU)
    assert check_mask(mask, keep, "right") < SIGMAS
    with pytest.raises(RuntimeError, match="sd from keep"):
        check_mask(mask, torch.tensor([0.9, 0.9], dtype=torch.float64), "wrong rate")
    with pytest.raises(RuntimeError, match="1/keep"):
        check_mask(mask * 1.01, keep, "wrong scale")

    class ValuesLost(SweepComposer):  # composes the template and forgets the value overrides
        def compose(self, overrides):
            return super().compose([o for o in overrides if not o.startswith("seed=")])

    loader, master = hydra_loader
    with pytest.raises(RuntimeError, match="seed=5"):
        check_composer(ValuesLost(loader, master), loader, master, [["seed=5"]])


def test_the_figures_run_quick_with_their_checks(tmp_path, capsys):
    """``scripts/benchmark.py --quick --only masks,compose`` (in this process, ~5 s): every row a
    positive ratio, every equality check passed."""
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out, threads = tmp_path / "bench.json", torch.get_num_threads()
    try:
        argv = ["--quick", "--threads", "1", "--only", "masks,compose", "--json", str(out)]
        assert script.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    assert "| 12 compose |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["results"]
    assert [r["figure"] for r in rows] == ["11 masks"] * 3 + ["12 compose"] * 2
    assert all(r["ratio"] > 0 and r["ours_s"] > 0 for r in rows)
    masks, compose = rows[:3], rows[3:]
    assert all(z < SIGMAS for z in masks[0]["extra"]["max_kept_fraction_z"].values())
    assert masks[2]["extra"]["max_kept_fraction_z"] < SIGMAS
    assert masks[2]["extra"]["max_mean_z"] < SIGMAS
    assert all(r["extra"]["jobs_checked"] == r["extra"]["jobs"] > 0 for r in compose)
    assert compose[0]["extra"]["templates"] == 1  # every UCI job of a set: one template
