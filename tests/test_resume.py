"""Resume after a signal, in process: a real signal reaches the real handlers mid-training,
the run saves and records itself, and the same configuration started again in the same
directory ends with exactly the metrics of a run that was never interrupted (CPU).

The configuration exercises every piece of state a checkpoint must carry: dropout masks and
MC dropout (torch RNG), a cosine schedule, early stopping with its best weights, the data
order of a shuffled loader, and — in the ensemble case — a second network trained after the
first finished.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import signal
from pathlib import Path

import pytest
from omegaconf import open_dict

from bench.resume.checkpoints import CHECKSUM_SUFFIX, resumable
from bench.resume.signals import RunInterrupted
from bench.train import run
from tests.conftest import make_cfg
from tests.faults import SignalAt

STATE = [
    "regularizer=[dropout,early_stopping]",
    "regularizer.early_stopping.patience=2",
    "scheduler=cosine",
    "trainer.max_epochs=6",
    "dataset.batch_size=64",  # 21 batches an epoch (1293 samples): room for a signal mid-epoch
    "+callbacks=mc_dropout",
    "callbacks.mc_dropout.samples=4",
    "evaluation.ood.partners=[]",
    "evaluation.shift.corruptions=[]",
    "evaluation.plots=false",
]
# Early stopping ends this one before max_epochs, and it has two members.
ENSEMBLE = [
    *STATE,
    "optimizer.lr=0.03",
    "regularizer.early_stopping.patience=1",
    "ensemble.members=2",
]
BATCHES_PER_EPOCH = 21


def with_signal(cfg, at: SignalAt):
    """The config plus a callback that sends the signal (a config node, as a user would add)."""
    with open_dict(cfg):
        cfg.callbacks.fault = {
            "_target_": "tests.faults.SignalAt",
            "epoch": at.epoch,
            "batch": at.batch,
            "signum": at.signum,
            "fit": at.fit,
        }
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict]:
    """Uninterrupted runs of both configurations, each once for the whole module."""
    root = tmp_path_factory.mktemp("reference")
    return {
        "state": run(make_cfg(root / "state", *STATE)),
        "ensemble": run(make_cfg(root / "ensemble", *ENSEMBLE)),
    }


def same_outcome(a: dict, b: dict) -> None:
    """Bit-identical metrics and the same epochs: exact resume, not approximately the same."""
    assert a["status"] == b["status"] == "completed"
    assert a["metrics"] == b["metrics"]
    for key in ("epochs", "best_epoch", "stopped_epoch", "sparsity"):
        assert a.get(key) == b.get(key), key


# Steps drawn at random in epoch 3 (0-based 2); the seed keeps a failure reproducible.
STEPS = random.Random(8).sample(range(1, BATCHES_PER_EPOCH - 1), 2)


@pytest.mark.parametrize("batch", STEPS)
def test_sigterm_mid_epoch_3_then_the_same_run_resumes_exactly(tmp_path, reference, batch):
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted) as stop:
        run(with_signal(make_cfg(run_dir, *STATE), SignalAt(2, batch, signal.SIGTERM)))
    assert stop.value.exit_code == 128 + signal.SIGTERM
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted"
    stopped = record["interrupted"]
    # The signal came before batch `batch` trained; the run stopped right after it.
    assert stopped["signal"] == "SIGTERM" and stopped["epoch"] == 3
    assert stopped["step"] == 2 * BATCHES_PER_EPOCH + batch + 1
    assert (run_dir / stopped["checkpoint"]).is_file()

    resumed = run(make_cfg(run_dir, *STATE))
    same_outcome(resumed, reference["state"])


def test_sigusr2_during_validation_stops_at_the_epoch_end_and_resumes_exactly(tmp_path, reference):
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        run(with_signal(make_cfg(run_dir, *STATE), SignalAt(1, None, signal.SIGUSR2)))
    stopped = json.loads((run_dir / "results.json").read_text())["interrupted"]
    assert stopped["signal"] == "SIGUSR2" and stopped["step"] == 2 * BATCHES_PER_EPOCH
    assert stopped["checkpoint"].startswith("checkpoints/e0001-")
    same_outcome(run(make_cfg(run_dir, *STATE)), reference["state"])


def test_ctrl_c_in_the_second_ensemble_member_resumes_it_and_keeps_the_first(tmp_path, reference):
    """Member 0 had finished (stopped early); it is restored from its final checkpoint without
    training again, and member 1 continues mid-epoch."""
    run_dir = tmp_path / "run"
    SignalAt.fits = 0
    with pytest.raises(RunInterrupted) as stop:
        run(with_signal(make_cfg(run_dir, *ENSEMBLE), SignalAt(1, 5, signal.SIGINT, fit=1)))
    assert stop.value.exit_code == 128 + signal.SIGINT
    stopped = json.loads((run_dir / "results.json").read_text())["interrupted"]
    assert stopped["signal"] == "SIGINT"
    assert stopped["checkpoint"].startswith("members/1/checkpoints/e0001-")
    assert any(p.name.endswith("-final.ckpt") for p in resumable(run_dir / "checkpoints"))
    same_outcome(run(make_cfg(run_dir, *ENSEMBLE)), reference["ensemble"])


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, caplog):
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        run(with_signal(make_cfg(run_dir, *STATE), SignalAt(3, 7, signal.SIGTERM)))
    newest, previous = resumable(run_dir / "checkpoints")[:2]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a write cut short
    resumed = run(make_cfg(run_dir, *STATE))
    assert f"checkpoint {newest} is corrupt or truncated" in caplog.text
    assert f"Restoring states from the checkpoint path at {previous}" in caplog.text
    # The previous checkpoint is an exact point too: still the uninterrupted result.
    same_outcome(resumed, reference["state"])


def test_no_valid_checkpoint_is_one_clear_error_and_nothing_is_touched(tmp_path):
    from bench.resume.checkpoints import CheckpointError

    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        run(with_signal(make_cfg(run_dir, *STATE), SignalAt(1, 3, signal.SIGTERM)))
    ckpts = resumable(run_dir / "checkpoints")
    for path in ckpts:
        path.write_bytes(path.read_bytes()[:100])
    before = {p: p.read_bytes() for p in (run_dir / "checkpoints").iterdir() if p.is_file()}
    with pytest.raises(CheckpointError) as error:
        run(make_cfg(run_dir, *STATE))
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot resume: checkpoint")
    assert str(ckpts[0]) in message and "resume=false" in message
    after = {p: p.read_bytes() for p in (run_dir / "checkpoints").iterdir() if p.is_file()}
    assert after == before
    assert json.loads((run_dir / "results.json").read_text())["status"] == "interrupted"


def test_a_finished_run_is_skipped_and_a_failed_one_rerun_from_scratch(tmp_path, reference):
    run_dir = tmp_path / "run"
    first = run(make_cfg(run_dir, *STATE))
    written = (run_dir / "results.json").read_bytes()
    mtime = (run_dir / "results.json").stat().st_mtime_ns
    assert run(make_cfg(run_dir, *STATE)) == first  # skipped: the record, untouched
    assert (run_dir / "results.json").read_bytes() == written
    assert (run_dir / "results.json").stat().st_mtime_ns == mtime

    failed = {**json.loads(written), "status": "failed", "error": "RuntimeError: boom"}
    (run_dir / "results.json").write_text(json.dumps(failed))
    rerun = run(make_cfg(run_dir, *STATE))
    same_outcome(rerun, reference["state"])
    assert json.loads((run_dir / "results.failed.json").read_text())["error"] == failed["error"]


def test_checkpoints_carry_checksums_and_only_the_newest_are_kept(tmp_path):
    run_dir = tmp_path / "run"
    run(make_cfg(run_dir, *STATE, "checkpoint.keep=3"))
    directory = run_dir / "checkpoints"
    ckpts = resumable(directory)
    assert len(ckpts) == 3 and ckpts[0].name.endswith("-final.ckpt")
    assert (directory / "last.ckpt").resolve() == ckpts[0].resolve()
    for path in ckpts:
        recorded = path.with_name(path.name + CHECKSUM_SUFFIX).read_text().strip()
        assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not list(directory.glob(".*"))  # no temporary files left behind


def test_the_csv_log_continues_across_the_restart(tmp_path):
    """One metrics.csv: the interrupted start's rows up to its checkpoint, then the resumed
    start's; validation rows (whole epochs, exact weights) equal an uninterrupted run's."""

    def rows(run_dir: Path) -> list[dict[str, str]]:
        with open(run_dir / "csv" / "metrics.csv", newline="") as file:
            return list(csv.DictReader(file))

    def by_step(table: list[dict[str, str]], key: str) -> dict[str, str]:
        found = [(r["step"], r[key]) for r in table if r.get(key)]
        assert len({s for s, _ in found}) == len(found), f"{key} logged twice at one step"
        return dict(found)

    run(make_cfg(tmp_path / "reference", *STATE, "logger=csv"))
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        run(with_signal(make_cfg(run_dir, *STATE, "logger=csv"), SignalAt(2, 9)))
    run(make_cfg(run_dir, *STATE, "logger=csv"))
    expected, resumed = rows(tmp_path / "reference"), rows(run_dir)
    for key in ("val/loss", "val/acc", "fit/lr"):
        assert by_step(resumed, key) == by_step(expected, key), key
    assert by_step(resumed, "fit/loss").keys() == by_step(expected, "fit/loss").keys()


def test_min_interval_skips_epoch_checkpoints_but_not_the_final_one(tmp_path):
    """checkpoint.min_interval_s: epochs ending sooner than that after the last save write
    nothing; the end of fit still does. 0 (the default) writes one per epoch (keep=10 here)."""
    common = ["trainer.max_epochs=4", "checkpoint.keep=10", "dataset.train_size=100"]
    run(make_cfg(tmp_path / "every", *common))
    run(make_cfg(tmp_path / "sparse", *common, "checkpoint.min_interval_s=3600"))
    every = sorted(p.name for p in resumable(tmp_path / "every" / "checkpoints"))
    sparse = sorted(p.name for p in resumable(tmp_path / "sparse" / "checkpoints"))
    assert len(every) == 4 and every[-1].endswith("-final.ckpt")
    assert sparse == [every[-1]]
    with pytest.raises(Exception, match="checkpoint.min_interval_s"):
        run(make_cfg(tmp_path / "bad", "checkpoint.min_interval_s=-1"))
