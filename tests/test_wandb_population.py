"""``bench.loggers.wandb.start_all``: the members of a population, trained in one process, each
get their own wandb run, all open at once — with real wandb (offline) in subprocesses.

As in ``test_wandb_runs`` (whose helpers these tests use), every scenario runs in a subprocess
with every wandb directory inside tmp_path, and runs are read back from their ``.wandb`` logs.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_wandb_runs import (
    ID_FILE,
    run_file,
    run_script,
    segments,
    wandb_records,
    wandb_warnings,
)

STATUSES = ("completed", "diverged", "completed")

# Three members started together from a background thread (as population training does), each
# logging its own metric at steps 0-2, then finished as a job is (bench.finish.finish_loggers).
POPULATION = """
import json
import threading

import wandb
from lightning.pytorch.loggers import CSVLogger

from bench.finish import finish_loggers
from bench.loggers.wandb import start_all

STATUSES = {statuses!r}
members = [logger(f"m{{k}}") for k in range(3)]
csv = CSVLogger("csv")  # not a wandb logger: start_all leaves it alone
starting = threading.Thread(target=start_all, args=([*members, csv],))
starting.start()
starting.join()
print("started:", json.dumps([lg._experiment.id for lg in members if lg._experiment is not None]))
print("global run:", wandb.run)
for step in range(3):
    for k, lg in enumerate(members):
        lg.log_metrics({{f"loss{{k}}": 10.0 * k + step}}, step=step)

late = logger("late")  # started lazily while the members' runs are open: not handed one of them
late.log_metrics({{"late": 1.0}}, step=0)
late.close("completed")

for k, lg in enumerate(members):
    record = {{"status": STATUSES[k], "metrics": {{"test/acc": k / 10}}, "config": {{"member": k}}}}
    finish_loggers([lg], 3, record, {{}})
print("failures:", [lg.failure for lg in members])
"""

# The same, with wandb.init failing for member m1 only.
ONE_FAILS = """
import wandb

from bench.loggers.wandb import WandbOff, start_all

real_init = wandb.init


def init(**kwargs):
    if kwargs["name"] == "m1":
        raise RuntimeError("no run for m1")
    return real_init(**kwargs)


wandb.init = init
members = [logger(f"m{k}") for k in range(3)]
start_all(members)
print("m1 off:", isinstance(members[1].experiment, WandbOff))
for k, lg in enumerate(members):
    lg.log_metrics({f"loss{k}": float(k)}, step=0)
    lg.finish_run({"status": "completed", "metrics": {"test/acc": k / 10}, "config": {}}, {})
"""


def history_rows(run_dir: Path) -> list[dict]:
    """The rows a run's history holds, in order, without wandb's own ``_step`` etc."""
    (log,) = run_dir.glob("run-*.wandb")
    rows = []
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            row = {item.key or ".".join(item.nested_key): item for item in record.history.item}
            rows.append(
                {k: json.loads(v.value_json) for k, v in row.items() if not k.startswith("_")}
            )
    return rows


def config_of(run_dir: Path) -> dict:
    """The run's config, as its ``config`` records set it (later records win)."""
    (log,) = run_dir.glob("run-*.wandb")
    config: dict = {}
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                config[item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
    return config


def test_members_started_together_each_log_into_their_own_run(tmp_path: Path):
    done = run_script(tmp_path, POPULATION.format(statuses=STATUSES))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "failures: [None, None, None]" in done.stdout and not wandb_warnings(output)
    assert "Traceback" not in output and "Exception in thread" not in output
    assert "global run: None" in done.stdout  # no member became the process-wide run

    ids = set()
    for k, status in enumerate(STATUSES):
        (run_dir,) = segments(tmp_path / f"m{k}")
        run = run_file(run_dir)
        assert run["id"] == (tmp_path / f"m{k}" / ID_FILE).read_text().strip()
        assert run["exit_code"] == 0  # diverged is a finished run too
        assert run["summary"]["bench/status"] == status
        assert run["summary"]["test/acc"] == k / 10
        assert config_of(run_dir)["member"] == k
        rows = history_rows(run_dir)
        # Its own metric at its own steps, then the final metrics; nothing of the others'.
        assert rows == [
            *({f"loss{k}": 10.0 * k + step, "trainer/global_step": step} for step in range(3)),
            {"final/test/acc": k / 10, "trainer/global_step": 3},
        ]
        ids.add(run["id"])
    # All three were started by start_all, before anything was logged.
    started = done.stdout.split("started: ")[1].splitlines()[0]
    assert sorted(json.loads(started)) == sorted(ids)

    (late_dir,) = segments(tmp_path / "late")
    late = run_file(late_dir)
    assert history_rows(late_dir) == [{"late": 1.0, "trainer/global_step": 0}]
    assert late["exit_code"] == 0 and late["summary"]["bench/status"] == "completed"
    assert len(ids | {late["id"]}) == 4


def test_a_member_whose_start_fails_is_turned_off_and_the_others_go_on(tmp_path: Path):
    done = run_script(tmp_path, ONE_FAILS)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    (warning,) = wandb_warnings(output)
    assert "while starting its run (RuntimeError: no run for m1)" in warning
    assert "m1 off: True" in done.stdout
    assert not segments(tmp_path / "m1")  # no run was made for it
    for k in (0, 2):
        (run_dir,) = segments(tmp_path / f"m{k}")
        run = run_file(run_dir)
        assert run["id"] == (tmp_path / f"m{k}" / ID_FILE).read_text().strip()
        assert history_rows(run_dir) == [{f"loss{k}": float(k), "trainer/global_step": 0}]
        assert run["exit_code"] == 0 and run["summary"]["bench/status"] == "completed"
        assert run["summary"]["test/acc"] == k / 10
