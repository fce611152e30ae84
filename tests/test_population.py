"""Population training (bench/population/) against the same jobs run alone.

Equivalence: in float64 on deterministic configurations every member's final weights equal its
single run's to 1e-8 after 100 steps; with dropout the two are equal in distribution (different
mask streams), checked over 12 seeds. Independence: a member whose loss is non-finite is recorded
``diverged`` and frozen while the others train on, each still equal to its single run.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch

from bench.population.train import train_group
from bench.resume.checkpoints import resumable
from bench.train import run
from tests.conftest import REPO, make_cfg

# 320 samples in batches of 32: 10 steps an epoch, 100 steps in 10 epochs.
EXACT = [
    "dataset.train_size=320",
    "dataset.batch_size=32",
    "trainer.max_epochs=10",
    "trainer.precision=64-true",
    "evaluation.shift.corruptions=[]",
    "evaluation.ood.partners=[]",
    "evaluation.plots=false",
    "evaluation.predictors.temperature=null",
]

# (regularizer, its hyperparameter, one value per member): members differ in it and in seed.
CASES = {
    "l2": ("strength", [1e-4, 1e-2, 3e-2]),
    "l1": ("strength", [1e-4, 1e-3, 1e-2]),
    "elastic_net": ("l1_strength", [1e-4, 1e-3, 3e-3]),
    "weight_decay": ("strength", [0.1, 1.0, 10.0]),
    "max_norm": ("max_norm", [0.5, 1.0, 2.0]),
    "early_stopping": ("patience", [1, 2, 3]),
}


def population(tmp: Path, shared: list[str], members: list[list[str]]) -> list[dict]:
    """Train ``members`` (each its own overrides) as one population; their records."""
    cfgs = [make_cfg(tmp / f"m{k}", *shared, *own) for k, own in enumerate(members)]
    tasks = train_group(cfgs)
    for task, cfg in zip(tasks, cfgs, strict=True):
        task(cfg)
    return [json.loads((tmp / f"m{k}" / "results.json").read_text()) for k in range(len(cfgs))]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def assert_same_weights(a: Path, b: Path, atol: float = 1e-8) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wa[name].dtype == torch.float64
        diff = (wa[name] - wb[name]).abs().max().item()
        assert diff <= atol, f"{name}: population and single run differ by {diff:g}"


@pytest.mark.parametrize("reg", list(CASES))
def test_every_member_equals_its_single_run_in_float64(tmp_path, reg):
    field, values = CASES[reg]
    shared = [*EXACT, f"regularizer=[{reg}]"]
    if reg == "early_stopping":  # a large step makes validation noisy: members stop apart
        shared += ["optimizer.lr=0.03"]
    members = [[f"seed={k}", f"regularizer.{reg}.{field}={v}"] for k, v in enumerate(values)]
    records = population(tmp_path / "pop", shared, members)
    assert [r["population"]["member"] for r in records] == [0, 1, 2]
    assert {r["population"]["size"] for r in records} == {3}

    # Early stopping: the first member (patience 1) stops soonest; the others: the last one.
    for k in (0,) if reg == "early_stopping" else (2,):
        single = run(make_cfg(tmp_path / f"single{k}", *shared, *members[k]))
        assert_same_weights(tmp_path / "pop" / f"m{k}", tmp_path / f"single{k}")
        for key in ("val/loss", "test/loss", "test/acc", "train/loss"):
            assert records[k]["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-8)
        for key in ("status", "epochs", "best_epoch", "stopped_epoch", "sparsity"):
            assert records[k].get(key) == single.get(key), key
        steps = torch.load(tmp_path / f"single{k}" / "checkpoints" / "last.ckpt")["global_step"]
        assert steps >= 100 or single.get("stopped_epoch") is not None
    if reg == "early_stopping":
        stops = [r["stopped_epoch"] for r in records]
        assert any(s is not None for s in stops), stops  # the rule did act on some member
        assert len(set(stops)) > 1, stops  # and members stopped independently
    if reg in ("l1", "elastic_net"):  # the proximal step gave exact zeros, more with more λ
        assert records[0]["sparsity"] < records[2]["sparsity"]


def test_members_on_their_own_splits_equal_their_single_runs(tmp_path):
    shared = [*EXACT, "trainer.max_epochs=3", "regularizer=[l2]"]
    members = [["seed=3", "dataset.split_seed=0"], ["seed=3", "dataset.split_seed=5"]]
    records = population(tmp_path / "pop", shared, members)
    assert records[0]["metrics"]["test/loss"] != records[1]["metrics"]["test/loss"]
    for k in (0, 1):
        single = run(make_cfg(tmp_path / f"single{k}", *shared, *members[k]))
        assert_same_weights(tmp_path / "pop" / f"m{k}", tmp_path / f"single{k}")
        assert records[k]["metrics"]["test/loss"] == pytest.approx(single["metrics"]["test/loss"])


def test_a_diverging_member_is_frozen_and_the_others_train_on(tmp_path):
    """λ = 1e307 makes member 1's penalty overflow float64 at the first step."""
    shared = [*EXACT, "trainer.max_epochs=3", "regularizer=[l2]"]
    members = [[f"seed={k}", f"regularizer.l2.strength={s}"] for k, s in enumerate([1e-3, 1e307])]
    members.append(["seed=2", "regularizer.l2.strength=1e-2"])
    records = population(tmp_path / "pop", shared, members)
    assert [r["status"] for r in records] == ["completed", "diverged", "completed"]
    alone = run(make_cfg(tmp_path / "single1", *shared, *members[1]))
    assert alone["status"] == "diverged"
    assert records[1]["diverged_at"] == alone["diverged_at"]
    assert_same_weights(tmp_path / "pop" / "m1", tmp_path / "single1")  # the initial weights
    for k in (2,):
        run(make_cfg(tmp_path / f"single{k}", *shared, *members[k]))
        assert_same_weights(tmp_path / "pop" / f"m{k}", tmp_path / f"single{k}")


