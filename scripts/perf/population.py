"""Figures 8–10: population training — the compatible jobs of a sweep trained as one batched
program (``hydra/launcher=population``, ``bench.population``) — against one job at a time, and
against a hand-written batched loop of the same maths.

- 8 pop-sweep: a digits-MLP sweep of 100 jobs (``'regularizer=[l2]'``, 5 strengths × seeds
  0..19, 300 training images, 30 epochs, the default loggers) through ``bench-train --multirun``
  with the population launcher and with the basic one: whole processes, wall clock with start-up,
  evaluation, records and leaderboards; both must complete every job (the largest test-loss
  difference between a job's two records is kept). The basic sweep takes minutes, so the figure
  is one repetition (``--quick``: 5 jobs, 2 epochs).
- 9 pop-uci: a UCI-sized population in-process — diabetes, an MLP [50], ``[dropout, l2]`` on a
  12-point grid (``p_dense`` × strength, ``p_input=0``) × 20 ``dataset.split_seed`` = 240 members,
  400 epochs at batch 32. ``train_group`` (training) and its task functions (evaluation and
  records) are timed apart. One at a time (``bench.train.run`` per job) is timed on a few members
  spread over the grid and extrapolated to all of them: each timed job gives one ratio. The hand
  loop (``population_loop.py``) trains the same networks on the same batches with no framework;
  an untimed check first trains both with dropout (the one random part) off and compares every
  member's validation loss. ``--quick``: 12 members, 10 epochs.
- 10 pop-gpu: both on CUDA (``--device cuda``); without one its rows say so and are skipped.

Every side runs with the defaults a user gets (``trainer.precision=32-true``, the default loggers,
torch's threads unless ``--threads``), the progress bar off (a population has none), and the CPU
figures on the CPU whatever ``--device`` says.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

from perf import common
from perf.common import Result, Timing
from perf.population_loop import HandLoop

REPO = Path(__file__).resolve().parents[2]
SWEEP, UCI, GPU = "8 pop-sweep", "9 pop-uci", "10 pop-gpu"
STRENGTHS = ("1e-5", "1e-4", "1e-3", "1e-2", "1e-1")
P_DENSE = (0.005, 0.01, 0.05, 0.1)  # Gal & Ghahramani's UCI dropout grid
L2 = (1e-4, 1e-3, 1e-2)
# (sweep seeds, sweep epochs, UCI splits, UCI epochs, single UCI jobs timed)
FULL, QUICK = (20, 30, 20, 400, 4), (1, 2, 1, 10, 1)
Sync = Callable[[], None] | None


def accelerator(device: str) -> str:
    return f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Each job's result lines to /dev/null, on both sides alike (240 of them otherwise)."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield


# ------------------------------------------------------------------ 8: whole sweeps
def sweep_rows(args: argparse.Namespace, device: str, figure: str, target: float | None):
    """The population launcher's sweep against the basic launcher's, one repetition each."""
    seeds, epochs = (QUICK if args.quick else FULL)[:2]
    jobs = len(STRENGTHS) * seeds
    overrides = ["regularizer=[l2]", f"regularizer.l2.strength={','.join(STRENGTHS)}",
                 f"seed={','.join(map(str, range(seeds)))}", "dataset.train_size=300",
                 f"trainer.max_epochs={epochs}", accelerator(device)]  # fmt: skip
    if args.threads:
        overrides.append(f"threads={args.threads}")
    with tempfile.TemporaryDirectory(prefix="regbench-pop-sweep-") as name:
        out = {launcher: Path(name) / launcher for launcher in ("population", "basic")}
        logs: dict[str, str] = {}

        def sweep(launcher: str) -> Callable[[], None]:
            cmd = [sys.executable, "-m", "bench.train", "--multirun", f"hydra/launcher={launcher}"]

            def whole() -> None:
                logs[launcher] = common.process(cmd + overrides, REPO, out[launcher])

            return whole

        timing = common.alternate(sweep("population"), sweep("basic"), reps=1, warmups=0)
        plan = re.search(r"Launching \d+ jobs locally: (.*)", logs["population"])
        extra = {"jobs": jobs, "epochs": epochs, "plan": plan.group(1) if plan else None}
        extra |= same_records(out["population"], out["basic"], jobs)
    note = f"{jobs} jobs, {epochs} epochs, {device}, 1 repetition; {extra['plan']}"
    name = "sweep, population launcher vs basic launcher (whole bench-train --multirun)"
    return [timing.result(figure, name, overhead=False, target=target, note=note, extra=extra)]


def same_records(ours: Path, basic: Path, jobs: int) -> dict[str, Any]:
    """Both sweeps completed every job, on the same networks: the largest test-loss difference
    between a job's two records (matched by strength and seed)."""
    loss: dict[tuple, float] = {}
    for side, root in (("ours", ours), ("basic", basic)):
        for path in root.glob("multiruns/*/*/results.json"):
            r = json.loads(path.read_text())
            strength = r["config"]["regularizer"]["l2"]["strength"]
            if r["status"] == "completed":
                loss[(side, strength, r["seed"])] = r["metrics"]["test/loss"]
    done = {side: sum(key[0] == side for key in loss) for side in ("ours", "basic")}
    if done != {"ours": jobs, "basic": jobs}:
        raise RuntimeError(f"pop-sweep: expected {jobs} completed jobs per sweep, found {done}")
    diffs = [abs(v - loss[("basic", *key[1:])]) for key, v in loss.items() if key[0] == "ours"]
    return {"max_test_loss_diff": max(diffs)}


