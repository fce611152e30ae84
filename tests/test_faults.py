"""Nothing is lost when the worst happens during a write (CPU, Linux):

- a process SIGKILLed while writing a checkpoint: the previous checkpoint is the one resumed
  from, and the debris of the write is pruned;
- a process SIGKILLed while writing ``results.json``: the old record, whole, or none at all,
  and the leaderboard sees only complete records;
- the disk filling up during a checkpoint save: the run is recorded as failed, the checkpoints
  written before are intact, and running it again completes with an uninterrupted run's result.

The kills are real: a separate interpreter does the write and stalls inside it (at an fsync,
the step between writing a temporary file and renaming it into place) until the test kills it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from bench.leaderboard.load import find_files, load_runs
from bench.record import run_record
from bench.results import read_results, write_json_atomic
from bench.resume.checkpoints import (
    CHECKSUM_SUFFIX,
    LAST,
    AtomicCheckpointIO,
    checkpoint_name,
    latest_valid,
    prune,
    resumable,
    verify,
)
from bench.train import run
from tests.conftest import make_cfg
from tests.faults import STALL_AT_FSYNC, FullDisk, kill_mid_write, temp_target

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="needs /proc/self/fd to see which file a write is in"
)


def leftovers(directory: Path) -> tuple[list[Path], list[Path]]:
    """Temporary files and zero-byte files anywhere below ``directory`` (links followed)."""
    files = [p for p in directory.rglob("*") if not p.is_dir()]
    temporary = [p for p in files if p.name.endswith(".tmp")]
    return temporary, [p for p in files if p.stat().st_size == 0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- 2. checkpoints
CHECKPOINT_WRITER = (
    STALL_AT_FSYNC
    + """
from pathlib import Path

import torch

from bench.resume.checkpoints import AtomicCheckpointIO

directory, source_a, source_b, name_a, name_b, n, half = sys.argv[1:]
checkpoint_io = AtomicCheckpointIO()
checkpoint_io.save_checkpoint(torch.load(source_a, weights_only=False), Path(directory) / name_a)
checkpoint_b = torch.load(source_b, weights_only=False)
stall_at_fsync(int(n), half == "half")
checkpoint_io.save_checkpoint(checkpoint_b, Path(directory) / name_b)
"""
)


@pytest.fixture(scope="module")
def lightning_checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """Two real Lightning checkpoints of one model (after 2 and 2 + 3 steps), plain files."""
    root = tmp_path_factory.mktemp("sources")
    model = BoringModel()
    sources = []
    for steps, name in ((2, "a.pt"), (3, "b.pt")):
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        trainer.fit(model)
        trainer.save_checkpoint(root / name)
        sources.append(root / name)
    return sources[0], sources[1]


# moment of the kill → (which fsync of checkpoint B's save stalls, half of its bytes written)
MOMENTS = {
    "writing-the-checksum": (1, False),
    "writing-the-checkpoint": (2, True),
    "checksum-written-checkpoint-not-renamed": (2, False),
}


@pytest.mark.parametrize("moment", MOMENTS)
def test_sigkill_while_a_checkpoint_is_written_resumes_from_the_previous_one(
    tmp_path, lightning_checkpoints, moment
):
    stall, half = MOMENTS[moment]
    source_a, source_b = lightning_checkpoints
    directory = tmp_path / "checkpoints"
    a, b = directory / checkpoint_name(0, 2), directory / checkpoint_name(0, 5)
    args = [str(directory), str(source_a), str(source_b), a.name, b.name, str(stall)]

    tmp = kill_mid_write(CHECKPOINT_WRITER, *args, "half" if half else "full")

    # The kill landed inside B's write: its temporary file is there, B itself is not.
    assert tmp.is_file() and tmp.parent == directory
    assert temp_target(tmp) == (b.name + CHECKSUM_SUFFIX if stall == 1 else b.name)
    assert not b.exists()
    b_sums = b.with_name(b.name + CHECKSUM_SUFFIX)
    assert b_sums.exists() == (stall == 2)  # the checksum goes first
    if stall == 2:  # the bytes in the temporary file are what the checksum describes, or half
        assert (sha256(tmp) == b_sums.read_text().strip()) == (not half)

    # Resuming picks A, which is whole and loads as the checkpoint that was saved.
    assert resumable(directory) == [a]
    assert latest_valid(directory) == a and verify(a) is None
    assert a.with_name(a.name + CHECKSUM_SUFFIX).read_text().strip() == sha256(a)
    loaded = AtomicCheckpointIO().load_checkpoint(a)
    expected = torch.load(source_a, weights_only=False)
    assert loaded["global_step"] == expected["global_step"] == 2
    assert loaded["state_dict"].keys() == expected["state_dict"].keys()
    for key, tensor in expected["state_dict"].items():
        assert torch.equal(loaded["state_dict"][key], tensor), key

    # prune clears the debris: the temporary file and a checksum without its checkpoint.
    prune(directory, keep=2)
    names = {p.name for p in directory.iterdir()}
    assert names == {a.name, a.name + CHECKSUM_SUFFIX, LAST}
    assert (directory / LAST).resolve() == a.resolve()
    assert leftovers(directory) == ([], [])


# --------------------------------------------------------------------------- 3. results.json
RESULTS_WRITER = (
    STALL_AT_FSYNC
    + """
