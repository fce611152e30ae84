"""Readable job logs: one line per epoch instead of a progress bar when output is a file, and
library noise filtered by exact message and module, so that real warnings still show."""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import textwrap
import warnings
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import ProgressBar

from bench.callbacks.epoch_log import EpochLog, progress_bar_enabled
from bench.errors import ConfigError
from bench.quiet import DropInfoLines, quiet_libraries
from tests.conftest import run_cli

LEAF_MESSAGE = (
    "`isinstance(treespec, LeafSpec)` is deprecated, "
    "use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead."
)

# A user's own callback: its warnings (even one whose text equals a filtered library warning)
# must reach the log.
USER_CALLBACK = """
import warnings

from lightning.pytorch.callbacks import Callback
from torch.utils._pytree import LeafSpec


class WarnOnce(Callback):
    def on_train_start(self, trainer, pl_module):
        warnings.warn("user warning from a callback", UserWarning)
        LeafSpec()  # torch's deprecation, raised from user code this time
"""


def epoch_rows(metrics_csv: Path) -> dict[int, dict[str, float]]:
    """metrics.csv (CSVLogger) merged by epoch: {epoch: {key: value}}, the reference."""
    rows: dict[int, dict[str, float]] = {}
    with metrics_csv.open() as f:
        for row in csv.DictReader(f):
            values = {k: float(v) for k, v in row.items() if v not in ("", None)}
            if "epoch" not in values:
                continue  # the final/* row written after training
            rows.setdefault(int(values["epoch"]), {}).update(values)
    return rows


@pytest.mark.slow  # one real CLI run: ~5 s of imports plus a 3-epoch fit
def test_cli_log_file_has_one_line_per_epoch_and_no_library_noise(tmp_path: Path):
    (tmp_path / "user_cb.py").write_text(textwrap.dedent(USER_CALLBACK))
    proc = run_cli(
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        "trainer.check_val_every_n_epoch=2",  # validation on epoch 2 only
        "trainer.log_every_n_steps=50",  # more than digits' 11 batches: Lightning's hint fires
        "logger=csv",
        "evaluation.plots=false",
        "evaluation.shift.corruptions=[]",
        "evaluation.ood.partners=[]",
        "+callbacks.user._target_=user_cb.WarnOnce",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr

    lines = [ln for ln in proc.stdout.splitlines() if re.search(r"\bepoch \d+/3\b", ln)]
    assert [re.search(r"epoch (\d+)/3", ln).group(1) for ln in lines] == ["1", "2", "3"]
    (metrics_csv,) = (tmp_path / "out" / "runs").glob("*/csv/metrics.csv")
    reference = epoch_rows(metrics_csv)
    for epoch, line in enumerate(lines):
        shown = {k: float(v) for k, v in re.findall(r"(\S+/\S+)=(\S+)", line)}
        expected = {k: v for k, v in reference[epoch].items() if k in EpochLog().keys}
        assert shown.keys() == expected.keys(), line
        for key, value in expected.items():
            assert shown[key] == pytest.approx(value, rel=1e-3), (line, key)
    assert "val/loss" in lines[1] and "val/loss" not in lines[0] + lines[2]
    # Each epoch's line lands in the run's own log file too.
    (job_log,) = (tmp_path / "out" / "runs").glob("*/train.log")
    assert job_log.read_text().count(" epoch ") == 3

    for noise in ("━", "\r", "it/s", "litlogger", "GPU available:", "TPU available:"):
        assert noise not in output, noise
    assert "smaller than the logging interval" not in output
    assert "The `srun` command is available" not in output  # where Slurm's tools are (CI)
    assert "lightning/pytorch/utilities/_pytree.py" not in output
    # ... but the user's own warnings, including the one equal to a filtered message, show.
    assert "user warning from a callback" in proc.stderr
    assert re.search(r"user_cb\.py:\d+: FutureWarning: `isinstance\(treespec, LeafSpec\)`", output)


def _stream(tty: bool) -> io.StringIO:
    stream = io.StringIO()
    stream.isatty = lambda: tty  # type: ignore[method-assign]
    return stream


@pytest.mark.parametrize(
    ("setting", "tty", "bar"),
    [("auto", True, True), ("auto", False, False), (True, False, True), (False, True, False)],
)
def test_progress_bar_setting(setting, tty: bool, bar: bool):
    assert progress_bar_enabled(setting, _stream(tty)) is bar


def test_progress_bar_bad_value_names_the_key():
    with pytest.raises(ConfigError, match=r"^trainer\.enable_progress_bar: allowed are auto"):
        progress_bar_enabled("yes", _stream(True))


@pytest.mark.parametrize(
    ("setting", "bar", "lines"),
    [("true", True, False), ("false", False, False), ("auto", False, True)],
)
def test_build_trainer_chooses_bar_or_lines(cfg_factory, setting: str, bar: bool, lines: bool):
    """Under pytest stdout is captured, so ``auto`` means lines; true forces the bar."""
    from bench.train import assemble

    _, _, trainer, _ = assemble(cfg_factory(f"trainer.enable_progress_bar={setting}"))
    assert isinstance(trainer.progress_bar_callback, ProgressBar) is bar
    assert any(isinstance(cb, EpochLog) for cb in trainer.callbacks) is lines


def test_warning_filters_are_pinned_to_message_and_module():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_libraries()  # undone when catch_warnings exits
        for module in (
            "lightning.pytorch.utilities._pytree",  # filtered
            "lightning.pytorch.utilities._pytree_next",  # a sibling module: shown
            "user_code",  # shown
        ):
            warnings.warn_explicit(LEAF_MESSAGE, FutureWarning, "f.py", 1, module=module)
        warnings.warn_explicit(
            "something else", FutureWarning, "f.py", 2, module="lightning.pytorch.utilities._pytree"
        )
    assert [(str(w.message)[:20], w.lineno) for w in caught] == [
        (LEAF_MESSAGE[:20], 1),
        (LEAF_MESSAGE[:20], 1),
        ("something else", 2),
    ]


def test_info_filter_drops_only_the_named_lines():
    drop = DropInfoLines()

    def record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord("lightning", level, "x.py", 1, msg, None, None)

    assert not drop.filter(record("GPU available: True (cuda), used: True"))
    assert not drop.filter(record("💡 Tip: For seamless cloud logging ..."))
    assert drop.filter(record("`Trainer.fit` stopped: `max_epochs=3` reached."))
    assert drop.filter(record("GPU available: but at WARNING", logging.WARNING))


def test_wandb_silent_defaults_to_true_but_the_user_decides(monkeypatch):
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    quiet_libraries()
    assert os.environ["WANDB_SILENT"] == "true"
    monkeypatch.setenv("WANDB_SILENT", "false")
    quiet_libraries()
    assert os.environ["WANDB_SILENT"] == "false"