@pytest.mark.slow
def test_dropout_population_matches_single_runs_in_distribution(tmp_path):
    """Masks come from one stream for the whole population, so runs are not equal one by one;
    over 12 seeds the mean test loss of population members and of single runs agree within
    3 standard errors of their difference (Welch), and no member equals its single run."""
    shared = [
        "dataset.train_size=300",
        "trainer.max_epochs=8",
        "regularizer=[dropout]",
        "regularizer.dropout.p_dense=0.5",
        "regularizer.dropout.mc=false",
        "evaluation.shift.corruptions=[]",
        "evaluation.ood.partners=[]",
        "evaluation.plots=false",
    ]
    seeds = list(range(12))
    pop = population(tmp_path / "pop", shared, [[f"seed={s}"] for s in seeds])
    single = [run(make_cfg(tmp_path / f"s{s}", *shared, f"seed={s}")) for s in seeds]
    a = torch.tensor([r["metrics"]["test/loss"] for r in pop], dtype=torch.float64)
    b = torch.tensor([r["metrics"]["test/loss"] for r in single], dtype=torch.float64)
    se = math.sqrt(a.var().item() / len(a) + b.var().item() / len(b))
    assert abs(a.mean().item() - b.mean().item()) <= 3 * se, (a.mean(), b.mean(), se)
    assert not torch.equal(a, b)


def test_a_population_stopped_by_sigterm_resumes_to_the_same_results(tmp_path):
    # float32: Lightning restores a 64-true run's optimizer state through float32 (a resumed
    # float64 run lands within 1e-8, not bit for bit; the float32 resume is exact).
    shared = [*EXACT, "trainer.max_epochs=4", "regularizer=[l2]", "trainer.precision=32-true"]
    members = [[f"seed={k}", f"regularizer.l2.strength={s}"] for k, s in enumerate([1e-4, 1e-2])]
    expected = population(tmp_path / "reference", shared, members)
    # checkpoint.min_interval_s null: a population saves at most every 30 s, and at the end.
    (group,) = (tmp_path / "reference" / ".population").iterdir()
    assert [p.name for p in resumable(group / "checkpoints")] == ["e0004-s00000040-final.ckpt"]

    signal_at = [
        "+callbacks.signal._target_=tests.faults.SignalAt",
        "+callbacks.signal.epoch=2",
        "+callbacks.signal.batch=3",
    ]
    cfgs = [
        make_cfg(tmp_path / f"m{k}", *shared, *signal_at, *own) for k, own in enumerate(members)
    ]
    with pytest.raises(SystemExit) as stopped:
        train_group(cfgs)
    assert stopped.value.code == 128 + signal.SIGTERM
    for k in range(2):
        record = json.loads((tmp_path / f"m{k}" / "results.json").read_text())
        assert record["status"] == "interrupted" and record["interrupted"]["epoch"] == 3
    checkpoints = list((tmp_path / ".population").glob("*/checkpoints/*.ckpt"))
    assert checkpoints, "one checkpoint for the group"

    resumed = population(tmp_path, shared, members)  # no signal this time
    for k in range(2):
        assert resumed[k]["status"] == "completed"
        assert resumed[k]["metrics"] == expected[k]["metrics"]
    again = train_group(
        [make_cfg(tmp_path / f"m{k}", *shared, *own) for k, own in enumerate(members)]
    )
    mtimes = [(tmp_path / f"m{k}" / "results.json").stat().st_mtime_ns for k in range(2)]
    for task, cfg in zip(again, cfgs, strict=True):  # completed members are skipped
        task(cfg)
    assert mtimes == [(tmp_path / f"m{k}" / "results.json").stat().st_mtime_ns for k in range(2)]


