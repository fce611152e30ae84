"""Figure 7: GPU — a resnet18 CIFAR-size epoch through regbench against a hand loop, its fast
switches, MC dropout, and the host synchronisations a training step costs. One short run.

- an epoch through regbench (``model=resnet18 dataset=cifar10``, crop+flip by the ``augment``
  regularizer; ``build_network`` + ``build_trainer`` + ``Trainer.fit`` with their callbacks, a
  CSV logger and checkpoints) vs an airbench-style hand loop (augmentation on the device, the
  same network, optimizer, batches and validation pass), fp32: ≥ 0.8×;
- ``trainer.precision=bf16-mixed channels_last=true`` vs fp32 through regbench: ≥ 1.5×, and
  ``compile=true`` on top of that vs without: ≥ 1.1×;
- MC dropout (figure 4's sampler, resnet18 with head dropout) vs T sequential passes: ≥ 10×;
- host synchronisations per steady-state training step, counted by ``torch.profiler``: at
  most the non-finite check's, one read per ``check_finite_every`` steps.

CIFAR-10's files are used when found under ``dataset.data_dir``, else random images of its
shapes. With ``--device cpu`` every row runs at tiny sizes (8×8 images, a few steps) as a smoke
test: its ratios are no GPU figure, so their targets stay empty and their note says pending.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from bench.build import build, build_network, build_trainer
from bench.data.vision import CIFAR10DataModule
from bench.divergence import ACCELERATOR_EVERY
from bench.models.resnet18 import ResNet18
from bench.quiet import quiet_libraries
from bench.regularizers.dropout import Dropout
from bench.train import CONF_DIR
from perf import mc
from perf.common import Result, alternate, seconds

FIGURE = "7 GPU"
PENDING = "pending: no GPU; CPU smoke at tiny sizes"
# What the profiler shows for a host-device synchronisation, and, on a CPU, the call that
# would be one on a GPU (``.item()``, ``bool(tensor)``, ``float(tensor)`` all end in it).
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
SCALAR_READ = "aten::_local_scalar_dense"


@dataclass(frozen=True)
class Sizes:
    pool: int  # CIFAR-10's official training set; val_fraction 0.1 of it validates
    test: int
    side: int
    batch: int
    mc_samples: int
    mc_batch: int
    skip_steps: int  # steps before the profiled ones (start-up is not steady state)
    profiled_steps: int


FULL = Sizes(50000, 10000, side=32, batch=128, mc_samples=50, mc_batch=256,
             skip_steps=10, profiled_steps=ACCELERATOR_EVERY)  # fmt: skip
GPU_QUICK = Sizes(10000, 1000, side=32, batch=128, mc_samples=50, mc_batch=256,
                  skip_steps=10, profiled_steps=ACCELERATOR_EVERY)  # fmt: skip
TINY = Sizes(128, 32, side=8, batch=16, mc_samples=10, mc_batch=16, skip_steps=2, profiled_steps=5)


class SyntheticCIFAR10(CIFAR10DataModule):
    """CIFAR-10's splits and pipeline on random uint8 images: timing needs no real pixels."""

    def __init__(self, sizes: Sizes, **kwargs) -> None:
        self.pool_size, self.official_test_size = sizes.pool, sizes.test
        self.input_shape = (3, sizes.side, sizes.side)
        super().__init__(**kwargs)

    def check_files(self) -> None:
        """No files to check."""

    def load_arrays(self) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(0)
        pool, test = self.pool_size, self.official_test_size
        x = rng.integers(0, 256, (pool + test, *self.input_shape), dtype=np.uint8)
        y = rng.integers(0, 10, pool + test)
        return x[:pool], y[:pool], x[pool:], y[pool:]


def base_overrides(sizes: Sizes, device: torch.device) -> list[str]:
    """resnet18 on CIFAR-10, crop (4 px) + flip on the training device, one epoch, quiet."""
    no = "rotation_degrees", "brightness", "contrast", "cutout_size"
    return [
        "model=resnet18",
        "dataset=cifar10",
        f"dataset.batch_size={sizes.batch}",
        "regularizer=[augment]",
        *[f"regularizer.augment.{key}=0" for key in no],
        "logger=csv",
        "trainer.max_epochs=1",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        "trainer.enable_progress_bar=false",
    ]


