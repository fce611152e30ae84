"""Figure 3: sweep throughput — the default benchmark through ``bench-train --multirun`` against
the same trainings in a hand-written PyTorch loop, and joblib's parallel jobs against one.

Both sides are whole processes, alternated, each with its imports (lightning + hydra for
regbench, torch for the loop): the sweep's wall time is what a user waits for.

- regbench: ``--multirun experiment=benchmark +grid=<points> seed=0`` (csv logger, 100 epochs on
  300 digits, the full final evaluation, checkpoints, leaderboards at the end);
- plain: ``plain_loop.py`` on the very tensors regbench trains on, with the settings read from
  the same composed configs: same MLP, Adam, batch size, epochs, shuffling, validation every
  epoch, train/val/test scored at the end — but none of the extra evaluation (temperature
  scaling, MC dropout, OOD, dataset shift; figure 6 measures that), checkpoints or logs;
- joblib (``hydra/launcher=parallel hydra.launcher.n_jobs=2``, ``threads=1`` each) against the
  basic launcher with ``threads=2``: the same sweep, the same cores.

The grid points are those with a hand-written version in ``plain_loop.py`` (one strength per
method; early_stopping, elastic_net, augment and cutmix are left out), seed 0. The whole
benchmark (33 points x 3 seeds) takes minutes per repetition. ``--quick`` keeps three points at
10 epochs and times one round without a warm-up: for a whole process a warm-up only fills the
page cache, and the smoke run must stay short.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from perf import common
from perf.common import Result, Timing, alternate

REPO = Path(__file__).resolve().parents[2]
FIGURE = "3 sweep"
POINTS = (
    "none",
    "l2_1e-3",
    "weight_decay_1",
    "l1_1e-4",
    "max_norm_0.5",
    "dropout_0.5",
    "input_noise_1.0",
    "label_smoothing_0.05",
    "mixup_0.1",
)
QUICK_POINTS = ("none", "l2_1e-3", "dropout_0.5")
QUICK_EPOCHS = 10  # --quick: a smoke run, not the benchmark's 100 epochs
# The launcher comparison: an even number of jobs for two workers, the default 30 epochs (the
# basic launcher's two threads per process make it slow on a shared 2-core machine).
JOBLIB_POINTS = ("none", "l2_1e-3", "dropout_0.5", "mixup_0.1")
JOBLIB_EPOCHS = 30
PLAIN_KEYS = {  # what plain_loop.py reads of each regularizer (these grid points set no other)
    "l2": ("strength",),
    "weight_decay": ("strength",),
    "l1": ("strength", "mode"),
    "max_norm": ("max_norm",),
    "dropout": ("p_input", "p_dense"),
    "input_noise": ("std",),
    "label_smoothing": ("epsilon",),
    "mixup": ("alpha",),
}


def compose_points(points: tuple[str, ...], epochs: int | None) -> list[Any]:
    """The composed config of each grid point, exactly as the multirun composes it."""
    from hydra import compose, initialize_config_dir

    extra = [f"trainer.max_epochs={epochs}"] if epochs else []
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return [
            compose("train", ["experiment=benchmark", f"+grid={p}", "seed=0", *extra])
            for p in points
        ]


def write_spec(points: tuple[str, ...], epochs: int | None, tmp: Path, threads: int) -> Path:
    """The plain loop's input: the training tensors and every point's settings, from the configs."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfgs = compose_points(points, epochs)
    base = cfgs[0]
    if base.optimizer._target_ != "torch.optim.Adam" or base.model.activation != "relu":
        raise SystemExit("perf.sweep: plain_loop.py writes out Adam and a relu MLP only")
    datamodule = instantiate(base.dataset)
    datamodule.setup("fit")
    torch.save({k: (x.cpu(), y.cpu()) for k, (x, y) in datamodule.tensors.items()}, tmp / "data.pt")
    (tmp / "plain").mkdir()
    opt = OmegaConf.to_container(base.optimizer)
    spec: dict[str, Any] = {
        "data": str(tmp / "data.pt"),
        "out": str(tmp / "plain"),
        "threads": threads,
        "epochs": int(base.trainer.max_epochs),
        "batch_size": int(base.dataset.batch_size),
        "widths": list(base.model.widths),
        "classes": int(datamodule.num_classes),
        "adam": {k: opt[k] for k in ("lr", "betas", "eps", "weight_decay")},
        "points": [],
    }
    for name, cfg in zip(points, cfgs, strict=True):
        regs = {}
        for key, node in cfg.regularizer.items():
            if key not in PLAIN_KEYS or node.get("params", "weights") != "weights":
                raise SystemExit(f"perf.sweep: plain_loop.py has no version of {name}")
            regs[key] = {k: node[k] for k in PLAIN_KEYS[key]}
        spec["points"].append({"name": name, "seed": int(cfg.seed), "regularizers": regs})
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def process(cmd: list[str], out: Path | None = None) -> str:
    return common.process(cmd, REPO, out)