# ------------------------------------------------------------------ 9: the UCI population
def uci_configs(splits: int, epochs: int, device: str, *extra: str) -> list[DictConfig]:
    """Every member's composed config: grid point × split, as a multirun composes them."""
    from hydra import compose, initialize_config_dir

    base = ["dataset=diabetes", "model=mlp", "model.widths=[50]", "regularizer=[dropout,l2]",
            "regularizer.dropout.p_input=0", "dataset.batch_size=32",
            f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false",
            accelerator(device)]  # fmt: skip
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return [
            compose("train", [*base, f"regularizer.dropout.p_dense={p}",
                              f"regularizer.l2.strength={s}", f"dataset.split_seed={k}", *extra])
            for k in range(splits) for s in L2 for p in P_DENSE
        ]  # fmt: skip


def in_dirs(configs: list[DictConfig], root: Path) -> list[DictConfig]:
    """Copies of ``configs``, each with its own fresh run directory under ``root``."""
    out = []
    for k, cfg in enumerate(configs):
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.paths.run_dir = str(root / f"job{k}")
        out.append(cfg)
    return out


def population(configs: list[DictConfig], root: Path, sync: Sync) -> tuple[float, float, float]:
    """Seconds of ``train_group`` (training), of its task functions (evaluation, records), and
    of ``Trainer.fit`` alone (the records' ``timing.fit_s``)."""
    from bench.population.train import train_group

    cfgs = in_dirs(configs, root)
    tasks: list = []
    with quiet():
        train = common.seconds(lambda: tasks.extend(train_group(cfgs)), sync)
        finish = common.seconds(lambda: [t(c) for t, c in zip(tasks, cfgs, strict=True)], sync)
    record = json.loads((Path(cfgs[0].paths.run_dir) / "results.json").read_text())
    return train, finish, record["timing"]["fit_s"]


def check_hand_loop(device: str, root: Path) -> float:
    """Dropout off (the one random part), 4 members on 2 splits, 3 epochs: every member's
    validation loss in the population's records and in the hand loop agree (relative 1e-4)."""
    from bench.population.train import train_group

    off = ("regularizer.dropout.p_dense=0", "regularizer.dropout.mc=false")  # nothing to sample
    cfgs = in_dirs(uci_configs(2, 3, device, *off)[::6], root)
    hand = HandLoop(cfgs, device).fit()
    with quiet():
        for task, cfg in zip(train_group(cfgs), cfgs, strict=True):
            task(cfg)
    records = [json.loads((Path(c.paths.run_dir) / "results.json").read_text()) for c in cfgs]
    ours = torch.tensor([r["metrics"]["val/loss"] for r in records], dtype=torch.float64)
    diff = float(((ours - hand).abs() / hand).max())
    if not diff < 1e-4:
        raise AssertionError(f"pop-uci: the hand loop's val losses differ by {diff:.2e} (rel.)")
    return diff


