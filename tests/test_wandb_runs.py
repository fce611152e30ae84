"""``bench.loggers.wandb.WandbLogger``: one run id per run directory, failures marked, a dead
wandb never fails a run — with real wandb (offline) in subprocesses.

wandb keeps process-wide state (its service process, the current run), so every scenario runs
in a subprocess with every wandb directory inside tmp_path. Runs are read back from their
``.wandb`` transaction log with wandb's own protobuf classes: the file is a LevelDB-style log
(a 7-byte header, then 32 KiB blocks of records, each ``crc32 | length | type | data``; types
1 full, 2 first, 3 middle, 4 last piece of a record).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from bench.loggers.wandb import WandbLogger
from bench.loggers.wandb_support import ID_FILE, directory_run_id
from tests.conftest import run_cli

BLOCK = 32 * 1024
# The tests that kill wandb's service find it through /proc.
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/cmdline").is_file(), reason="finds wandb's service process in /proc"
)


def wandb_records(path: Path) -> list[pb.Record]:
    """Every record of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    records, pos, pieces = [], 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        piece, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pieces = piece if kind in (1, 2) else pieces + piece
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pieces)
            records.append(record)
    return records


def run_file(run_dir: Path) -> dict:
    """What a test needs of one offline run directory's log: id, exit code, summary, history."""
    (log,) = run_dir.glob("run-*.wandb")
    out: dict = {"id": None, "resume": None, "exit_code": None, "summary": {}, "history": {}}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["id"], out["resume"] = record.run.run_id, record.run.resume
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
        elif kind in ("summary", "history"):
            items = record.summary.update if kind == "summary" else record.history.item
            for item in items:
                key = item.key or ".".join(item.nested_key)
                out[kind][key] = json.loads(item.value_json)
    return out