def test_jobs_group_when_they_differ_only_in_seed_strengths_and_split(tmp_path):
    from bench.population.batcher import group_key, member_memory_mb

    def key(*overrides: str):
        return group_key(make_cfg(tmp_path, "regularizer=[l2,dropout]", *overrides))

    base, why = key()
    assert base is not None and why == "digits/mlp/l2+dropout"
    for same in (["seed=7"], ["regularizer.l2.strength=0.3"], ["dataset.split_seed=4"],
                 ["regularizer.dropout.p_dense=0.1", "seed=2"]):  # fmt: skip
        assert key(*same)[0] == base, same
    for other in (["optimizer.lr=0.1"], ["model.widths=[32]"], ["trainer.max_epochs=7"],
                  ["dataset.batch_size=16"], ["optimizer=sgd"]):  # fmt: skip
        assert key(*other)[0] not in (None, base), other
    alone = {
        "model=resnet18": "model ResNet18 has no population form (batch norm)",
        "ensemble.members=3": "ensemble.members > 1 (members of one run train one after another)",
        "trainer.gradient_clip_val=1.0": (
            "trainer.gradient_clip_val (a global norm would mix the members)"
        ),
    }
    for override, reason in alone.items():
        assert group_key(make_cfg(tmp_path, override)) == (None, reason)
    # Memory grows with the width: 6 copies of the parameters plus a batch's activations.
    small = member_memory_mb(make_cfg(tmp_path, "model.widths=[64]"))
    large = member_memory_mb(make_cfg(tmp_path, "model.widths=[1024,1024]"))
    params = 64 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    assert large >= 6 * params * 4 / 2**20 > small > 0


