"""Figure 1: what regbench costs per training step, against a hand-written PyTorch loop.

Both sides train one network (the same state dict), with the same Adam settings, on the same
pre-built batches: as many per epoch as the real dataset has (the last one short), validated on
the real validation size after every full epoch, as a run does. regbench's side is built the way
``bench.train.assemble`` builds a run — a composed ``conf/train.yaml``, ``build_network``,
``build_trainer`` (default callbacks, a resumable checkpoint every epoch, CSV + wandb offline) —
and fits inside the run's signal guard. A third side, plain Lightning (a minimal module, every
Trainer extra off), shows how much of the cost is Lightning's own.

A Trainer fits once, so every fit gets a fresh one, built outside the timed region. ``fit`` also
has a fixed cost (loggers starting, the final checkpoint): it is measured as a 1-step fit and
taken out, so the ratio compares the other ``steps - 1`` steps, (t_N - t_1) / (t_N - t_1)_hand,
and the note gives the extra milliseconds per step and the extra fixed cost of a fit. The figure
runs on CPU with ``--threads`` threads (default 1) whatever ``--device`` says: on a GPU the
question is host-device synchronisation, which figure 7 counts.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import nn

from perf.common import Result, Timing, seconds

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
FIGURE = "1 overhead"
EXTRA_MS_TARGET = 0.3  # the target for the extra milliseconds per step
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Size:
    """A network and data size: the real dataset's split sizes, its config name."""

    name: str
    dataset: str  # conf/dataset/<dataset>.yaml: names the run (wandb), nothing is loaded
    input_shape: tuple[int, ...]
    n_train: int
    n_val: int
    target: float  # the ratio target


SIZES = (
    Size("MNIST MLP", "mnist", (1, 28, 28), 54000, 6000, 1.10),
    Size("digits MLP", "digits", (1, 8, 8), 1293, 144, 1.3),
)
# Sides measured against the hand loop: regbench's config overrides, or None for plain Lightning.
VARIANTS: dict[str, list[str] | None] = {
    "defaults (CSV + wandb offline, bar)": ["trainer.enable_progress_bar=true"],
    "lean (logger=none, no bar)": ["logger=none", "trainer.enable_progress_bar=false"],
    "plain Lightning, no extras": None,
}


class Loader:
    """A list of batches that Lightning reads as one loader (a bare list would be several)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)


class FixedData(L.LightningDataModule):
    """The batches both sides read: synthetic standardized inputs, 10 classes, fixed seed; an
    epoch as long as the real split's (its last batch short), drawn from a pool of 32 distinct
    batches so that the MNIST size stays small in memory."""

    task = "classification"
    num_outputs = 10
    target_std = 1.0

    def __init__(self, size: Size, batch_size: int = 128, eval_batch_size: int = 2048) -> None:
        super().__init__()
        self.input_shape = size.input_shape
        gen = torch.Generator().manual_seed(0)

        def batch(n: int) -> Batch:
            x = torch.randn(n, *size.input_shape, generator=gen)
            return x, torch.randint(0, self.num_outputs, (n,), generator=gen)

        full, rest = divmod(size.n_train, batch_size)
        pool = [batch(batch_size) for _ in range(min(full, 32))]
        epoch = [pool[i % len(pool)] for i in range(full)] + ([batch(rest)] if rest else [])
        self.train = Loader(epoch)
        starts = range(0, size.n_val, eval_batch_size)
        self.val = Loader([batch(min(eval_batch_size, size.n_val - s)) for s in starts])

    def train_dataloader(self) -> Loader:
        return self.train

    def val_dataloader(self) -> Loader:
        return self.val


# ------------------------------------------------------------------ the hand-written side
def hand_fit(model: nn.Module, optimizer: Callable, data: FixedData, steps: int) -> dict:
    """The loop a user writes: train ``steps`` steps, validate after every full epoch; the epoch's
    training loss summed on the device, as regbench's epoch mean is. Returns losses and counts."""
    opt = optimizer(params=model.parameters())
    losses: list[torch.Tensor] = []
    step, validations = 0, 0
    model.train()
    while True:
        total = torch.zeros(())
        for x, y in data.train:
            if step == steps:
                return {"losses": losses, "validations": validations}
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total += loss.detach()
            losses.append(loss.detach())
            step += 1
        model.eval()
        with torch.no_grad():
            val_loss, val_acc = torch.zeros(()), torch.zeros(())
            for x, y in data.val:
                out = model(x)
                val_loss += F.cross_entropy(out, y, reduction="sum")
                val_acc += (out.argmax(-1) == y).sum()
        model.train()
        validations += 1