def wandb_env(tmp_path: Path) -> dict[str, str]:
    """Offline, quiet, nothing written outside tmp_path; tmp_path importable (helper modules)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_SILENT="true", WANDB_MODE="offline", PYTHONPATH=str(tmp_path))
    for name in ("CONFIG", "CACHE", "DATA", "ARTIFACT"):
        env[f"WANDB_{name}_DIR"] = str(tmp_path / f"wandb-{name.lower()}")
    return env


def run_script(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "script.py").write_text(HELPERS + script)
    return subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), *args],
        cwd=tmp_path,
        env=wandb_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


def segments(directory: Path) -> list[Path]:
    return sorted((directory / "wandb").glob("offline-run-*"))


def wandb_warnings(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if "WARNING" in ln and "wandb failed" in ln]


# What wandb 0.31 raises, depending on the call that first meets its dead service.
SERVICE_LOST = ("ConnectionResetError", "HandleAbandonedError", "MailboxClosedError")


def names_a_lost_service(warning: str) -> bool:
    lost = "the connection to its service process is lost"
    return lost in warning and any(f"({name}" in warning for name in SERVICE_LOST)


# Imported by the scripts below and by the CLI run (as a callback): finds this process's wandb
# service — wandb 0.31 starts `wandb-core ... --pid <parent pid>` — and SIGKILLs it.
KILLER = '''
import os
import signal
import time
from pathlib import Path

import lightning as L


def kill_wandb_service() -> list[int]:
    me = str(os.getpid()).encode()
    pids = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\\0")
        except OSError:  # not a process, or it ended
            continue
        if argv[0].endswith(b"wandb-core") and b"--pid" in argv:
            if argv[argv.index(b"--pid") + 1] == me:
                pids.append(int(entry))
    assert pids, "no wandb service process to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:  # dead (a zombie: its sockets are closed) before wandb is called again
        while Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z":
            time.sleep(0.01)
    return pids


class KillWandbService(L.Callback):
    """SIGKILL wandb's service at the end of training epoch ``epoch``."""

    def __init__(self, epoch: int = 0, marker: str = "killed.txt") -> None:
        self.epoch, self.marker = epoch, marker

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            Path(self.marker).write_text(str(kill_wandb_service()))
'''

HELPERS = """
import logging
import sys
from pathlib import Path

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

from bench.loggers.wandb import WandbLogger


def logger(directory):
    return WandbLogger(save_dir=directory, project="t", offline=True, name=Path(directory).name)
"""


# ---------------------------------------------------------------------- one id per directory
def test_the_id_is_made_once_per_directory_and_kept(tmp_path: Path):
    first = directory_run_id(tmp_path / "a")
    assert (tmp_path / "a" / ID_FILE).read_text().strip() == first
    assert directory_run_id(tmp_path / "a") == first
    assert directory_run_id(tmp_path / "b") != first


def test_a_damaged_id_file_is_replaced_with_a_warning(tmp_path: Path, caplog):
    (tmp_path / ID_FILE).write_text("not/an id\n")
    run_id = directory_run_id(tmp_path)
    assert run_id != "not/an id" and (tmp_path / ID_FILE).read_text().strip() == run_id
    assert "holds no wandb run id" in caplog.text


def test_close_rejects_an_unknown_status(tmp_path: Path):
    with pytest.raises(ValueError, match="status must be one of"):
        WandbLogger(save_dir=tmp_path, offline=True).close("success")


# A stop by a signal (as Slurm sends before a preemption), the first time only.
STOPPER = """
import os
import signal
from pathlib import Path

import lightning as L


class StopOnce(L.Callback):
    def __init__(self, marker):
        self.marker = Path(marker)

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.marker.exists():
            self.marker.write_text("stopped")
            os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.slow
def test_a_stopped_and_restarted_run_continues_its_wandb_run(tmp_path: Path):
    """The same command twice: SIGTERM after the first epoch (exit 143, an interrupted record),
    then the resumed run. Both offline segments carry the run directory's one id; the first
    is marked interrupted, the second goes on from the step where the first stopped."""
    (tmp_path / "stopper.py").write_text(STOPPER)
    env = {k: v for k, v in wandb_env(tmp_path).items() if k.startswith(("WANDB_", "PYTHON"))}
    args = (
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "evaluation.shift.corruptions=[]",
        "evaluation.ood.partners=[]",
        "evaluation.plots=false",
        "+callbacks.stop._target_=stopper.StopOnce",
        f"+callbacks.stop.marker={tmp_path / 'stopped.txt'}",
    )
    stopped = run_cli(*args, cwd=tmp_path, env=env)
    assert stopped.returncode == 128 + 15, stopped.stderr[-3000:]
    resumed = run_cli(*args, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
    run_id = (run_dir / ID_FILE).read_text().strip()
    first, second = (run_file(d) for d in segments(run_dir))
    assert (first["id"], second["id"]) == (run_id, run_id) and first["resume"] and second["resume"]
    assert first["exit_code"] == 128 + 15 and first["summary"]["bench/status"] == "interrupted"
    assert second["exit_code"] == 0
    assert second["history"]["trainer/global_step"] > first["history"]["trainer/global_step"]


# ---------------------------------------------------------------------- failures marked
FIT = """
import signal

import lightning as L
import torch
from PIL import Image

from bench.resume.signals import RunInterrupted


class Net(L.LightningModule):
    def __init__(self, fail=None):
        super().__init__()
        self.layer, self.fail = torch.nn.Linear(2, 1), fail

    def training_step(self, batch, batch_idx):
        if self.fail is not None and batch_idx == 1:
            raise self.fail
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(name, fail=None):
    lg = logger(name)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), 2)
    trainer = L.Trainer(max_epochs=1, logger=lg, accelerator="cpu", enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    try:
        trainer.fit(Net(fail), data)
    except (RuntimeError, RunInterrupted) as exc:
        print("raised", type(exc).__name__)
    return lg


fit("failed", RuntimeError("boom"))
fit("interrupted", RunInterrupted(signal.SIGTERM, 0, 1, None))
done = fit("completed")
done.log_metrics({"after_fit": 1.0})  # finalize("success") left the run open
Image.new("RGB", (4, 4), "red").save("plot.png")
record = {"status": "completed", "metrics": {"test/acc": 0.5}, "config": {"optimizer": {"lr": 0.1}}}
done.finish_run(record, {"reliability": Path("plot.png")})
"""


def test_fit_failures_and_stops_are_marked_and_success_is_left_open(tmp_path: Path):
    done = run_script(tmp_path, FIT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("raised") == 2 and not wandb_warnings(done.stdout + done.stderr)
    runs = {name: run_file(segments(tmp_path / name)[0]) for name in ("failed", "interrupted")}
    assert runs["failed"]["exit_code"] == 1
    assert runs["failed"]["summary"]["bench/status"] == "failed"
    assert runs["interrupted"]["exit_code"] == 128 + 15  # RunInterrupted's: 128 + SIGTERM
    assert runs["interrupted"]["summary"]["bench/status"] == "interrupted"

    (completed_dir,) = segments(tmp_path / "completed")
    completed = run_file(completed_dir)
    assert completed["exit_code"] == 0 and completed["history"]["after_fit"] == 1.0
    assert completed["summary"]["bench/status"] == "completed"
    assert completed["summary"]["test/acc"] == 0.5
    log = next(completed_dir.glob("run-*.wandb")).read_bytes()
    assert b"optimizer.lr" in log  # the config, flat
    assert list(completed_dir.glob("files/media/images/plots/reliability_*.png"))


# ---------------------------------------------------------------------- a dead wandb
JOBS = """
from killer import kill_wandb_service

first = logger("first")
first.log_metrics({"x": 1.0}, step=0)
kill_wandb_service()
first.log_metrics({"x": 2.0}, step=1)  # fails: one warning, then wandb is off for this run
first.log_metrics({"x": 3.0}, step=2)
first.update_summary({"s": 1})
first.experiment.summary.update({"s": 2})  # what code holding the run gets: a stand-in
first.finish_run({"status": "completed", "metrics": {}, "config": {}}, {})
print("first off:", first.failure is not None, type(first.experiment).__name__)

second = logger("second")  # the next job of a sweep in this process: a new service, a new run
second.log_metrics({"y": 1.0}, step=0)
third = logger("third")  # second was left open (its job failed after fit)
third.log_metrics({"z": 1.0}, step=0)
third.close("completed")
"""


@needs_proc
def test_a_dead_service_is_one_warning_and_the_next_job_gets_its_own_run(tmp_path: Path):
    (tmp_path / "killer.py").write_text(KILLER)
    done = run_script(tmp_path, JOBS)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    warnings = wandb_warnings(output)
    # The first call after the kill may still be written into the socket: whichever call meets
    # the dead service first is the one named.
    assert len(warnings) == 1 and names_a_lost_service(warnings[0]), output[-3000:]
    assert "first off: True WandbOff" in done.stdout
    assert "Traceback" not in output and "Exception ignored" not in output
    assert "still open; finished it as failed" in output

    second, third = (run_file(segments(tmp_path / n)[0]) for n in ("second", "third"))
    assert second["history"]["y"] == 1.0 and second["exit_code"] == 1
    assert second["summary"]["bench/status"] == "failed"
    assert third["history"]["z"] == 1.0 and third["exit_code"] == 0
    first_id = (tmp_path / "first" / ID_FILE).read_text().strip()
    assert len({first_id, second["id"], third["id"]}) == 3


@pytest.mark.slow
@needs_proc
def test_killing_wandb_mid_training_leaves_the_run_completed(tmp_path: Path):
    """The real command line; wandb's service is SIGKILLed after the first of three epochs."""
    (tmp_path / "killer.py").write_text(KILLER)
    env = {k: v for k, v in wandb_env(tmp_path).items() if k.startswith(("WANDB_", "PYTHON"))}
    proc = run_cli(
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "evaluation.shift.corruptions=[]",
        "+callbacks.kill._target_=killer.KillWandbService",
        f"+callbacks.kill.marker={tmp_path / 'killed.txt'}",
        cwd=tmp_path,
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert (tmp_path / "killed.txt").is_file()  # the service really was killed
    (results,) = (tmp_path / "out").rglob("results.json")
    record = json.loads(results.read_text())
    assert record["status"] == "completed" and record["epochs"] == 3
    assert record["metrics"]["test/acc"] is not None
    warnings = wandb_warnings(output)
    assert len(warnings) == 1 and "[bench][WARNING]" in warnings[0], output[-3000:]
    assert names_a_lost_service(warnings[0])
    assert "Traceback" not in output
