"""``bench-leaderboard --wandb``: both leaderboards and the report's plots in one wandb run.

The per-run comparison lives in wandb already (every training run logs its summary, config and
sweep group); this adds the *selected* comparison — the boards after validation selection,
with CIs and ties — as ``wandb.Table``s, and the plots as images, to one run of job type
``leaderboard``. Offline by default, like the training runs: no account or network needed,
``wandb sync`` uploads later. A user who has chosen a mode (``WANDB_MODE``, ``wandb
offline|online|disabled`` settings) gets that mode.
"""

from __future__ import annotations

import configparser
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.leaderboard.figures import Plot
from bench.leaderboard.model import Board, Leaderboard
from bench.leaderboard.render import table_rows

PROJECT = "regbench"
JOB_TYPE = "leaderboard"


def log_leaderboard(lb: Leaderboard, out_dir: str | Path, plots: Sequence[Plot]) -> str:
    """Log the boards (``leaderboard/gap``, ``leaderboard/calibration``) and ``plots`` to one
    new run whose files go below ``out_dir/wandb``; returns the run's directory."""
    import wandb  # ~1 s to import: only for --wandb
    from PIL import Image

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT") or PROJECT,
        job_type=JOB_TYPE,
        name=f"leaderboard {Path(out_dir).resolve().name}",
        dir=str(out_dir),
        mode=mode(),
        config={
            "select": lb.options.select,
            "baseline": lb.options.baseline,
            "sort": {b.name: b.sort for b in lb.boards},
            "files": lb.files,
        },
        reinit="create_new",
    )
    try:
        data: dict[str, Any] = {f"leaderboard/{b.name}": table(wandb, b) for b in lb.boards}
        for plot in plots:
            image = Image.open(io.BytesIO(plot.png))
            caption = f"{plot.section}: {plot.title}"
            data[f"plots/section{plot.section_index}/{plot.key}"] = wandb.Image(
                image, caption=caption
            )
        run.log(data)
        run.summary.update(
            {
                "runs": sum(len(e.runs) for e in lb.entries),
                "configurations": len(lb.entries),
                "diverged": len(lb.diverged),
                "left_out": len(lb.problems),
            }
        )
        return str(Path(run.dir).parent)  # run.dir is its files/ folder
    finally:
        run.finish()


def table(wandb: Any, board: Board) -> Any:
    """A board's flat rows (``render.table_rows``) as a wandb.Table; columns are the union
    over its sections (classification and regression sections differ), absent cells None."""
    rows = table_rows(board)
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["board"]
    return wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])


def mode() -> str | None:
    """``offline`` unless the user chose a mode; None lets wandb apply the user's choice."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_DISABLED"):
        return None
    return None if _settings_mode() else "offline"


def _settings_mode() -> str | None:
    """``mode`` from wandb's settings files (``wandb offline`` writes it to ./wandb/settings,
    ``wandb disabled|enabled`` too; the global file lives in WANDB_CONFIG_DIR)."""
    config_dir = os.environ.get("WANDB_CONFIG_DIR") or os.path.expanduser("~/.config/wandb")
    workspace = os.path.join(os.environ.get("WANDB_DIR") or ".", "wandb", "settings")
    for path in (workspace, os.path.join(config_dir, "settings")):
        parser = configparser.ConfigParser()
        parser.read(path, encoding="utf-8")  # a missing file reads as empty
        if parser.has_option("default", "mode"):
            return parser.get("default", "mode")
    return None