def test_the_population_launcher_leaves_what_the_basic_launcher_leaves(tmp_path):
    """The user's command, with and without ``hydra/launcher=population``: the same job
    directories, files and metrics (float32: to 1e-5), plus the ``population`` field."""
    from tests.conftest import run_cli, sweep_records

    sweep = ["--multirun", "regularizer=[l2]", "regularizer.l2.strength=1e-4,1e-2", "seed=0",
             "dataset.train_size=200", "trainer.max_epochs=2", "logger=csv"]  # fmt: skip
    (tmp_path / "basic").mkdir()
    (tmp_path / "pop").mkdir()
    basic = run_cli(*sweep, cwd=tmp_path / "basic")
    assert basic.returncode == 0, basic.stderr[-2000:]
    pop = run_cli(*sweep, "hydra/launcher=population", cwd=tmp_path / "pop")
    assert pop.returncode == 0, pop.stderr[-2000:]
    assert "Launching 2 jobs locally: 1 population, 0 one at a time" in pop.stdout + pop.stderr
    a, b = sweep_records(tmp_path / "basic"), sweep_records(tmp_path / "pop")
    assert [p.parent.name for p in a] == [p.parent.name for p in b]  # the same directories
    for ra, rb in zip(a, b, strict=True):
        files_a = sorted(p.name for p in ra.parent.iterdir())
        assert files_a == sorted(p.name for p in rb.parent.iterdir())
        sa, sb = json.loads(ra.read_text()), json.loads(rb.read_text())
        assert sb["population"]["size"] == 2 and "population" not in sa
        assert sa.keys() | {"population"} == sb.keys()
        for key, value in sa["metrics"].items():
            assert sb["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        head_a = (ra.parent / "csv" / "metrics.csv").read_text().splitlines()[0]
        assert head_a == (rb.parent / "csv" / "metrics.csv").read_text().splitlines()[0]
    board = tmp_path / "pop" / "out" / "multiruns"
    assert list(board.glob("*/leaderboard_gap.md"))  # Hydra's multirun callbacks still ran


def test_batch_transforms_without_a_batched_form_run_member_by_member():
    """mixup (and cutmix, augment) act on each member's slice with that member's own object:
    the same draws, in the same order, as calling the members' transforms one after another."""
    from bench.population.stacking import MemberLoop, stack_regularizers
    from bench.regularizers.label_smoothing import LabelSmoothing
    from bench.regularizers.mixup import MixUp

    members = [[MixUp(alpha=a), LabelSmoothing(epsilon=e)] for a, e in [(0.05, 0.0), (2.0, 0.2)]]
    for regs in members:
        for reg in regs:
            reg.num_classes = 10
    stacked = stack_regularizers(members)
    assert isinstance(stacked[0], MemberLoop)
    assert torch.equal(stacked[1].epsilon, torch.tensor([0.0, 0.2], dtype=torch.float64))
    x = torch.randn(2, 16, 64)
    y = torch.randint(0, 10, (2, 16))
    torch.manual_seed(5)
    px, py = x, y
    for reg in stacked:
        px, py = reg.transform_batch(px, py)
    torch.manual_seed(5)
    for k, regs in enumerate(members):
        mixed, targets = regs[0].transform_batch(x[k], y[k])
        assert torch.equal(px[k], mixed)
        eps = regs[1].epsilon
        assert torch.allclose(py[k], (1 - eps) * targets + eps / 10)
    # Each member's own object saw its own draws (what its log_values report).
    assert members[0][0].last_weight is not None and members[1][0].last_weight is not None


def test_member_dropout_uses_each_members_rate_and_scales_kept_units():
    from bench.population.stack import MemberDropout

    torch.manual_seed(0)
    rates = [0.1, 0.5, 0.9]
    layer = MemberDropout(rates, maps=False)
    out = layer(torch.ones(3, 4000, 50))
    for k, p in enumerate(rates):
        dropped = (out[k] == 0).double().mean().item()
        assert abs(dropped - p) < 4 * math.sqrt(p * (1 - p) / out[k].numel())  # 4 sigma
        assert torch.allclose(out[k][out[k] != 0], torch.tensor(1 / (1 - p)))
    maps = MemberDropout([0.2, 0.6], maps=True)(torch.ones(2, 400, 8, 3, 3))
    assert torch.equal(maps, maps[..., :1, :1].expand_as(maps))  # whole feature maps
    assert abs((maps[1, :, :, 0, 0] == 0).double().mean().item() - 0.6) < 0.05
    layer.eval()
    x = torch.randn(3, 5, 50)
    assert torch.equal(layer(x), x)  # identity in evaluation


def test_members_eval_passes_come_from_one_stacked_pass_each():
    """SharedOutputs answers each member's eval-mode forward from one pass of the stack per
    distinct input (an equal copy of the input hits the same entry); each answer is the member's
    own network output. In training mode (MC dropout sampling) a member runs its own network."""
    from bench.models.mlp import MLP
    from bench.population.evaluation import SharedOutputs
    from bench.population.stack import stack_networks

    torch.manual_seed(0)
    nets = [MLP((8,), 3, widths=[16]) for _ in range(4)]
    for net in nets:
        net.eval()
    shared = SharedOutputs(stack_networks(nets))
    x = torch.randn(5, 8)
    alone = [net(x) for net in nets]
    for k, net in enumerate(nets):  # scored one after another, as the finishers do
        shared.attach(k, net)
        assert torch.allclose(net(x.clone()), alone[k], atol=1e-6)
        assert torch.allclose(net(x + 0), alone[k], atol=1e-6)
        if k == 0:
            net.train()
            assert torch.equal(net(x), type(net).forward(net, x))  # MC sampling: its own pass
            net.eval()
        shared.detach(k, net)
        assert "forward" not in vars(net)
        assert bool(shared.cache) == (k < len(nets) - 1)  # kept until the last member
    assert shared.passes == 1


def test_members_with_and_without_dropout_at_a_slot_stack_into_per_member_rates():
    """p_dense = 0 leaves a member's slot an identity; stacked with members that have dropout
    there, it becomes rate 0 of a MemberDropout — whichever member comes first."""
    from bench.models.mlp import MLP
    from bench.population.stack import MemberDropout, stack_networks
    from bench.regularizers.dropout import Dropout

    torch.manual_seed(0)
    nets = []
    for p in (0.0, 0.5):
        net = MLP((8,), 3, widths=[64])
        reg = Dropout(p_input=0.0, p_dense=p)
        nets.append(reg.configure_model(net))
    for order in (nets, nets[::-1]):
        stacked = stack_networks(order)
        layers = [m for m in stacked.modules() if isinstance(m, MemberDropout)]
        assert len(layers) == 1
        expected = [0.0, 0.5] if order is nets else [0.5, 0.0]
        assert layers[0].p.tolist() == expected
    stacked = stack_networks(nets).train()
    x = torch.randn(2, 200, 8)
    out = stacked(x)
    assert torch.allclose(out[0], nets[0].eval()(x[0]), atol=1e-6)  # no dropout for member 0
    assert not torch.allclose(out[1], nets[1].eval()(x[1]), atol=1e-3)  # dropout for member 1


def test_mc_dropout_is_not_asked_of_an_mlp_whose_used_rates_are_zero(tmp_path):
    """p_conv's default (0.1) does not count for a model without conv slots."""
    record = run(
        make_cfg(
            tmp_path,
            "regularizer=[dropout]",
            "regularizer.dropout.p_dense=0",
            "trainer.max_epochs=1",
            *EXACT[-4:],
        )  # fmt: skip
    )
    assert record["status"] == "completed"
    assert not any(key.startswith("mc/") for key in record["metrics"])


@pytest.mark.parametrize("model", ["linear", "cnn"])
def test_linear_and_cnn_members_equal_their_single_runs(tmp_path, model):
    """Batched linears and grouped convolutions (with pooling per sample) in float64."""
    shared = [*EXACT, "trainer.max_epochs=2", f"model={model}", "regularizer=[l2]"]
    if model == "cnn":
        shared += ["model.channels=[4,8]", "model.hidden=16"]
    members = [[f"seed={k}", f"regularizer.l2.strength={s}"] for k, s in enumerate([1e-4, 1e-2])]
    records = population(tmp_path / "pop", shared, members)
    single = run(make_cfg(tmp_path / "single", *shared, *members[1]))
    assert_same_weights(tmp_path / "pop" / "m1", tmp_path / "single")
    assert records[1]["model"] == single["model"] == model
    assert records[1]["metrics"]["test/loss"] == pytest.approx(single["metrics"]["test/loss"])


UCI_DIR = REPO.parent / "shared" / "data" / "uci"


@pytest.mark.skipif(not UCI_DIR.is_dir(), reason=f"offline UCI copy not found at {UCI_DIR}")
def test_uci_members_on_published_splits_equal_their_single_runs(tmp_path):
    """dataset.split varies per member like split_seed: one datamodule per split, stacked."""
    from bench.population.batcher import group_key

    shared = [
        "dataset=uci", "dataset.name=yacht", f"dataset.data_dir={UCI_DIR}", "model.widths=[50]",
        "regularizer=[dropout,l2]", "regularizer.dropout.p_dense=0", "regularizer.dropout.mc=false",
        "trainer.max_epochs=3", "trainer.precision=64-true", "evaluation.shift.corruptions=[]",
    ]  # fmt: skip
    members = [["seed=0", "dataset.split=0"], ["seed=1", "dataset.split=7"]]
    keys = [group_key(make_cfg(tmp_path, *shared, *own)) for own in members]
    assert (
        keys[0][0] is not None and keys[0] == keys[1] and keys[0][1] == "uci-yacht/mlp/dropout+l2"
    )
    records = population(tmp_path / "pop", shared, members)
    single = run(make_cfg(tmp_path / "single", *shared, *members[1]))
    assert_same_weights(tmp_path / "pop" / "m1", tmp_path / "single")
    assert records[1]["dataset"] == single["dataset"] == "uci-yacht"
    assert records[1]["metrics"]["test/rmse"] == pytest.approx(single["metrics"]["test/rmse"])
    assert records[0]["metrics"]["test/rmse"] != records[1]["metrics"]["test/rmse"]
