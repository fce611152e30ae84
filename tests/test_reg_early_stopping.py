"""Early stopping: the stopping rule, the restored weights, best.ckpt and the results fields."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.errors import ConfigError
from bench.module import BenchModule
from bench.regularizers.early_stopping import EarlyStopping
from bench.train import run


def textbook_rule(
    values: list[float], patience: int, min_delta: float, mode: str = "min"
) -> tuple[int | None, int | None]:
    """(index of the best check, index of the check that stops or None), written out from the
    definition: a check improves iff it beats the best so far by more than min_delta; training
    stops at the patience-th check in a row without improvement."""
    sign = 1.0 if mode == "min" else -1.0
    best, best_i, wait = math.inf, None, 0
    for i, v in enumerate(values):
        if sign * v < best - min_delta:
            best, best_i, wait = sign * v, i, 0
        else:
            wait += 1
            if wait >= patience:
                return best_i, i
    return best_i, None


# --- the rule, on a scripted metric, in a bare Lightning trainer -----------------------------
class Scripted(L.LightningModule):
    """A model whose one weight equals the (1-based) epoch, validated with a scripted metric."""

    def __init__(self, series: list[float], monitor: str) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.series, self.monitor = series, monitor

    def on_train_epoch_start(self) -> None:
        with torch.no_grad():
            self.w.fill_(self.current_epoch + 1)

    def training_step(self, batch, batch_idx):
        return (self.w * 0).sum()

    def validation_step(self, batch, batch_idx) -> None:
        self.log(self.monitor, self.series[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)


LOSSES = [1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7, 0.6, 0.65, 0.66, 0.67, 0.68, 0.69, 0.7]
ACCS = [0.5, 0.6, 0.61, 0.65, 0.64, 0.64, 0.66, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]


# expected = (best epoch, stop epoch), 1-based, worked out by hand from the definition.
@pytest.mark.parametrize(
    "series,monitor,min_delta,patience,every,expected",
    [
        (LOSSES, "val/loss", 0.02, 3, 1, (2, 5)),  # 0.79 is not below 0.8 − 0.02
        (LOSSES, "val/loss", 0.0, 3, 1, (8, 11)),  # now 0.79 counts, and so do 0.7, 0.6
        (LOSSES, "val/loss", 0.0, 20, 1, (8, None)),  # never stops
        (ACCS, "val/acc", 0.02, 2, 1, (4, 6)),  # mode max: 0.61 is not above 0.6 + 0.02
        # validation every 2nd epoch (checks 0.8, 0.79, 0.95, 0.6, 0.66, 0.68, 0.7): Lightning
        # then checks at validation end and patience counts checks, not epochs
        (LOSSES, "val/loss", 0.0, 2, 2, (8, 12)),
    ],
)
def test_restored_epoch_is_the_one_the_stopping_rule_counted(
    tmp_path: Path, series, monitor, min_delta, patience, every, expected
):
    mode = "min" if monitor == "val/loss" else "max"
    checked_epochs = list(range(every, len(series) + 1, every))  # 1-based
    best_i, stop_i = textbook_rule(
        [series[e - 1] for e in checked_epochs], patience, min_delta, mode
    )
    assert (
        checked_epochs[best_i],
        checked_epochs[stop_i] if stop_i is not None else None,
    ) == expected

    reg = EarlyStopping(monitor=monitor, patience=patience, min_delta=min_delta, mode=mode)
    module = Scripted(series, monitor)
    trainer = L.Trainer(
        max_epochs=len(series),
        callbacks=reg.callbacks(),
        logger=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=every,
    )
    trainer.fit(module)

    best_epoch, stopped_epoch = expected
    assert reg.summary(module) == {"best_epoch": best_epoch, "stopped_epoch": stopped_epoch}
    assert module.w.item() == best_epoch  # the weights of that epoch are back in the module
    assert trainer.current_epoch == (stopped_epoch or len(series))  # training really stopped
    if stopped_epoch is not None:
        assert stopped_epoch - best_epoch == patience * every
    ckpt = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["state_dict"]["w"].item() == best_epoch


# --- the real run: digits, tiny training set, learning rate high enough to overfit fast ------
class EpochStates(L.Callback):
    """Test-only: save the weights every validation saw, as ``<dirpath>/epoch_<k>.pt``."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.dirpath.mkdir(parents=True, exist_ok=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
            torch.save(state, self.dirpath / f"epoch_{trainer.current_epoch + 1}.pt")


OVERFIT = [
    "regularizer=[early_stopping]",
    "dataset.train_size=50",
    "optimizer.lr=3e-3",
    "trainer.max_epochs=60",
    "logger=csv",
]


def overfit_run(cfg_factory, run_dir: Path, *overrides: str) -> tuple[dict, DictConfig]:
    """Train with ``EpochStates`` recording every epoch's weights; return (record, config)."""
    cfg = cfg_factory(
        *OVERFIT,
        *overrides,
        f"+callbacks.epoch_states._target_={__name__}.EpochStates",
        f"+callbacks.epoch_states.dirpath={run_dir / 'epoch_states'}",
        run_dir=run_dir,
    )
    return run(cfg), cfg