def one_at_a_time(configs: list[DictConfig], n: int, root: Path, sync: Sync) -> list[dict]:
    """``bench.train.run`` on ``n`` members spread over the grid: wall seconds, and the record's
    set-up + fit. After an untimed 1-epoch run (wandb's service, lazy imports), and before any
    population in this process (after one, a run's wandb fails to start: it would be cheaper)."""
    from bench.train import run

    picked = [configs[k * (len(configs) - 1) // max(1, n - 1)] for k in range(n)]
    jobs = in_dirs([configs[0], *picked], root)
    with open_dict(jobs[0]):
        jobs[0].trainer.max_epochs = 1
    timed = []
    for cfg in jobs:
        timing: dict[str, float] = {}
        with quiet():
            wall = common.seconds(lambda c=cfg, t=timing: t.update(run(c)["timing"]), sync)
        timed.append({"wall": wall, "train": timing["setup_s"] + timing["fit_s"]})
    return timed[1:]


def alternated(configs: list[DictConfig], reps: int, root: Path, device: str, sync: Sync):
    """Population and hand loop, ``reps`` rounds, alternating which goes first. Seconds by key:
    ``train``, ``finish``, ``fit`` (the population's, as :func:`population`) and ``hand``."""
    hand = HandLoop(configs, device)
    times: dict[str, list[float]] = {"train": [], "finish": [], "fit": [], "hand": []}
    for k in range(reps):
        for side in ("pop", "hand") if k % 2 == 0 else ("hand", "pop"):
            if side == "hand":
                times["hand"].append(common.seconds(hand.fit, sync))
                continue
            seconds = population(configs, root / f"{k}", sync)
            for key, t in zip(("train", "finish", "fit"), seconds, strict=True):
                times[key].append(t)
    return times


def uci_rows(args: argparse.Namespace, device: str, figure: str, goals: tuple[float, float]):
    """Population vs one at a time (training; everything), and vs the hand loop (training).
    No warm-up rounds: the check and the single jobs before them run every code path once, and
    a round takes minutes at full size (at most 3 rounds)."""
    splits, epochs, n_single = (QUICK if args.quick else FULL)[2:]
    sync = torch.cuda.synchronize if device == "cuda" else None
    configs = uci_configs(splits, epochs, device)
    m, reps = len(configs), 1 if args.quick else min(args.reps, 3)
    with tempfile.TemporaryDirectory(prefix="regbench-pop-uci-") as name:
        one = one_at_a_time(configs, n_single, Path(name) / "single", sync)
        diff = check_hand_loop(device, Path(name) / "check")
        times = alternated(configs, reps, Path(name) / "population", device, sync)
    ours = {
        "train": times["train"],
        "wall": [a + b for a, b in zip(times["train"], times["finish"], strict=True)],
    }
    extra = {"members": m, "epochs": epochs, "threads": torch.get_num_threads(), "seconds": times,
             "single_jobs": one, "check_max_rel_diff": diff}  # fmt: skip
    note = f"{m} members, {epochs} epochs, {device}; one at a time: {n_single} jobs timed, × {m}"
    rows = []
    for what, key in (("training", "train"), ("training + evaluation + records", "wall")):
        pop = statistics.median(ours[key])
        r = [job[key] * m / pop for job in one]  # one ratio per timed single job
        rows.append(Result(
            figure, f"UCI population vs one at a time ({what})", statistics.median(r), min(r),
            max(r), target=goals[0], ours_s=pop, note=note, extra=extra,
            baseline_s=statistics.median(job[key] * m for job in one)))  # fmt: skip
    fit_alone = statistics.median(Timing(times["fit"], times["hand"]).ratios(overhead=True))
    note = f"{m} members, {epochs} epochs, {device}; Trainer.fit alone {fit_alone:.2f}×"
    vs_hand = Timing(times["train"], times["hand"]).result(
        figure, "UCI population training vs a hand-written batched loop", overhead=True,
        target=goals[1], note=note, extra=extra | {"fit_alone_ratio": fit_alone})  # fmt: skip
    return [*rows, vs_hand]


# ------------------------------------------------------------------ entry points
def quiet_logs() -> None:
    from bench.quiet import quiet_libraries

    quiet_libraries()
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "max_epochs reached"


def run_sweep(args: argparse.Namespace) -> list[Result]:
    return sweep_rows(args, "cpu", SWEEP, 5.0)


def run_uci(args: argparse.Namespace) -> list[Result]:
    quiet_logs()
    return uci_rows(args, "cpu", UCI, (10.0, 1.5))


def run_gpu(args: argparse.Namespace) -> list[Result]:
    if args.device != "cuda":
        nan, why = math.nan, "no GPU: --device cuda runs it"
        names = ("sweep, population launcher vs basic launcher (whole bench-train --multirun)",
                 "UCI population vs one at a time (training)",
                 "UCI population vs one at a time (training + evaluation + records)",
                 "UCI population training vs a hand-written batched loop")  # fmt: skip
        return [Result(GPU, name, nan, nan, nan, note=why) for name in names]
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    quiet_logs()
    return sweep_rows(args, "cuda", GPU, None) + uci_rows(args, "cuda", GPU, (50.0, 1.5))
