"""The main job: ``bench-train --multirun experiment=benchmark`` (every grid point × seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.conftest import CONF_DIR, run_cli, sweep_records

GRID = sorted(p.stem for p in (CONF_DIR / "grid").glob("*.yaml"))


def test_every_grid_point_composes_into_its_regularizers():
    """Each conf/grid/<name>.yaml selects the regularizer its name says, with its strength."""
    assert len(GRID) >= 30
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        base = compose("train", overrides=["experiment=benchmark"], return_hydra_config=True)
        assert base.hydra.sweeper.params == {"+grid": "glob(*)", "seed": "0,1,2"}
        assert base.dataset.train_size == 300 and list(base.logger) == ["csv"]
        seen = set()
        for name in GRID:
            cfg = compose("train", overrides=["experiment=benchmark", f"+grid={name}"])
            regs = list(cfg.regularizer)
            method = "none" if not regs else "+".join(regs)
            assert name.startswith(method), (name, regs)
            for node in cfg.regularizer.values():
                instantiate(node)  # valid settings
            key = json.dumps({k: dict(v) for k, v in cfg.regularizer.items()}, sort_keys=True)
            assert key not in seen, f"{name} duplicates another grid point"
            seen.add(key)


@pytest.mark.slow
def test_the_benchmark_sweep_ends_with_both_leaderboards(tmp_path: Path):
    """Every grid point runs (1 epoch, 1 seed) and the sweep ends with its answer."""
    proc = run_cli(
        "--multirun",
        "experiment=benchmark",
        "trainer.max_epochs=1",
        "hydra.sweeper.params.seed=0",
        "evaluation.shift.corruptions=[]",
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = sweep_records(tmp_path)
    assert len(records) == len(GRID)
    assert all(json.loads(p.read_text())["status"] == "completed" for p in records)
    assert "Generalization gap" in proc.stdout and "Calibration" in proc.stdout
    sweep = records[0].parent.parent
    assert (sweep / "leaderboard_gap.md").is_file()