# ------------------------------------------------------------------ regbench's side
def regbench_trainer(
    cfg: DictConfig, data: FixedData, state: dict, steps: int, run_dir: Path
) -> tuple[L.LightningModule, L.Trainer]:
    """A run's module and Trainer (``bench.build``), from ``state``, to stop after ``steps``."""
    from bench.build import build_network, build_trainer

    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.run_dir = str(run_dir)
        # A finite epoch limit as in a run (max_epochs=30), the same for every fit so that a
        # 1-step and an N-step fit differ only by their steps; max_steps ends both.
        cfg.trainer.max_steps, cfg.trainer.max_epochs = steps, 10_000
    model, regularizers = build_network(cfg, data, int(cfg.seed))
    model.load_state_dict(state)
    return build_trainer(cfg, data, model, regularizers)


class PlainModule(L.LightningModule):
    """The least a Lightning user writes: the loss, validation metrics logged per epoch."""

    def __init__(self, model: nn.Module, optimizer: Callable) -> None:
        super().__init__()
        self.model, self.optimizer = model, optimizer

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        out = self.model(x)
        self.log("val/loss", F.cross_entropy(out, y), batch_size=len(x))
        self.log("val/acc", (out.argmax(-1) == y).float().mean(), batch_size=len(x))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(params=self.parameters())