def logged(run_dir: Path, key: str) -> list[float]:
    """One value per epoch (in epoch order) of ``key``, as the csv logger wrote it in training."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    assert [int(r["epoch"]) for r in rows] == list(range(len(rows)))
    return [float(r[key]) for r in rows]


def val_loss_series(run_dir: Path) -> list[float]:
    return logged(run_dir, "val/loss")


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("min_delta", [0.0, 0.06])
def test_stops_patience_epochs_after_the_best_and_evaluates_its_weights(
    cfg_factory, tmp_path: Path, min_delta: float
):
    patience = 3
    run_dir = tmp_path / "run"
    record, cfg = overfit_run(
        cfg_factory,
        run_dir,
        f"regularizer.early_stopping.patience={patience}",
        f"regularizer.early_stopping.min_delta={min_delta}",
    )
    series = val_loss_series(run_dir)
    best_i, stop_i = textbook_rule(series, patience, min_delta)
    assert stop_i is not None, f"val/loss never went up for {patience} epochs: {series}"
    best, stopped = record["best_epoch"], record["stopped_epoch"]
    assert (best, stopped) == (best_i + 1, stop_i + 1)
    assert stopped - best == patience
    assert record["epochs"] == stopped == len(series)
    if min_delta == 0.0:
        assert series[best - 1] == min(series)  # the plain argmin
    # What it did, in the training log: the best epoch so far and the epochs since.
    assert logged(run_dir, "early_stopping/best_epoch")[-1] == best
    assert logged(run_dir, "early_stopping/wait_count")[-1] == patience

    # The evaluated weights are the ones validated at best_epoch ...
    best_state = torch.load(run_dir / "epoch_states" / f"epoch_{best}.pt", weights_only=True)
    last_state = torch.load(run_dir / "epoch_states" / f"epoch_{stopped}.pt", weights_only=True)
    m = record["metrics"]
    assert m["val/loss"] == pytest.approx(series[best - 1], rel=1e-5)
    assert m["val/loss"] != pytest.approx(series[-1], rel=1e-3)
    model = instantiate(cfg.model, input_shape=(1, 8, 8), num_outputs=10)
    module = BenchModule(model, "classification", optimizer=torch.optim.SGD)
    module.load_state_dict(best_state)
    module.eval()
    dm = instantiate(cfg.dataset)
    dm.setup("fit")
    x, y = (torch.cat(t) for t in zip(*dm.test_dataloader(), strict=True))
    with torch.no_grad():
        test_loss = F.cross_entropy(module(x).double(), y).item()
    assert m["test/loss"] == pytest.approx(test_loss, rel=1e-5)

    # ... and best.ckpt holds exactly them (plain tensors: loads with weights_only=True), while
    # last.ckpt keeps the last epoch's weights.
    best_ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    last_ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert_same_state(best_ckpt["state_dict"], best_state)
    assert_same_state(last_ckpt["state_dict"], last_state)
    assert not torch.equal(best_state["model.1.0.weight"], last_state["model.1.0.weight"])


def test_never_triggered_gives_no_stop_and_still_restores_the_best(cfg_factory, tmp_path: Path):
    run_dir = tmp_path / "run"
    record, _ = overfit_run(cfg_factory, run_dir, "trainer.max_epochs=14")  # default patience 10
    series = val_loss_series(run_dir)
    assert len(series) == record["epochs"] == 14
    assert record["stopped_epoch"] is None
    best = record["best_epoch"]
    assert series[best - 1] == min(series)
    assert best < 14, f"this setting should overfit before epoch 14: {series}"
    best_ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    best_state = torch.load(run_dir / "epoch_states" / f"epoch_{best}.pt", weights_only=True)
    assert_same_state(best_ckpt["state_dict"], best_state)
    assert record["metrics"]["val/loss"] == pytest.approx(series[best - 1], rel=1e-5)


def test_default_run_writes_best_ckpt_and_top_level_fields(cfg_factory, tmp_path: Path):
    record = run(cfg_factory("regularizer=[early_stopping]"))
    assert record["regularizers"] == ["early_stopping"]
    assert record["config"]["regularizer"]["early_stopping"] == {
        "_target_": "bench.regularizers.early_stopping.EarlyStopping",
        "monitor": "val/loss",
        "patience": 10,
        "min_delta": 0.0,
        "mode": "min",
    }
    assert 1 <= record["best_epoch"] <= 3 and record["stopped_epoch"] is None
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


# --- configuration errors ------------------------------------------------------------------
@pytest.mark.parametrize(
    "override,key",
    [
        ("patience=0", "patience"),
        ("patience=2.5", "patience"),
        ("patience=true", "patience"),
        ("min_delta=-0.1", "min_delta"),
        ("min_delta=nan", "min_delta"),
        ("min_delta=inf", "min_delta"),
        ("monitor=train/loss", "monitor"),
        ("mode=max", "mode"),
        ("mode=sideways", "mode"),
    ],
)
def test_invalid_options_are_refused_with_the_full_key(cfg_factory, override: str, key: str):
    with pytest.raises(ConfigError) as err:
        run(cfg_factory("regularizer=[early_stopping]", f"regularizer.early_stopping.{override}"))
    msg = str(err.value)
    assert msg.startswith(f"regularizer.early_stopping.{key} must be ") and "\n" not in msg


def test_accuracy_monitor_needs_classification(cfg_factory):
    with pytest.raises(
        ConfigError,
        match=r"^regularizer\.early_stopping\.monitor=val/acc needs "
        r"a classification dataset, not dataset=diabetes$",
    ):
        run(
            cfg_factory(
                "regularizer=[early_stopping]",
                "dataset=diabetes",
                "regularizer.early_stopping.monitor=val/acc",
                "regularizer.early_stopping.mode=max",
            )
        )
