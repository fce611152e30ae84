"""``bench-leaderboard --wandb``: one offline run holding both boards as tables and the plots.

The command runs in a subprocess (wandb keeps process-wide state) with WANDB_MODE=offline and
every wandb directory inside tmp_path; the run is then read back from its files — wandb writes
a table to ``files/media/table/<key>_<step>_<hash>.table.json`` and an image to
``files/media/images/<key>_<step>_<hash>.png``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bench.leaderboard import build_leaderboard
from bench.leaderboard.figures import report_plots
from bench.leaderboard.report import MAX_PLOT_SECTIONS
from bench.leaderboard.synthetic import write_sweep
from bench.leaderboard.wandb_log import mode

REPO = Path(__file__).resolve().parents[1]


def wandb_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Offline, quiet, and nothing written outside tmp_path (config, cache, artifacts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"WANDB_SILENT": "true", "WANDB_MODE": "offline"})
    for name in ("CONFIG", "CACHE", "DATA", "ARTIFACT"):
        env[f"WANDB_{name}_DIR"] = str(tmp_path / f"wandb-{name.lower()}")
    return {**env, **extra}


def test_wandb_run_holds_both_boards_and_the_plots(tmp_path: Path):
    root = tmp_path / "sweep"
    write_sweep(str(root), n_records=10, seeds=2, methods=("none", "l1"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench.leaderboard", str(root), "--out", str(out), "--wandb"]
    done = subprocess.run(
        cmd, cwd=tmp_path, env=wandb_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert f"wandb: {run_dir}" in done.stdout
    media = run_dir / "files" / "media"

    lb = build_leaderboard([str(root)])
    for board in lb.boards:
        (path,) = (media / "table" / "leaderboard").glob(f"{board.name}_*.table.json")
        logged = json.loads(path.read_text())
        rows = [r for part in board.sections for r in part.rows]
        assert len(logged["data"]) == len(rows) > 0
        columns = logged["columns"]
        assert {"method", "prediction", "n", "standing", f"Δ {board.sort}"} <= set(columns)
        assert set(board.sections[0].columns) <= set(columns)
        by_name = [dict(zip(columns, values, strict=True)) for values in logged["data"]]
        assert [(r["method"], r["prediction"], r["rank"]) for r in by_name] == [
            (r.method.label, r.prediction, r.rank) for r in rows
        ]
        sort = [r[board.sort] for r in by_name]
        assert sort == pytest.approx([r.cells[board.sort].mean for r in rows])

    plots = report_plots(lb, MAX_PLOT_SECTIONS)
    images = sorted((media / "images" / "plots").rglob("*.png"))
    assert len(images) == len(plots) > 0
    for plot in plots:
        (image,) = (media / "images" / "plots" / f"section{plot.section_index}").glob(
            f"{plot.key}_*.png"
        )
        with Image.open(image) as logged, Image.open(io.BytesIO(plot.png)) as drawn:
            assert logged.convert("RGB").tobytes() == drawn.convert("RGB").tobytes()


def test_offline_unless_the_user_chose_a_mode(tmp_path: Path, monkeypatch):
    for key in ("WANDB_MODE", "WANDB_DISABLED", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    assert mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert mode() is None  # wandb reads WANDB_MODE itself
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "settings").write_text("[default]\nmode = disabled\n")  # `wandb disabled`
    assert mode() is None
    (tmp_path / "wandb" / "settings").unlink()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings").write_text("[default]\nentity = me\n")  # no mode chosen
    assert mode() == "offline"
