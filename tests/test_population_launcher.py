"""The population launcher (hydra_plugins/regbench_population): Hydra's own launcher suites, as
its joblib and submitit plugins run them, then batching in a tiny Hydra app with a fake batcher
(tests/population_fake_batcher.py: jobs with the same ``group`` train together).

The app's jobs say which path ran them: the app's own task function returns ``path: app``, the
batcher's returns ``path: batched``; each returns its ``hydra.job.num`` as HydraConfig saw it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra.test_utils.test_utils import verify_dir_outputs
from omegaconf import DictConfig

from hydra_plugins.regbench_population.population_launcher import Job, job_numbers
from tests.conftest import REPO, run_cli

LAUNCHER = "population_launcher"  # the plugin's ConfigStore node (conf/ has `population`)
FAKE = "hydra.launcher.batcher=tests.population_fake_batcher"
APP_CONFIG = """\
x: 0
group: null
member_mb: 1000
fail: false
calls_file: ${hydra:sweep.dir}/calls.jsonl
where: ${hydra:runtime.output_dir}
"""


@pytest.fixture(autouse=True)
def fresh_hydra_version_base():
    """Hydra's suites expect a fresh process's version base (unspecified: jobs run inside their
    output directory, where they write their log). Any earlier test that composed with
    ``version_base="1.3"`` left it set process-wide, so it is reset here and put back after."""
    from hydra.version import _UNSPECIFIED_, VersionBase

    instance = VersionBase.instance()
    before = instance.version_base
    instance.version_base = _UNSPECIFIED_
    yield
    instance.version_base = before


def test_hydra_discovers_the_launcher_and_its_config_node():
    launchers = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)]
    assert "hydra_plugins.regbench_population.population_launcher.PopulationLauncher" in launchers
    assert f"{LAUNCHER}.yaml" in ConfigStore.instance().list("hydra/launcher")


@pytest.mark.parametrize(("launcher_name", "overrides"), [(LAUNCHER, []), (LAUNCHER, [FAKE])])
class TestPopulationLauncher(LauncherTestSuite):
    """Hydra's launcher suite, without a batcher (Hydra's BasicLauncher) and with the fake one
    (its jobs have no ``group``: each runs alone, through this launcher's own code)."""


@pytest.mark.parametrize(
    ("task_launcher_cfg", "extra_flags"),
    [
        (
            {
                "defaults": [
                    {"override hydra/launcher": LAUNCHER},
                    {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"},
                ]
            },
            ["-m", FAKE],
        )
    ],
)
class TestPopulationLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: apps in subprocesses, from their own directory."""

    @pytest.fixture(autouse=True)
    def _fake_batcher_importable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


def app_task(cfg: DictConfig) -> dict[str, Any]:
    """The app's own task function: jobs the batcher cannot take run through it."""
    job = int(HydraConfig.get().job.num)
    (Path(HydraConfig.get().runtime.output_dir) / "app.txt").write_text(str(job))
    return {"path": "app", "x": cfg.x, "job": job}


@pytest.fixture
def sweep(hydra_sweep_runner, hydra_restore_singletons, tmp_path: Path):
    """``sweep(*overrides)``: the app's --multirun with the fake batcher, sweep dir tmp/sweep."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "config.yaml").write_text(APP_CONFIG)

    def run(*overrides: str):
        return hydra_sweep_runner(
            calling_file=str(app / "app.py"),
            calling_module=None,
            task_function=app_task,
            config_path=".",
            config_name="config",
            overrides=[f"hydra/launcher={LAUNCHER}", FAKE, *overrides],
            temp_dir=tmp_path / "sweep",
        )

    return run


def calls(sweep_dir: Path) -> list[dict[str, Any]]:
    """What each train_group call saw, in call order."""
    lines = (sweep_dir / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def expected_return(ret, population: int) -> dict[str, Any]:
    """What job ``ret`` must return, from its own overrides: a job with a group is trained by
    the batcher in a population of ``population``, one without by the app."""
    values = dict(o.split("=", 1) for o in ret.overrides)
    x, job = int(values["x"]), int(ret.hydra_cfg.hydra.job.num)
    if values.get("group", "null") == "null":
        return {"path": "app", "x": x, "job": job}
    return {"path": "batched", "trained_x": x, "x": x, "job": job, "of": population}


def test_groups_train_together_and_returns_keep_the_job_order(sweep, capsys):
    with sweep("x=1,2", "group=a,b,null") as s:
        log = capsys.readouterr().out
        assert "Launching 6 jobs locally: 2 populations, 2 one at a time" in log
        assert "population of 2: jobs #0, #3 (2 x 1000 MB, memory_mb 4096): fake group a" in log
        assert "one at a time: job #5: no `group` key" in log
        returns = s.returns[0]
        order = [[f"x={x}", f"group={g}"] for x in (1, 2) for g in ("a", "b", "null")]
        assert [r.overrides for r in returns] == order  # the sweeper's order of job_overrides
        assert [r.hydra_cfg.hydra.job.num for r in returns] == list(range(6))
        assert [r.return_value for r in returns] == [expected_return(r, 2) for r in returns]
        seen = calls(Path(s.temp_dir))
        assert [c["jobs"] for c in seen] == [[0, 3], [1, 4]]  # group a, then group b
        assert [c["hydra_job"] for c in seen] == [0, 1]  # the first job's HydraConfig is set
        for call in seen:
            dirs = [returns[j].hydra_cfg.hydra.runtime.output_dir for j in call["jobs"]]
            assert call["dirs"] == dirs  # the directories run_job then gave the jobs
            assert call["where"] == dirs[0]  # ${hydra:runtime.output_dir} resolved
        for ret in returns:
            verify_dir_outputs(ret, ret.overrides)  # .hydra/{config,overrides}.yaml saved
            marker = "batched.txt" if ret.return_value["path"] == "batched" else "app.txt"
            out = Path(ret.hydra_cfg.hydra.runtime.output_dir)
            assert (out / marker).read_text() == str(ret.hydra_cfg.hydra.job.num)


@pytest.mark.parametrize(
    ("memory_mb", "chunks"),
    [
        (2500, [[0, 1], [2, 3], [4]]),
        (2999, [[0, 1], [2, 3], [4]]),  # 3 x 1000 MB would not fit
        (5000, [[0, 1, 2, 3, 4]]),
        (999, [[0], [1], [2], [3], [4]]),  # a member larger than memory_mb still runs
    ],
)
def test_a_group_is_split_into_chunks_that_fit_memory_mb(sweep, memory_mb, chunks):
    # 5 jobs of one group, 1000 MB each: at most memory_mb // 1000 per chunk, at least one.
    with sweep("x=0,1,2,3,4", "group=a", f"hydra.launcher.memory_mb={memory_mb}") as s:
        assert [c["jobs"] for c in calls(Path(s.temp_dir))] == chunks
        size = {job: len(chunk) for chunk in chunks for job in chunk}
        returns = s.returns[0]
        assert [r.return_value for r in returns] == [
            expected_return(r, size[i]) for i, r in enumerate(returns)
        ]


def test_a_job_alone_in_its_group_runs_through_the_app(sweep):
    with sweep("x=0", "group=a,b") as s:
        assert [r.return_value["path"] for r in s.returns[0]] == ["app", "app"]
        assert not (Path(s.temp_dir) / "calls.jsonl").exists()


def test_dry_run_prints_the_plan_and_runs_nothing(sweep, capsys):
    overrides = ("x=1,2,3", "group=a,null", "hydra.launcher.memory_mb=2000")
    with sweep(*overrides, "hydra.launcher.dry_run=true") as s:
        assert s.returns == [[]]
        assert sorted(p.name for p in Path(s.temp_dir).iterdir()) == ["multirun.yaml"]
    plan = """\
population of 2: jobs #0, #2 (chunk 1/2 of 3, 2 x 1000 MB, memory_mb 2000): fake group a
\t#0 : x=1 group=a
\t#2 : x=2 group=a
one at a time: job #1: no `group` key
\t#1 : x=1 group=null
one at a time: job #3: no `group` key
\t#3 : x=2 group=null
population of 1: job #4 (chunk 2/2 of 3, 1 x 1000 MB, memory_mb 2000): fake group a
\t#4 : x=3 group=a
one at a time: job #5: no `group` key
\t#5 : x=3 group=null
"""
    assert plan in capsys.readouterr().out


def test_a_failed_population_fails_its_jobs_and_the_sweep_goes_on(sweep, tmp_path):
    with pytest.raises(RuntimeError, match="fake training failed"):
        with sweep("x=0,1", "group=a,null", "fail=true"):
            pass  # Hydra's sweeper raises the first failed job's error once all have run
    sweep_dir = tmp_path / "sweep"
    assert [c["jobs"] for c in calls(sweep_dir)] == [[0, 2]]
    for job in (0, 2):  # run_job recorded the failed jobs: their directories and .hydra/
        assert (sweep_dir / str(job) / ".hydra" / "overrides.yaml").exists()
    for job in (1, 3):  # the jobs without a group ran after the failure
        assert (sweep_dir / str(job) / "app.txt").read_text() == str(job)


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("hydra.launcher.memory_mb=0", ValueError, "hydra.launcher.memory_mb=0.0: expected a"),
        ("hydra.launcher.memory_mb=-5", ValueError, "hydra.launcher.memory_mb=-5.0: expected a"),
        (
            "hydra.launcher.batcher=tests.no_such_batcher",
            ImportError,
            "hydra.launcher.batcher=tests.no_such_batcher: cannot import it",
        ),
        (
            "hydra.launcher.batcher=json",
            ImportError,
            "hydra.launcher.batcher=json: the module lacks group_key, member_memory_mb, train",
        ),
    ],
)
def test_bad_settings_are_one_line_before_any_job_runs(sweep, tmp_path, override, error, message):
    with pytest.raises(error, match=message):
        with sweep("x=0,1", "group=a", override):
            pass
    assert not (tmp_path / "sweep" / "0").exists()


def test_the_error_line_is_all_hydra_prints(tmp_path):
    # A CompactHydraException: Hydra prints the message, not a traceback.
    (tmp_path / "config.yaml").write_text(APP_CONFIG)
    (tmp_path / "app.py").write_text(
        "import hydra\n\n"
        "@hydra.main(version_base='1.3', config_path='.', config_name='config')\n"
        "def main(cfg):\n    return None\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    cmd = [sys.executable, "app.py", "-m", f"hydra/launcher={LAUNCHER}", "x=0,1"]
    done = subprocess.run(
        [*cmd, "hydra.launcher.memory_mb=0"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "hydra.launcher.memory_mb=0.0: expected a positive number of MB"
    assert "Traceback" not in done.stderr


def test_bench_train_dry_run_with_the_population_preset(tmp_path):
    # conf/hydra/launcher/population.yaml in our app; no batcher here, so every job is alone.
    done = run_cli(
        "--multirun",
        "hydra/launcher=population",
        "hydra.launcher.batcher=null",
        "hydra.launcher.dry_run=true",
        "seed=0,1",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for job, seed in enumerate((0, 1)):
        assert f"one at a time: job #{job}: hydra.launcher.batcher is null" in done.stdout
        assert f"\t#{job} : seed={seed}" in done.stdout
    (sweep_dir,) = (tmp_path / "out" / "multiruns").iterdir()
    assert [p.name for p in sweep_dir.iterdir()] == ["multirun.yaml"]  # no job directories


def test_job_numbers_reads_as_ranges():
    jobs = [Job(num, [], DictConfig({})) for num in (0, 1, 2, 3, 6, 8, 9)]
    assert job_numbers(jobs) == "#0-#3, #6, #8-#9"
