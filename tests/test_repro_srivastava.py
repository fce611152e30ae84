"""Srivastava et al. (2014), Table 9: the experiment configs are the paper's protocol, and the
five-row sweep runs end to end through ``bench-train --multirun``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from tests.conftest import CONF_DIR, SHARED_TORCHVISION, run_cli, sweep_records

FULL, CPU = "srivastava2014_mnist", "srivastava2014_mnist_cpu"
# Table 9 of the paper (test error, %), and what each row regularizes with in our terms.
TABLE9 = {
    "l2": (1.62, {"l2"}),
    "l2+l1": (1.60, {"l2", "l1"}),
    "max-norm": (1.35, {"max_norm"}),
    "dropout+l2": (1.25, {"dropout", "l2"}),
    "dropout+max-norm": (1.05, {"dropout", "max_norm"}),
}
ROWS = sorted(p.stem for p in (CONF_DIR / "srivastava2014").glob("*.yaml"))
PAPER_LAYERS = [784, 1024, 1024, 2048, 10]  # 784-1024-1024-2048-10

needs_mnist = pytest.mark.skipif(
    not (SHARED_TORCHVISION / "MNIST" / "raw").is_dir(),
    reason=f"offline MNIST copy not found at {SHARED_TORCHVISION}",
)


def composed(experiment: str, *overrides: str, hydra: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "train", overrides=[f"experiment={experiment}", *overrides], return_hydra_config=hydra
        )


def linear_widths(cfg: DictConfig) -> list[int]:
    """In- and out-features of the network the config builds for MNIST, layer after layer."""
    model = instantiate(cfg.model, input_shape=(1, 28, 28), num_outputs=10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return [linears[0].in_features, *(m.out_features for m in linears)]


def test_the_sweep_runs_exactly_the_five_rows_of_table_9():
    cfg = composed(FULL, hydra=True)
    assert cfg.hydra.sweeper.params == {"srivastava2014": "glob(*)"}
    rows = [composed(FULL, f"srivastava2014={row}").published.row for row in ROWS]
    assert sorted(rows) == sorted(TABLE9)
    assert cfg.published.row == "dropout+max-norm"  # a single run: the paper's best row


@pytest.mark.parametrize("experiment", [FULL, CPU])
@pytest.mark.parametrize("row", ROWS)
def test_each_row_is_the_papers_network_and_regularizers(experiment: str, row: str):
    cfg = composed(experiment, f"srivastava2014={row}")
    regularizers = TABLE9[cfg.published.row][1]
    assert cfg.dataset._target_ == "bench.data.vision.MNISTDataModule"
    assert linear_widths(cfg) == PAPER_LAYERS and cfg.model.activation == "relu"
    assert cfg.dataset.batch_size == 100
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.momentum == 0.95
    assert set(cfg.regularizer) == regularizers
    for node in cfg.regularizer.values():
        instantiate(node)  # valid settings
    if "dropout" in regularizers:
        assert cfg.regularizer.dropout.p_input == 0.2  # B.1: retain 0.8 of the inputs
        assert cfg.regularizer.dropout.p_dense == 0.5  # and 0.5 of the hidden units
    if "max_norm" in regularizers:
        assert 3.0 <= cfg.regularizer.max_norm.max_norm <= 4.0  # Appendix A.3's range


def test_published_block_is_the_same_in_every_row_but_its_row():
    blocks = []
    for row in ROWS:
        block = OmegaConf.to_container(composed(FULL, f"srivastava2014={row}").published)
        assert block.pop("row") in TABLE9
        blocks.append(block)
    assert all(block == blocks[0] for block in blocks)
    first = blocks[0]
    assert first["table"] == "srivastava2014-table9" and first["spread"] == "none"
    assert first["runs"] == {} and first["n"] is None
    assert set(first["figures"]) == set(TABLE9)
    for row, (percent, _) in TABLE9.items():
        assert first["figures"][row] == {"test/error": pytest.approx(percent / 100)}


def test_the_full_budget_is_about_a_million_updates_on_a_gpu():
    cfg = composed(FULL)
    assert cfg.trainer.accelerator == "gpu"
    datamodule = instantiate(cfg.dataset)
    per_epoch = math.ceil(datamodule.split_sizes()["train"] / cfg.dataset.batch_size)
    assert per_epoch == 540  # 54,000 training images (6,000 kept for validation)
    assert abs(cfg.trainer.max_epochs * per_epoch - 1_000_000) < per_epoch  # Appendix B.1


def test_the_cpu_config_changes_the_budget_and_nothing_of_the_protocol():
    """Only the accelerator, the epochs, the decay per epoch (the same total decay) and the
    extra evaluation sets may differ from the full config."""
    for row in ROWS:
        full = flat(composed(FULL, f"srivastava2014={row}"))
        cpu = flat(composed(CPU, f"srivastava2014={row}"))
        changed = {k for k in full.keys() | cpu.keys() if full.get(k) != cpu.get(k)}
        assert changed == {
            "trainer.accelerator",
            "trainer.max_epochs",
            "scheduler.gamma",
            "evaluation.shift.corruptions",
            "evaluation.ood.partners",
            "evaluation.plots",
        }
        assert cpu["trainer.accelerator"] == "cpu"
    full, cpu = composed(FULL), composed(CPU)
    total = full.scheduler.gamma**full.trainer.max_epochs
    assert math.isclose(cpu.scheduler.gamma**cpu.trainer.max_epochs, total, rel_tol=0.02)


def flat(cfg: DictConfig) -> dict[str, object]:
    """The config as dotted keys → leaf values (lists as tuples), interpolations unresolved."""
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            out[prefix] = tuple(node) if isinstance(node, list) else node

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


@pytest.mark.slow
@needs_mnist
def test_the_five_row_sweep_runs_and_records_its_row(tmp_path: Path):
    """The reduced config as a user runs it, shrunk to 1 epoch on 300 images: each of the five
    jobs trains its row's regularizers and records the published block with its row."""
    proc = run_cli(
        "--multirun",
        f"experiment={CPU}",
        "threads=1",
        "trainer.max_epochs=1",
        "dataset.train_size=300",
        "dataset.val_fraction=0.02",
        cwd=tmp_path,
        env={"BENCH_DATA_DIR": str(SHARED_TORCHVISION)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sweep_records(tmp_path)]
    assert len(records) == len(TABLE9)
    seen = set()
    for record in records:
        assert record["status"] == "completed"
        published = record["config"]["published"]
        row = published["row"]
        seen.add(row)
        assert set(record["regularizers"]) == TABLE9[row][1]
        assert published["figures"][row]["test/error"] == pytest.approx(TABLE9[row][0] / 100)
        for key in ("test/acc", "test/loss"):
            assert math.isfinite(record["metrics"][key]), (row, key)
        assert 0.0 <= record["metrics"]["test/acc"] <= 1.0
        assert record["epochs"] == 1 and record["config"]["model"]["widths"] == [1024, 1024, 2048]
    assert seen == set(TABLE9)