import json
from pathlib import Path

from bench.results import write_json_atomic

path, source, half = sys.argv[1:]
stall_at_fsync(1, half == "half")
write_json_atomic(Path(path), json.loads(Path(source).read_text()))
"""
)


def record(acc: float) -> dict:
    """A completed record as ``bench.train`` writes one (the metrics tell two apart)."""
    return run_record(
        dataset="digits",
        model="mlp",
        regularizers=["l2"],
        seed=0,
        epochs=3,
        metrics={"test/acc": acc, "val/acc": acc, "test/ece": 0.05},
        config={"seed": 0, "regularizer": {"l2": {"weight": 0.0001}}},
        wall_time_s=1.5,
        versions={"python": "3.11"},
    )


@pytest.mark.parametrize("half", [False, True], ids=["before-rename", "half-written"])
def test_sigkill_while_results_json_is_written_leaves_the_old_record_or_none(tmp_path, half):
    root = tmp_path / "sweep"
    old = record(0.9)
    rewritten = root / "rewritten" / "results.json"  # a record being replaced
    write_json_atomic(rewritten, old)
    before = rewritten.read_bytes()
    first = root / "first" / "results.json"  # a job's first record
    source = tmp_path / "new.json"
    source.write_text(json.dumps(record(0.95)))

    def leaderboard_sees_only_the_old_record(_tmp: Path) -> None:
        """Exactly the complete records, and no problem: during the write and after the kill."""
        for paths in ([str(root)], [f"{root}/*/results.json"]):
            assert find_files(paths) == [str(rewritten)]
        runs, problems = load_runs(find_files([str(root)]))
        assert problems == []
        assert [r.metrics for r in runs] == [old["metrics"]]

    stray = []
    for path in (rewritten, first):
        how = "half" if half else "full"
        tmp = kill_mid_write(
            RESULTS_WRITER, str(path), str(source), how, during=leaderboard_sees_only_the_old_record
        )
        assert tmp.parent == path.parent and temp_target(tmp) == "results.json"
        assert tmp.is_file() and tmp.stat().st_size > 0
        stray.append(tmp)

    assert rewritten.read_bytes() == before and read_results(rewritten) == old
    assert not first.exists()
    leaderboard_sees_only_the_old_record(stray[0])
    tmps, empty = leftovers(root)
    assert sorted(tmps) == sorted(stray) and empty == []


# --------------------------------------------------------------------------- 5. a full disk
DIGITS = [
    "trainer.max_epochs=5",
    "evaluation.ood.partners=[]",
    "evaluation.shift.corruptions=[]",
    "evaluation.plots=false",
]


@pytest.mark.slow
def test_a_full_disk_during_a_save_fails_the_run_and_keeps_the_earlier_checkpoints(
    tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    disk = FullDisk(checkpoints, from_save=3)
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", disk)  # bench.atomic calls os.fsync before each rename
        with pytest.raises(OSError) as error:
            run(make_cfg(run_dir, *DIGITS))
    assert error.value.errno == errno.ENOSPC
    assert disk.saves == 3  # the run stopped at the failed save

    failed = json.loads((run_dir / "results.json").read_text())
    assert failed["status"] == "failed"
    assert "No space left on device" in failed["error"]
    # The checkpoints saved before are the bytes they were written with, and the newest resumes.
    assert [p.name for p in resumable(checkpoints)] == sorted(disk.written, reverse=True)
    assert len(disk.written) == 2
    for path in resumable(checkpoints):
        assert sha256(path) == disk.written[path.name]
        assert path.with_name(path.name + CHECKSUM_SUFFIX).read_text().strip() == sha256(path)
    newest = resumable(checkpoints)[0]
    assert latest_valid(checkpoints) == newest and newest.name.startswith("e0001-")
    assert AtomicCheckpointIO().load_checkpoint(newest)["epoch"] == 1
    assert leftovers(run_dir) == ([], [])

    # Space again: the same command re-runs the failed run from scratch, and keeps its record.
    rerun = run(make_cfg(run_dir, *DIGITS))
    assert json.loads((run_dir / "results.failed.json").read_text()) == failed
    assert rerun["status"] == "completed"
    assert rerun == json.loads((run_dir / "results.json").read_text())
    reference = run(make_cfg(tmp_path / "reference", *DIGITS))
    assert rerun["metrics"] == reference["metrics"]
    assert rerun["epochs"] == reference["epochs"]
    assert leftovers(run_dir) == ([], [])
