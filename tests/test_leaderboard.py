"""bench-leaderboard: grouping, statistics, val-only selection, resilience, formats, the CLI.

Records are synthetic (``bench.leaderboard.synthetic.config`` gives them the config a real run
resolves, run-directory paths included); every expected number is computed here by hand.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench.errors import ConfigError
from bench.leaderboard import Options, build_leaderboard
from bench.leaderboard.cli import main
from bench.leaderboard.render import text
from bench.leaderboard.stats import paired, summarize, t_quantile
from bench.leaderboard.synthetic import config
from bench.record import run_record

REPO = Path(__file__).resolve().parents[1]


def put(root: Path, name: str, *, regs=None, seed=0, metrics=None, lr=1e-3, **kw) -> Path:
    """Write one record at ``root/name/results.json``; metrics default to a plain run."""
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    regs = regs or {}
    base = {"train/loss": 0.1, "val/loss": 0.3, "test/loss": 0.3, "gap/loss": 0.2}
    dataset = kw.pop("dataset", "digits")
    if dataset != "diabetes":  # regression records have no accuracy
        base.update({"train/acc": 0.99, "val/acc": 0.9, "test/acc": 0.9, "test/nll": 0.3})
    record = run_record(
        dataset=dataset,
        model="mlp",
        regularizers=list(regs),
        seed=seed,
        epochs=30,
        metrics={**base, **(metrics or {})},
        config=config(str(run_dir), seed, regs, lr=lr),
        wall_time_s=1.0,
        versions={},
        extras={"best_epoch": 30, "sparsity": kw.pop("sparsity", 0.0)},
        **kw,
    )
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir / "results.json"


def l2(strength: float) -> dict:
    return {"l2": {"strength": strength, "params": "weights"}}


def rows(lb, board="gap", section=0):
    return getattr(lb, board).sections[section].rows


def row_of(lb, method, board="gap", prediction="deterministic"):
    found = [r for s in getattr(lb, board).sections for r in s.rows]
    return next(r for r in found if r.method.label == method and r.prediction == prediction)


# --- statistics ---------------------------------------------------------------------------


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 29, 100])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_matches_scipy(p, df):
    assert t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-12)


def test_t_quantile_closed_forms():
    for p in (0.7, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)
        two = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
        assert t_quantile(p, 2) == pytest.approx(two, rel=1e-10)


def test_summarize_by_hand():
    values = [0.1, 0.2, 0.4, 0.35]
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    half = sps.t.ppf(0.975, 3) * sd / 2
    s = summarize(values)
    assert (s.n, s.mean, s.sd) == (4, pytest.approx(mean), pytest.approx(sd))
    assert (s.lo, s.hi) == (pytest.approx(mean - half), pytest.approx(mean + half))
    one = summarize([0.5])
    assert (one.n, one.mean, one.sd, one.lo, one.hi) == (1, 0.5, None, None, None)
    assert summarize([]).mean is None


def test_paired_difference_uses_common_seeds_only():
    a = {0: 0.30, 1: 0.50, 2: 0.41, 7: 9.0}
    b = {0: 0.25, 1: 0.42, 2: 0.40, 5: 1.0}
    diffs = [0.05, 0.08, 0.01]
    expected = summarize(diffs)
    got = paired(a, b)
    assert got.n == 3 and got.mean == pytest.approx(sum(diffs) / 3)
    assert (got.lo, got.hi) == (pytest.approx(expected.lo), pytest.approx(expected.hi))
    # Seeds share most variance here, so pairing gives a much narrower interval than the
    # difference of two independent means would.
    unpaired = summarize([a[s] for s in (0, 1, 2)])
    assert got.hi - got.lo < unpaired.hi - unpaired.lo


# --- grouping -----------------------------------------------------------------------------


def test_real_config_keys_ignore_seed_and_run_dir(tmp_path: Path):
    """On configs composed from conf/ as bench-train resolves them: the run directory appears
    in trainer, logger and checkpoint settings, and none of it may split a configuration."""
    from omegaconf import OmegaConf

    from bench.leaderboard.load import to_run
    from tests.conftest import make_cfg

    def run(seed: int, *overrides: str):
        run_dir = tmp_path / f"multirun/{seed}-{len(overrides)}"
        cfg = OmegaConf.to_container(make_cfg(run_dir, f"seed={seed}", *overrides), resolve=True)
        assert str(run_dir) in json.dumps(cfg["trainer"]) + json.dumps(cfg["callbacks"])
        record = {"status": "completed", "seed": seed, "dataset": "digits", "model": "mlp"}
        record.update({"regularizers": [], "metrics": {}, "config": cfg})
        return to_run(record, str(run_dir / "results.json"))

    a, b = run(0, "regularizer=[l2]"), run(1, "regularizer=[l2]")
    assert a.config_key == b.config_key and a.run_dir != b.run_dir
    c = run(0, "regularizer=[l2]", "regularizer.l2.strength=0.01")
    assert c.config_key != a.config_key and c.section_key == a.section_key
    assert (c.regularizers, c.hparams) == (("l2",), {"l2.strength": 0.01})
    d = run(0, "regularizer=[l2]", "optimizer.lr=0.01")
    assert d.section_key != a.section_key


def test_configuration_ignores_seed_and_run_paths(tmp_path: Path):
    for seed in range(3):  # different run dirs, wandb names, checkpoint dirs, logger dirs
        put(tmp_path, f"sweep/{seed}", regs=l2(1e-3), seed=seed)
    lb = build_leaderboard([str(tmp_path)])
    (entry,) = lb.entries
    assert entry.seeds == (0, 1, 2)
    assert entry.method.label == "l2" and entry.hparams == {"l2.strength": 1e-3}
    assert entry.section.label == "digits / mlp"


def test_sections_methods_and_hyperparameters(tmp_path: Path):
    put(tmp_path, "a", regs={})
    put(tmp_path, "b", regs=l2(1e-4))
    put(tmp_path, "c", regs=l2(1e-3))
    put(tmp_path, "d", regs={**l2(1e-3), "dropout": {"p_dense": 0.5, "mc": True}})
    put(tmp_path, "e", regs={"dropout": {"p_dense": 0.5, "mc": False}})
    put(tmp_path, "f", regs={"dropout": {"p_dense": 0.5, "mc": True}})
    put(tmp_path, "g", regs={}, lr=1e-2)
    lb = build_leaderboard([str(tmp_path)])
    sections = sorted({e.section.label for e in lb.entries})
    assert sections == ["digits / mlp (optimizer.lr=0.001)", "digits / mlp (optimizer.lr=0.01)"]
    labels = sorted((e.method.label, tuple(e.hparams.items())) for e in lb.entries)
    assert labels == [
        ("dropout+l2", (("dropout.p_dense", 0.5), ("l2.strength", 0.001))),
        ("dropout[mc=false]", (("dropout.p_dense", 0.5),)),
        ("dropout[mc=true]", (("dropout.p_dense", 0.5),)),
        ("l2", (("l2.strength", 0.0001),)),
        ("l2", (("l2.strength", 0.001),)),
        ("none", ()),
        ("none", ()),
    ]


# --- selection, statistics in the boards -----------------------------------------------------


def selection_sweep(root: Path) -> dict:
    """l2 at three strengths whose validation and test rankings disagree.

    val/loss ranks 1e-4 best; test/loss and gap/loss rank 1e-2 best. Returns the metrics.
    """
    table = {
        1e-4: {"val/loss": [0.20, 0.22, 0.21], "test/loss": [0.40, 0.42, 0.41]},
        1e-3: {"val/loss": [0.30, 0.31, 0.29], "test/loss": [0.35, 0.36, 0.34]},
        1e-2: {"val/loss": [0.40, 0.41, 0.39], "test/loss": [0.10, 0.11, 0.12]},
    }
    for strength, m in table.items():
        for seed in range(3):
            metrics = {k: v[seed] for k, v in m.items()}
            metrics["gap/loss"] = metrics["test/loss"] - 0.05
            put(root, f"l2-{strength}/{seed}", regs=l2(strength), seed=seed, metrics=metrics)
    for seed in range(3):
        put(root, f"none/{seed}", seed=seed, metrics={"gap/loss": 0.5 + 0.01 * seed})
    return table


def test_selection_uses_validation_never_test(tmp_path: Path):
    table = selection_sweep(tmp_path)
    lb = build_leaderboard([str(tmp_path)])
    row = row_of(lb, "l2")
    assert row.entry.hparams == {"l2.strength": 1e-4}
    test = table[1e-4]["test/loss"]
    assert row.cells["test/loss"].mean == pytest.approx(sum(test) / 3)
    chosen = [e for e in lb.entries if e.selected]
    assert sorted(e.method.label for e in chosen) == ["l2", "none"]
    # val/acc (higher is better) is constant here: ties go to the first point, deterministically
    by_acc = build_leaderboard([str(tmp_path)], Options(select="val/acc"))
    assert row_of(by_acc, "l2").entry.hparams == {"l2.strength": 1e-4}
    with pytest.raises(ConfigError, match="validation data only"):
        build_leaderboard([str(tmp_path)], Options(select="test/loss"))


def test_all_shows_unselected_points(tmp_path: Path):
    selection_sweep(tmp_path)
    lb = build_leaderboard([str(tmp_path)], Options(all=True))
    l2_rows = [r for r in rows(lb) if r.method.label == "l2"]
    assert len(l2_rows) == 3
    assert [r.entry.selected for r in l2_rows].count(True) == 1
    assert all(r.standing == "" for r in l2_rows if not r.entry.selected)


def test_cells_ci_delta_and_ties(tmp_path: Path):
    gaps = {"none": [0.50, 0.52, 0.55], "a": [0.20, 0.24, 0.21], "b": [0.22, 0.23, 0.26]}
    gaps["c"] = [0.40, 0.41, 0.42]
    for method, values in gaps.items():
        regs = {} if method == "none" else {method: {"strength": 1.0}}
        for seed, gap in enumerate(values):
            put(tmp_path, f"{method}/{seed}", regs=regs, seed=seed, metrics={"gap/loss": gap})
    lb = build_leaderboard([str(tmp_path)])
    order = [r.method.label for r in rows(lb)]
    assert order == ["a", "b", "c", "none"]  # by mean gap/loss, lower first
    a, b, c, none = rows(lb)
    mean = sum(gaps["a"]) / 3
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps["a"]) / 2)
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert a.cells["gap/loss"].lo == pytest.approx(mean - half)
    diffs = [x - y for x, y in zip(gaps["b"], gaps["none"], strict=True)]
    assert b.delta["gap/loss"].mean == pytest.approx(sum(diffs) / 3)
    assert none.delta == {}
    # b's interval overlaps a's: a tie, so a is not declared the winner; c and none are behind.
    assert [r.standing for r in (a, b, c, none)] == ["tied", "tied", "behind", "behind"]


def test_one_seed_never_declares_a_winner(tmp_path: Path):
    put(tmp_path, "none", metrics={"gap/loss": 0.5})
    put(tmp_path, "l2", regs=l2(1e-3), metrics={"gap/loss": 0.1})
    lb = build_leaderboard([str(tmp_path)])
    assert [r.standing for r in rows(lb)] == ["undecided", "undecided"]
    assert all(not r.cells["gap/loss"].has_ci for r in rows(lb))


def test_underfitting_is_flagged(tmp_path: Path):
    for seed in range(3):
        put(tmp_path, f"none/{seed}", seed=seed, metrics={"test/acc": 0.90 + 0.01 * seed})
        low = {"test/acc": 0.70 + 0.012 * seed, "gap/loss": 0.01}
        put(tmp_path, f"aug/{seed}", regs={"augment": {"brightness": 0.5}}, seed=seed, metrics=low)
        same = {"test/acc": 0.90 + 0.011 * seed}
        put(tmp_path, f"l2/{seed}", regs=l2(1e-4), seed=seed, metrics=same)
    lb = build_leaderboard([str(tmp_path)])
    assert rows(lb)[0].method.label == "augment"  # "closes the gap"...
    assert row_of(lb, "augment").flags == ("underfits",)  # ...by underfitting, and says so
    assert row_of(lb, "l2").flags == ()


def test_diverged_runs_are_counted_and_never_selected(tmp_path: Path):
    for seed in range(2):
        put(tmp_path, f"none/{seed}", seed=seed)
        put(tmp_path, f"weak/{seed}", regs=l2(1e-4), seed=seed, metrics={"val/loss": 0.5})
    put(tmp_path, "strong/0", regs=l2(1.0), metrics={"val/loss": 0.1})
    put(tmp_path, "strong/1", regs=l2(1.0), seed=1, diverged_at={"epoch": 3, "step": 9})
    lb = build_leaderboard([str(tmp_path)])
    assert [r.path for r in lb.diverged] == [str(tmp_path / "strong/1/results.json")]
    assert row_of(lb, "l2").entry.hparams == {"l2.strength": 1e-4}
    out = text(lb, [lb.gap], "md")
    assert "0 left out" in out and "1 diverged" in out and "diverged: " in out


# --- the calibration board ----------------------------------------------------------------


def test_calibration_rows_per_prediction_type(tmp_path: Path):
    for seed in range(2):
        put(tmp_path, f"none/{seed}", seed=seed, metrics={"test/nll": 0.40 + 0.01 * seed})
        m = {"test/nll": 0.35, "mc/test/nll": 0.25 + 0.01 * seed, "ts/test/nll": 0.30}
        m.update({"mc/test/loss": 0.25, "ts/test/loss": 0.30, "mc/val/loss": 0.2})
        m.update({"ood/noise/max_prob/auroc": 0.8, "ood/svhn/max_prob/auroc": 0.6 + 0.1 * seed})
        m.update({"ood/noise/entropy/auroc": 0.1, "mc/ood/noise/max_prob/auroc": 0.9})
        put(tmp_path, f"do/{seed}", regs={"dropout": {"p_dense": 0.5}}, seed=seed, metrics=m)
    lb = build_leaderboard([str(tmp_path)])
    got = [(r.method.label, r.prediction) for r in rows(lb, "calibration")]
    assert got == [
        ("dropout", "mc"),
        ("dropout", "ts"),
        ("dropout", "deterministic"),
        ("none", "deterministic"),
    ]
    det = row_of(lb, "dropout", "calibration")
    # ood/auroc: the max_prob AUROC averaged over partners per run, then over seeds.
    assert det.cells["ood/auroc"].mean == pytest.approx(((0.8 + 0.6) / 2 + (0.8 + 0.7) / 2) / 2)
    mc = row_of(lb, "dropout", "calibration", "mc")
    assert mc.cells["ood/auroc"].mean == pytest.approx(0.9)
    # Δ against the baseline's deterministic predictions, paired by seed.
    assert mc.delta["test/nll"].mean == pytest.approx(((0.25 - 0.40) + (0.26 - 0.41)) / 2)


def test_ens_of_seeds_from_predictions(tmp_path: Path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=50)
    probs = []
    for seed in range(3):
        path = put(tmp_path, f"none/{seed}", seed=seed)
        p = rng.dirichlet(np.ones(3), size=50)
        probs.append(p)
        np.savez(path.parent / "predictions.npz", probs=p, labels=labels)
    lb = build_leaderboard([str(tmp_path)])
    ens = row_of(lb, "none", "calibration", "ens-of-seeds")
    mean = [[sum(p[i][k] for p in probs) / 3 for k in range(3)] for i in range(50)]
    nll = -sum(math.log(mean[i][labels[i]]) for i in range(50)) / 50
    acc = sum(max(range(3), key=lambda k, i=i: mean[i][k]) == labels[i] for i in range(50)) / 50
    assert ens.cells["test/nll"].mean == pytest.approx(nll)
    assert ens.cells["test/acc"].mean == pytest.approx(acc)
    assert ens.seeds == (0, 1, 2) and ens.standing == "" and ens.delta == {}
    # A seed scored on another test set is left out of the ensemble, and said so.
    np.savez(tmp_path / "none/2/predictions.npz", probs=probs[2][:40], labels=labels[:40])
    lb = build_leaderboard([str(tmp_path)])
    assert row_of(lb, "none", "calibration", "ens-of-seeds").seeds == (0, 1)
    assert [p.kind for p in lb.problems] == ["predictions"]


def test_ens_of_seeds_regression_is_the_moment_matched_mixture(tmp_path: Path):
    targets = np.array([0.0, 1.0, 2.0, 3.0])
    members = [(np.array([0.1, 1.2, 1.8, 3.3]), np.full(4, 0.2)), (targets + 0.3, np.full(4, 0.5))]
    for seed, (mean, var) in enumerate(members):
        m = {"test/rmse": 0.3, "test/nll": 1.0}
        path = put(tmp_path, f"r/{seed}", seed=seed, metrics=m, dataset="diabetes")
        np.savez(path.parent / "predictions.npz", mean=mean, var=var, targets=targets)
    lb = build_leaderboard([str(tmp_path)])
    ens = row_of(lb, "none", "calibration", "ens-of-seeds")
    mu = (members[0][0] + members[1][0]) / 2
    var = (members[0][1] + members[0][0] ** 2 + members[1][1] + members[1][0] ** 2) / 2 - mu**2
    nll = np.mean(0.5 * (np.log(2 * np.pi * var) + (targets - mu) ** 2 / var))
    assert ens.cells["test/nll"].mean == pytest.approx(nll)
    assert ens.cells["test/rmse"].mean == pytest.approx(math.sqrt(np.mean((mu - targets) ** 2)))


# --- resilience and determinism ------------------------------------------------------------


def test_bad_files_are_listed_and_left_out(tmp_path: Path):
    good = put(tmp_path, "good/0")
    legacy = put(tmp_path, "good/1", seed=1)  # written before schema_version existed
    record = json.loads(legacy.read_text())
    del record["schema_version"]
    legacy.write_text(json.dumps(record))
    data = good.read_bytes()
    bad = {
        "truncated": data[: len(data) // 3],
        "empty": b"",
        "foreign": b'{"accuracy": 0.9}',
        "binary": b"\x80\x81\x82",
    }
    for name, content in bad.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_bytes(content)
    failed = json.loads(data)
    failed.update(status="failed", error="RuntimeError: CUDA out of memory\ntraceback...")
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed/results.json").write_text(json.dumps(failed))
    (tmp_path / "copy").mkdir()  # the same run copied elsewhere: same configuration and seed
    (tmp_path / "copy/results.json").write_bytes(data)
    lb = build_leaderboard([str(tmp_path)])
    kinds = {Path(p.path).parent.relative_to(tmp_path).as_posix(): p.kind for p in lb.problems}
    assert kinds == {
        "truncated": "malformed",
        "empty": "malformed",
        "foreign": "foreign",
        "binary": "malformed",
        "failed": "failed",
        "good/0": "duplicate",  # good/0 sorts after copy/, so copy/ is kept
    }
    reasons = {Path(p.path).parent.relative_to(tmp_path).as_posix(): p.reason for p in lb.problems}
    assert reasons["failed"] == "failed run: RuntimeError: CUDA out of memory"
    assert reasons["good/0"].startswith(f"duplicate of {tmp_path / 'copy/results.json'}")
    (entry,) = lb.entries
    assert entry.seeds == (0, 1) and lb.files == 8


def test_same_input_same_bytes(tmp_path: Path):
    outputs = []
    for order in (range(4), reversed(range(4))):
        root = tmp_path / "sweep"
        for seed in order:  # created in another order the second time
            put(root, f"{seed}", seed=seed, metrics={"gap/loss": 0.1 * seed})
            put(root, f"l2-{seed}", regs=l2(1e-3), seed=seed, metrics={"gap/loss": 0.05 * seed})
        assert main([str(root), "--format", "json"]) == 0
        files = sorted(root.glob("leaderboard_*"))
        outputs.append({f.name: f.read_bytes() for f in files})
        shutil.rmtree(root)
    assert len(outputs[0]) == 6
    assert outputs[0].keys() == outputs[1].keys()
    assert [outputs[0][k] == outputs[1][k] for k in outputs[0]] == [True] * 6


# --- the command --------------------------------------------------------------------------


def small_sweep(root: Path) -> Path:
    for seed in range(2):
        put(root, f"none/{seed}", seed=seed, metrics={"gap/loss": 0.3 + 0.01 * seed})
        for s in (1e-4, 1e-2):
            m = {"gap/loss": 0.1 + s + 0.01 * seed, "val/loss": 0.3 - s}
            put(root, f"l2-{s}/{seed}", regs=l2(s), seed=seed, metrics=m)
    return root


def test_cli_table_writes_six_files(tmp_path: Path, capsys):
    root = small_sweep(tmp_path / "sweep")
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "Generalization gap" in out and "Calibration" in out
    assert "strength=0.01" in out  # the selected point (lowest val/loss) is shown
    assert "leaderboard_{gap,calibration}" in out
    names = sorted(p.name for p in root.glob("leaderboard_*"))
    assert names == [
        f"leaderboard_{b}.{k}" for b in ("calibration", "gap") for k in ("csv", "json", "md")
    ]


def test_cli_formats(tmp_path: Path, capsys):
    root = small_sweep(tmp_path / "sweep")
    out_dir = tmp_path / "elsewhere"
    assert main([str(root), "--format", "json", "--out", str(out_dir)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"gap", "calibration"}
    (section,) = data["gap"]["sections"]
    assert [r["method"] for r in section["rows"]] == ["l2", "none"]
    # The six boards and report.html, nothing else: the atomic writes' temporary files are gone.
    assert sorted(os.listdir(out_dir)) == sorted(
        [f"leaderboard_{b}.{k}" for b in ("calibration", "gap") for k in ("csv", "json", "md")]
        + ["report.html"]
    )
    assert not list(root.glob("leaderboard_*"))
    # readable by the group like any file this user creates (mkstemp alone would give 0600)
    mode = (out_dir / "report.html").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask

    assert main([str(root), "--format", "csv", "--no-files"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    gap = [r for r in table if r["board"] == "gap"]
    assert [r["method"] for r in gap] == ["l2", "none"]
    assert float(gap[0]["gap/loss"]) == pytest.approx((0.11 + 0.12) / 2)

    assert main([str(root), "--format", "md", "--no-files", "--columns", "gap:test/acc"]) == 0
    md = capsys.readouterr().out
    assert "| # | method | hparams | n | test/acc | Δ gap/loss vs none | notes |" in md


def test_cli_sort_and_all(tmp_path: Path, capsys):
    root = small_sweep(tmp_path / "sweep")
    args = [str(root), "--format", "json", "--no-files", "--no-ensembles"]
    assert main([*args, "--sort", "gap:gap/loss:max", "--all"]) == 0
    gap = json.loads(capsys.readouterr().out)["gap"]
    got = [(r["method"], r["hparams"].get("l2.strength")) for r in gap["sections"][0]["rows"]]
    assert got == [("none", None), ("l2", 0.01), ("l2", 0.0001)]
    assert gap["direction"] == "max"


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["{missing}"], "no such file or directory"),
        (["{empty}"], "no results.json under"),
        (["{root}/nothing-*"], "no path matches"),
        (["{root}", "--select", "test/acc"], "validation data only"),
        (["{root}", "--sort", "sparsity"], "write sparsity:min or sparsity:max"),
        (["{root}", "--baseline", "l3"], "--baseline l3: no such method here (l2, none)"),
        (["{root}", "--format", "xml"], "invalid choice"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, args, phrase):
    root = small_sweep(tmp_path / "sweep")
    (tmp_path / "empty").mkdir()
    paths = {"root": root, "missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    try:
        code = main([a.format(**paths) for a in args])
    except SystemExit as exc:  # argparse's own errors exit from inside
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and phrase in err, err


def test_cli_nothing_usable_is_exit_1(tmp_path: Path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/results.json").write_text("{")
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "left out (malformed)" in err
    assert err.strip().splitlines()[-1] == "error: none of the 1 results.json files is usable"


def test_cli_imports_no_torch_or_numpy_and_starts_fast(tmp_path: Path):
    root = small_sweep(tmp_path / "sweep")
    code = "\n".join(
        [
            "import sys, time",
            "t = time.perf_counter()",
            "from bench.leaderboard.cli import main",
            "started = time.perf_counter() - t",
            f"main([{str(root)!r}, '--no-files'])",
            "heavy = [m for m in ('torch', 'lightning', 'numpy', 'scipy') if m in sys.modules]",
            "print('RESULT', heavy, started, file=sys.stderr)",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    line = out.stderr.strip().splitlines()[-1].split(" ", 1)[1]
    heavy, started = line.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(started) < 0.5  # importing the command; the whole run is timed by the script
    assert "Generalization gap" in out.stdout


def test_module_entry_point_runs(tmp_path: Path):
    root = small_sweep(tmp_path / "sweep")
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "bench.leaderboard", str(root), "--format", "md", "--no-files"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("## Generalization gap")
    assert time.perf_counter() - started < 5


def test_nothing_below_a_run_directory_is_read(tmp_path: Path):
    """A run directory is a leaf: its wandb/, checkpoints/ and .hydra/ are never walked."""
    put(tmp_path, "run")
    (tmp_path / "run/wandb/offline-run-1").mkdir(parents=True)
    (tmp_path / "run/wandb/offline-run-1/results.json").write_text("{")
    lb = build_leaderboard([str(tmp_path)])
    assert lb.files == 1 and lb.problems == ()