def composed(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def datamodule(
    cfg: DictConfig, sizes: Sizes, device: torch.device
) -> tuple[L.LightningDataModule, str]:
    """The real CIFAR-10 at full size when its files are there, else random images; loaded
    onto ``device`` as a Trainer there would (so neither side pays the copy)."""
    real = CIFAR10DataModule(data_dir=cfg.dataset.data_dir)
    if sizes == FULL and not real.missing_files():
        dm, what = build(cfg.dataset, "dataset"), "CIFAR-10"
    else:
        node = OmegaConf.to_container(cfg.dataset, resolve=True)
        node.pop("_target_")
        dm, what = SyntheticCIFAR10(sizes, **node), f"random {sizes.side}×{sizes.side} images"
    dm.setup("fit")
    dm.tensors = {k: (x.to(device), y.to(device)) for k, (x, y) in dm.tensors.items()}
    return dm, what


def regbench_fit(cfg: DictConfig, dm: L.LightningDataModule, callbacks=()) -> Callable[[], None]:
    """A fresh network, module and Trainer from ``cfg`` fitted on ``dm``, in a fresh run dir."""

    def fit() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            run_cfg = copy.deepcopy(cfg)
            with open_dict(run_cfg):
                run_cfg.paths.run_dir = str(Path(tmp) / "run")
            model, regularizers = build_network(run_cfg, dm, run_cfg.seed)
            module, trainer = build_trainer(run_cfg, dm, model, regularizers)
            trainer.callbacks.extend(callbacks)
            trainer.fit(module, datamodule=dm)

    return fit


def crop_flip(x: torch.Tensor, pad: int) -> torch.Tensor:
    """airbench's whole-epoch augmentation: each image flipped with probability 1/2, then
    translated by up to ``pad`` px (zero fill) — one masked copy per row shift, then per column
    shift, so every copy is a contiguous slice."""
    n, c, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    padded = F.pad(torch.where(flip[:, None, None, None], x.flip(-1), x), (pad,) * 4)
    rows, cols = torch.randint(2 * pad + 1, (2, n), device=x.device)
    tmp = torch.empty(n, c, h, w + 2 * pad, device=x.device, dtype=x.dtype)
    out = torch.empty_like(x)
    for s in range(2 * pad + 1):
        tmp[rows == s] = padded[rows == s, :, s : s + h, :]
    for s in range(2 * pad + 1):
        out[cols == s] = tmp[cols == s, :, :, s : s + w]
    return out


def hand_fit(cfg: DictConfig, dm: L.LightningDataModule, device: torch.device) -> Callable:
    """The same epoch written by hand: fp32, no framework, the loss never leaves the GPU."""
    pad = round(dm.input_shape[-1] / 8)  # what augment's crop_padding=auto resolves to
    (x, y), (x_val, y_val) = dm.tensors["train"], dm.tensors["val"]

    def fit() -> torch.Tensor:
        torch.manual_seed(cfg.seed)
        model = ResNet18(tuple(dm.input_shape), dm.num_outputs).to(device)
        optimizer = instantiate(cfg.optimizer)(params=model.parameters())
        model.train()
        xa = crop_flip(x, pad)
        order = torch.randperm(len(x), device=device)
        for start in range(0, len(x), dm.batch_size):
            idx = order[start : start + dm.batch_size]
            loss = F.cross_entropy(model(xa[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        total = torch.zeros(2, device=device)
        with torch.no_grad():
            for start in range(0, len(x_val), dm.eval_batch_size):
                out = model(x_val[start : start + dm.eval_batch_size])
                yb = y_val[start : start + dm.eval_batch_size]
                correct = (out.argmax(-1) == yb).sum().float()
                total += torch.stack([F.cross_entropy(out, yb, reduction="sum"), correct])
        return total

    return fit


@dataclass
class Setup:
    """What every row of one run shares."""

    args: argparse.Namespace
    device: torch.device
    sizes: Sizes
    base: list[str]  # the overrides every composed config starts from
    dm: L.LightningDataModule
    note: str

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def sync(self) -> Callable[[], None] | None:
        return torch.cuda.synchronize if self.on_gpu else None

    def fit(self, *overrides: str, callbacks=()) -> Callable[[], None]:
        return regbench_fit(composed(self.base + list(overrides)), self.dm, callbacks)

    def row(self, ours: Callable, baseline: Callable, name: str, goal: float, **extra) -> Result:
        """ours vs baseline, alternated; the target only on a GPU (a CPU ratio is no figure)."""
        a = self.args
        timing = alternate(ours, baseline, a.reps, a.warmups, self.sync)
        target = goal if self.on_gpu else None
        extra = {"sizes": vars(self.sizes), **extra}
        return timing.result(
            FIGURE, name, overhead=False, target=target, note=self.note, extra=extra
        )


def epoch_rows(s: Setup) -> list[Result]:
    """regbench vs the hand loop; bf16-mixed + channels_last vs fp32; compile vs not."""
    cfg = composed(s.base)
    fp32, hand = regbench_fit(cfg, s.dm), hand_fit(cfg, s.dm, s.device)
    fast = ["trainer.precision=bf16-mixed", "channels_last=true"]
    rows = [
        s.row(fp32, hand, "resnet18 epoch, fp32: regbench vs airbench-style hand loop", 0.8),
        s.row(s.fit(*fast), fp32, "bf16-mixed + channels_last vs fp32, through regbench", 1.5),
    ]
    name = "compile=true vs false, both bf16-mixed + channels_last"
    if not s.on_gpu:
        nan, why = float("nan"), "pending: no GPU; compiling resnet18 on 2 CPU cores takes minutes"
        return rows + [Result(FIGURE, name, nan, nan, nan, note=why)]
    compiled = s.fit(*fast, "compile=true")
    first = seconds(compiled, s.sync)  # the first fit compiles; later ones reuse the graphs
    return rows + [s.row(compiled, s.fit(*fast), name, 1.1, first_fit_s=first)]


def mc_rows(s: Setup) -> list[Result]:
    """Figure 4's batched sampler vs T sequential passes, on resnet18 with head dropout (all
    blocks before the head run once) and with conv dropout (all blocks after the stem sample)."""
    side, rows = s.sizes.side, []
    x = torch.randn(s.sizes.mc_batch, 3, side, side, device=s.device)
    for label, p_conv, goal in (("head dropout", 0.0, 10.0), ("p_conv=0.1", 0.1, None)):
        torch.manual_seed(0)
        dropout = Dropout(p_input=0.0, p_dense=0.5, p_conv=p_conv)
        net = dropout.configure_model(ResNet18((3, side, side), 10))
        note = f"T={s.sizes.mc_samples}, batch {s.sizes.mc_batch}"
        note += "" if s.on_gpu else f"; {PENDING}"
        targets = {"sequential": goal if s.on_gpu else None}
        rows += mc.run_model(
            f"MC dropout, resnet18 {label}", net, x, s.sizes.mc_samples, s.args,
            figure=FIGURE, targets=targets, note=note, variants=("sequential",),
        )  # fmt: skip
    return rows


class StepProfiler(L.Callback):
    """``torch.profiler`` over training steps [skip, skip + steps): the steady state only."""

    def __init__(self, skip: int, steps: int, device: torch.device) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.skip, self.steps = skip, steps
        self.profile = torch.profiler.profile(activities=activities)
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.profile.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.skip + self.steps - 1:
            self.profile.stop()
            self.done = True

    def counts(self) -> dict[str, int]:
        """Sync events by name, and scalar reads outside ``Optimizer.step``: Adam reads its
        per-parameter step counters, which torch keeps on the CPU, so they never sync."""
        if not self.done:
            raise RuntimeError(f"the epoch ended before step {self.skip + self.steps}")
        counts: dict[str, int] = {}
        for event in self.profile.events():
            if event.name == SCALAR_READ:
                parent = event.cpu_parent
                while parent is not None and not parent.name.startswith("Optimizer.step"):
                    parent = parent.cpu_parent
                name = SCALAR_READ + (" in Optimizer.step" if parent is not None else "")
            elif event.name in SYNC_EVENTS:
                name = event.name
            else:
                continue
            counts[name] = counts.get(name, 0) + 1
        return counts


def sync_row(s: Setup, bar: bool) -> Result:
    """Host synchronisations per steady-state training step of a regbench fit.

    On a GPU the non-finite check reads every ``ACCELERATOR_EVERY`` steps (its default there);
    on a CPU it reads every step, so the smoke run sets the interval to the profiled steps to
    exercise the same path: one read per window.
    """
    on_gpu, sizes = s.on_gpu, s.sizes
    every = ACCELERATOR_EVERY if on_gpu else sizes.profiled_steps
    steps = sizes.skip_steps + sizes.profiled_steps
    overrides = [
        f"trainer.enable_progress_bar={str(bar).lower()}",
        f"++trainer.limit_train_batches={steps}",
        "++trainer.limit_val_batches=0",
        f"check_finite_every={every}",
    ]
    profiler = StepProfiler(sizes.skip_steps, sizes.profiled_steps, s.device)
    start = time.perf_counter()
    s.fit(*overrides, callbacks=[profiler])()
    fit_s = time.perf_counter() - start
    counts = profiler.counts()
    found = sum(counts.get(k, 0) for k in SYNC_EVENTS) if on_gpu else counts.get(SCALAR_READ, 0)
    per_step = found / sizes.profiled_steps
    why = f"a count, not a ratio; the non-finite check reads every {every} steps"
    if not on_gpu:
        why += f"; on CPU: aten::item calls outside the optimizer, each a sync on a GPU; {PENDING}"
    return Result(
        FIGURE,
        f"host syncs per training step, progress bar {'on' if bar else 'off'}",
        per_step, per_step, per_step,
        target=1 / every if on_gpu else None,
        higher_is_better=False,
        note=why,
        extra={"events": counts, "profiled_steps": sizes.profiled_steps, "fit_s": fit_s},
    )  # fmt: skip


def run(args: argparse.Namespace) -> list[Result]:
    quiet_libraries()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    sizes = (GPU_QUICK if args.quick else FULL) if device.type == "cuda" else TINY
    base = base_overrides(sizes, device)
    dm, data = datamodule(composed(base), sizes, device)
    note = f"{data}, batch {sizes.batch}" + ("" if device.type == "cuda" else f"; {PENDING}")
    s = Setup(args, device, sizes, base, dm, note)
    return epoch_rows(s) + mc_rows(s) + [sync_row(s, bar) for bar in (False, True)]