class Recorder(L.Callback):
    """Per-step losses and validation count of a fit, for the equality check (untimed runs)."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.validations = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach())

    def on_validation_end(self, trainer, pl_module) -> None:
        self.validations += 1


# ------------------------------------------------------------------ one comparison
class Sides:
    """Builds (untimed) one fit of either side, runs it (timed) and cleans up (untimed)."""

    def __init__(self, size: Size, overrides: list[str] | None, workdir: Path) -> None:
        self.data = FixedData(size)
        self.overrides, self.workdir = overrides, workdir
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):  # as make_cfg
            overrides = [f"dataset={size.dataset}", "trainer.accelerator=cpu", *(overrides or [])]
            self.cfg = compose("train", overrides=overrides)
        from bench.build import build_network

        self.reference, _ = build_network(self.cfg, self.data, int(self.cfg.seed))
        self.state = copy.deepcopy(self.reference.state_dict())
        self.optimizer = instantiate(self.cfg.optimizer)  # Adam, lr 1e-3, as conf/optimizer

    def ours(self, steps: int, recorder: Recorder | None = None) -> tuple[Callable, Callable]:
        """(fit, cleanup) for regbench's side (or plain Lightning's)."""
        if self.overrides is None:
            model = copy.deepcopy(self.reference)
            model.load_state_dict(self.state)
            module, run_dir = PlainModule(model, self.optimizer), None
            trainer = L.Trainer(
                accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=False,
                enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0,
            )  # fmt: skip
        else:
            run_dir = Path(tempfile.mkdtemp(dir=self.workdir))
            module, trainer = regbench_trainer(self.cfg, self.data, self.state, steps, run_dir)
        if recorder is not None:
            trainer.callbacks.append(recorder)

        def fit() -> None:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # the bar
                trainer.fit(module, datamodule=self.data)

        def cleanup() -> None:  # the wandb run finished as a run finishes it, after fit
            from bench.loggers.wandb import WandbLogger

            for lg in trainer.loggers:
                if isinstance(lg, WandbLogger):
                    lg.close("completed")
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)

        return fit, cleanup

    def hand(self, steps: int) -> tuple[Callable, Callable]:
        model = copy.deepcopy(self.reference)
        model.load_state_dict(self.state)
        box: dict[str, Any] = {}

        def fit() -> None:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # symmetric
                box.update(hand_fit(model, self.optimizer, self.data, steps))

        return fit, lambda: box

    def check(self, steps: int) -> None:
        """Both sides produce the same losses (1e-5) and validate as often: same work timed."""
        recorder = Recorder()
        fit, cleanup = self.ours(steps, recorder)
        fit()
        cleanup()
        fit, result = self.hand(steps)
        fit()
        hand = result()
        ours_l, hand_l = torch.stack(recorder.losses), torch.stack(hand["losses"])
        if ours_l.shape != hand_l.shape or not torch.allclose(ours_l, hand_l, rtol=0, atol=1e-5):
            diff = (ours_l - hand_l).abs().max() if ours_l.shape == hand_l.shape else "shape"
            raise AssertionError(f"overhead: regbench's losses differ from the hand loop's: {diff}")
        if recorder.validations != hand["validations"]:
            raise AssertionError(
                f"overhead: {recorder.validations} validations vs {hand['validations']} by hand"
            )


def time_fits(sides: Sides, steps: int, reps: int, warmups: int) -> dict[str, list[float]]:
    """Wall and process-CPU seconds of 1-step and ``steps``-step fits of both sides, alternating
    which side goes first (``perf.common.alternate`` times whole calls, but a fresh Trainer must
    be built outside the timed region). Keys: ``ours1``, ``oursN``, ``hand1``, ``handN`` (wall)
    and the same with ``cpu:`` in front."""
    times: dict[str, list[float]] = {}
    for k in range(warmups + reps):
        order = ("ours", "hand") if k % 2 == 0 else ("hand", "ours")
        for side in order:
            for n, key in ((1, f"{side}1"), (steps, f"{side}N")):
                fit, cleanup = getattr(sides, side)(n)
                cpu = time.process_time()
                wall = seconds(fit)
                cpu = time.process_time() - cpu
                cleanup()
                if k >= warmups:
                    times.setdefault(key, []).append(wall)
                    times.setdefault(f"cpu:{key}", []).append(cpu)
    return times


def marginal(times: dict[str, list[float]], side: str, prefix: str = "") -> list[float]:
    """Per repetition: seconds of the ``steps - 1`` steps after the first (t_N - t_1)."""
    pairs = zip(times[f"{prefix}{side}N"], times[f"{prefix}{side}1"], strict=True)
    return [n - one for n, one in pairs]


def result(size: Size, variant: str, steps: int, times: dict[str, list[float]]) -> Result:
    ours, hand = marginal(times, "ours"), marginal(times, "hand")
    per_step = [(o - h) / (steps - 1) * 1e3 for o, h in zip(ours, hand, strict=True)]
    extra_ms = statistics.median(per_step)
    fixed_ms = statistics.median(
        (o - h) * 1e3 for o, h in zip(times["ours1"], times["hand1"], strict=True)
    )
    # Process CPU time is less disturbed by other work on a shared machine (but blind to I/O
    # waits such as a checkpoint's fsync): a cross-check of the wall-clock ratio.
    cpu = Timing(marginal(times, "ours", "cpu:"), marginal(times, "hand", "cpu:"))
    regbench = VARIANTS[variant] is not None  # the targets are regbench's, not Lightning's
    met = (extra_ms <= EXTRA_MS_TARGET) if regbench else None
    verdict = {True: ", met", False: ", **missed**", None: ""}[met]
    note = f"{extra_ms:+.2f} ms/step{verdict}"
    note += f" (target ≤ {EXTRA_MS_TARGET:g} ms)" if regbench else " (Lightning's own)"
    note += f"; fit's fixed cost {fixed_ms:+.0f} ms"
    return Timing(ours, hand).result(
        FIGURE,
        f"{size.name}, {steps} steps on CPU ({torch.get_num_threads()} thr.): {variant}",
        overhead=True,
        target=size.target if regbench else None,
        note=note,
        extra={
            "extra_ms_per_step": extra_ms,
            "extra_ms_per_step_range": [min(per_step), max(per_step)],
            "extra_ms_per_step_target": EXTRA_MS_TARGET if regbench else None,
            "extra_ms_per_step_met": met,
            "hand_ms_per_step": statistics.median(hand) / (steps - 1) * 1e3,
            "fit_fixed_ms": fixed_ms,
            "whole_fit_ratio": statistics.median(
                o / h for o, h in zip(times["oursN"], times["handN"], strict=True)
            ),
            "cpu_ratio": statistics.median(cpu.ratios(overhead=True)),
            "threads": torch.get_num_threads(),
            "seconds": times,
        },
    )


def run(args: Any) -> list[Result]:
    """Six rows: both sizes × (defaults, lean, plain Lightning); ``--quick``: 50 steps."""
    from bench.quiet import quiet_libraries
    from bench.resume.signals import guarded

    steps = 50 if args.quick else 200
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or 1)
    quiet_libraries()
    os.environ.setdefault("WANDB_SILENT", "true")
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # "`Trainer.fit` stopped: `max_steps` reached" × 100
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp, guarded():
            for size in SIZES:
                for variant, overrides in VARIANTS.items():
                    sides = Sides(size, overrides, Path(tmp))
                    sides.check(steps)
                    times = time_fits(sides, steps, args.reps, args.warmups)
                    results.append(result(size, variant, steps, times))
    finally:
        torch.set_num_threads(threads)
        lightning_log.setLevel(level)
    return results
