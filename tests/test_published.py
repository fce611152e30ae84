"""The reproductions board: our figures next to a paper's, with the difference in SEs.

Records are synthetic (``bench.leaderboard.synthetic.config`` plus a ``published`` node, as
``conf/experiment/*.yaml`` declare it); every expected number is computed here by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.leaderboard import build_leaderboard
from bench.leaderboard.cli import main
from bench.leaderboard.synthetic import config
from bench.record import run_record

SPEC = {
    "table": "paper-t1",
    "source": "Someone et al. (2020), Table 1",
    "spread": "se",
    "n": 20,
    "runs": {"dataset.validation": False},
    "figures": {
        "wine": {"mc/test/rmse": [0.62, 0.01], "mc/test/ll": [-0.93, 0.01]},
        "yacht": {"mc/test/rmse": [0.67, 0.05]},
    },
}


def put(
    root: Path,
    name: str,
    row: str,
    split: int,
    metrics: dict,
    validation=False,
    spec=SPEC,
    drop_val=False,
    status="completed",
):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    cfg = config(str(run_dir), 0, {"dropout": {"p_dense": 0.05}}, dataset="uci")
    cfg["dataset"].update({"name": row, "split": split, "validation": validation})
    cfg["published"] = {**spec, "row": row}
    record = run_record(
        dataset=f"uci-{row}",
        model="mlp",
        regularizers=["dropout"],
        seed=0,
        epochs=1,
        metrics={**({} if drop_val else {"val/loss": 1.0}), "test/loss": 1.0, **metrics},
        config=cfg,
        wall_time_s=1.0,
        versions={},
        diverged_at={"epoch": 1, "step": 3} if status == "diverged" else None,
    )
    (run_dir / "results.json").write_text(json.dumps(record))


def by_hand(values: list[float], published: float, published_se: float | None):
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)
    return mean, se, (mean - published) / math.hypot(se, published_se or 0.0)


def test_ours_against_published_in_standard_errors(tmp_path: Path):
    rmse = [0.60, 0.66, 0.75]
    for k, v in enumerate(rmse):
        put(tmp_path, f"wine{k}", "wine", k, {"mc/test/rmse": v, "mc/test/ll": -0.9 - k / 100})
        # the grid-search runs of the same split count for nothing (runs: validation false)
        put(tmp_path, f"grid{k}", "wine", k, {"mc/test/rmse": 99.0}, validation=True)
    put(tmp_path, "yacht0", "yacht", 0, {"mc/test/rmse": 0.5})
    (table,) = build_leaderboard([str(tmp_path)]).published
    assert table.table == "paper-t1" and table.runs == 4
    assert [(c.row, c.metric) for c in table.rows] == [
        ("wine", "mc/test/rmse"),
        ("wine", "mc/test/ll"),
        ("yacht", "mc/test/rmse"),
    ]
    wine = table.rows[0]
    mean, se, diff = by_hand(rmse, 0.62, 0.01)
    assert wine.n == 3
    assert wine.ours == pytest.approx(mean) and wine.ours_se == pytest.approx(se)
    assert wine.difference_se == pytest.approx(diff) and wine.agrees is (abs(diff) <= 2)
    ll = table.rows[1]
    mean, se, diff = by_hand([-0.90, -0.91, -0.92], -0.93, 0.01)
    assert ll.difference_se == pytest.approx(diff) and ll.agrees is True  # 1.7 SE apart
    yacht = table.rows[2]  # one run: no SE of ours, the paper's alone scales the difference
    assert yacht.n == 1 and yacht.ours_se is None
    assert yacht.difference_se == pytest.approx((0.5 - 0.67) / 0.05) and yacht.agrees is False


def test_a_published_sd_becomes_an_se_and_none_gives_no_interval(tmp_path: Path):
    sd_spec = {**SPEC, "spread": "sd", "n": 25, "runs": {}}
    for k, v in enumerate([1.0, 2.0]):
        put(tmp_path, f"a{k}", "yacht", k, {"mc/test/rmse": v}, spec=sd_spec)
    (table,) = build_leaderboard([str(tmp_path)]).published
    row = table.rows[0]
    assert row.published_se == pytest.approx(0.05 / 5)  # sd 0.05 over sqrt(25) replicates
    _, se, diff = by_hand([1.0, 2.0], 0.67, 0.01)
    assert row.difference_se == pytest.approx(diff)

    none_spec = {
        **sd_spec,
        "table": "t9",
        "spread": "none",
        "figures": {"mnist": {"test/error": 0.0162}},
    }
    root = tmp_path / "none"
    put(root, "r0", "mnist", 0, {"test/acc": 0.98}, spec=none_spec)
    (table,) = build_leaderboard([str(root)]).published
    (row,) = table.rows
    assert row.ours == pytest.approx(0.02)  # test/error derived as 1 - test/acc
    assert row.published_se is None and row.difference_se is None and row.agrees is None


def test_cli_prints_and_writes_the_published_board(tmp_path: Path, capsys):
    for k, v in enumerate([0.6, 0.7]):
        put(tmp_path, f"w{k}", "wine", k, {"mc/test/rmse": v})
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Reproductions: ours vs published" in out and "| wine | mc/test/rmse | 2 |" in out
    # every run reproduces the table: the terminal shows it alone, the boards go to the files
    assert "boards: in the leaderboard_* files" in out and "Generalization gap" not in out
    assert "Generalization gap" in (tmp_path / "leaderboard_gap.md").read_text()
    rows = json.loads((tmp_path / "leaderboard_published.json").read_text())
    assert rows[0]["row"] == "wine" and rows[0]["ours"] == pytest.approx(0.65)
    assert rows[0]["published"] == 0.62 and rows[0]["published_se"] == 0.01
    header = (tmp_path / "leaderboard_published.csv").read_text().splitlines()[0]
    assert header.startswith("table,source,row,metric,n,ours,ours_se,published")
    assert "| wine | mc/test/ll | 0 |" in (tmp_path / "leaderboard_published.md").read_text()


def test_no_published_node_no_board(tmp_path: Path):
    put(tmp_path, "a", "wine", 0, {"mc/test/rmse": 0.6}, spec={})
    assert build_leaderboard([str(tmp_path)]).published == ()
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "leaderboard_published.md").exists()


def test_refits_without_validation_metrics_still_get_their_table(tmp_path: Path, capsys):
    """Refits on train + val have no val/loss: the boards select nothing, the table stands,
    and diverged runs of a row are counted beside it, never averaged in."""
    for k, v in enumerate([0.6, 0.7]):
        put(tmp_path, f"w{k}", "wine", k, {"mc/test/rmse": v}, drop_val=True)
    put(tmp_path, "w2", "wine", 2, {}, drop_val=True, status="diverged")
    assert main([str(tmp_path), "--select", "val/loss"]) == 0
    (table,) = build_leaderboard([str(tmp_path)]).published
    assert table.rows[0].n == 2 and table.rows[0].diverged == 1
    assert "| wine | mc/test/rmse | 2 | 0.65 |" in capsys.readouterr().out
    root = tmp_path / "plain"
    put(root, "a", "wine", 0, {"mc/test/rmse": 0.6}, spec={}, drop_val=True)
    assert main([str(root), "--select", "val/loss"]) == 2  # no table: the usual refusal


def test_a_row_may_rest_on_its_own_number_of_replicates(tmp_path: Path):
    spec = {
        **SPEC,
        "spread": "sd",
        "runs": {},
        "figures": {"protein": {"ens/test/rmse": [4.7, 0.06, 5]}},
    }
    for k, v in enumerate([4.6, 4.8]):
        put(tmp_path, f"p{k}", "protein", k, {"ens/test/rmse": v}, spec=spec)
    (table,) = build_leaderboard([str(tmp_path)]).published
    assert table.rows[0].published_se == pytest.approx(0.06 / math.sqrt(5))  # not sqrt(20)