def sweep_cmd(points: tuple[str, ...], epochs: int | None, *extra: str) -> list[str]:
    grid = ",".join(points)
    more = [f"trainer.max_epochs={epochs}"] if epochs else []
    return [sys.executable, "-m", "bench.train", "--multirun", "experiment=benchmark",
            f"+grid={grid}", "seed=0", *more, *extra]  # fmt: skip


def run(args: argparse.Namespace) -> list[Result]:
    # One thread per process unless --threads says otherwise: on a small shared machine two
    # threads per process oversubscribe the cores (10x slower here, on both sides alike).
    threads = args.threads or 1
    warmups = 0 if args.quick else args.warmups  # a smoke run; see the module docstring
    points, epochs = (QUICK_POINTS, QUICK_EPOCHS) if args.quick else (POINTS, None)
    which = f"{len(points)} grid points, seed 0, {epochs or 100} epochs, {threads} thread"
    with tempfile.TemporaryDirectory(prefix="regbench-sweep-") as name:
        tmp, load = Path(name), os.getloadavg()[0]
        spec = write_spec(points, epochs, tmp, threads)
        out = tmp / "out"
        regbench = sweep_cmd(points, epochs, f"threads={threads}")
        plain = [sys.executable, str(Path(__file__).with_name("plain_loop.py")), str(spec)]
        vs_plain = alternate(
            lambda: process(regbench, out), lambda: process(plain), args.reps, warmups
        )
        same = compare_records(out, spec)

        jpoints, jepochs = (points[:2], epochs) if args.quick else (JOBLIB_POINTS, JOBLIB_EPOCHS)
        joblib = sweep_cmd(jpoints, jepochs, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                           "threads=1")  # fmt: skip
        basic = sweep_cmd(jpoints, jepochs, "threads=2")
        parallel = alternate(
            lambda: process(joblib, out), lambda: process(basic, out), args.reps, warmups
        )
    loads = {"load_before": load, "load_after": os.getloadavg()[0]}
    return [
        vs_plain.result(
            FIGURE,
            "benchmark multirun vs the same trainings in a hand-written loop",
            overhead=True,
            target=1.2,
            note=f"{which}; the loop skips the evaluation's extras",
            extra=per_run(vs_plain, len(points)) | same | loads | {"points": list(points)},
        ),
        parallel.result(
            FIGURE,
            "joblib 2 jobs x 1 thread vs basic launcher with 2 threads (speed-up)",
            overhead=False,
            note=f"{len(jpoints)} grid points, {jepochs or 100} epochs",
            extra=per_run(parallel, len(jpoints)) | loads | {"points": list(jpoints)},
        ),
    ]


def compare_records(out: Path, spec: Path) -> dict[str, Any]:
    """Evidence that both sides trained the same networks: the largest test-loss difference
    between a grid point's regbench record and its plain one (matched by regularizers)."""
    ours = {}
    for path in out.glob("multiruns/*/*/results.json"):
        record = json.loads(path.read_text())
        ours[tuple(sorted(record["regularizers"]))] = record["metrics"]["test/loss"]
    plan = json.loads(spec.read_text())
    diffs = []
    for point in plan["points"]:
        plain = Path(plan["out"]) / f"{point['name']}-s{point['seed']}.json"
        theirs = json.loads(plain.read_text())["test"]["loss"]
        diffs.append(abs(ours[tuple(sorted(point["regularizers"]))] - theirs))
    return {"max_test_loss_diff": max(diffs), "runs": len(diffs)}


def per_run(timing: Timing, n: int) -> dict[str, float]:
    """Median seconds per grid point on each side (imports included, spread over the points)."""
    return {
        "ours_s_per_run": statistics.median(timing.ours) / n,
        "baseline_s_per_run": statistics.median(timing.baseline) / n,
    }
