"""The benchmark's headline claim on a case small enough for CI: regularization narrows the
generalization gap (test risk − empirical risk, in nats, as ``gap/loss`` in results.json).

An MLP with ~85k weights on 300 digits images, trained for 150 epochs with Adam at lr 1e-2,
drives its training loss to ~0 while its test cross-entropy keeps growing (ever larger logits
on the images it gets wrong). L2 plus dropout on the hidden layers must keep it much smaller.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from bench.train import run

SEEDS = (0, 1, 2)
COMMON = ["dataset.train_size=300", "trainer.max_epochs=150", "optimizer.lr=1e-2"]
REGULARIZED = [
    "regularizer=[l2,dropout]",
    "regularizer.l2.strength=3e-3",
    "regularizer.dropout.p_dense=0.5",
]
MARGIN = 0.3  # nats, on the mean gap over the seeds


@pytest.mark.slow
def test_l2_and_dropout_shrink_the_generalization_gap(cfg_factory, tmp_path: Path):
    plain, regularized = [], []
    for seed in SEEDS:
        plain.append(
            run(cfg_factory(*COMMON, f"seed={seed}", run_dir=tmp_path / f"plain{seed}"))["metrics"]
        )
        regularized.append(
            run(
                cfg_factory(*COMMON, *REGULARIZED, f"seed={seed}", run_dir=tmp_path / f"reg{seed}")
            )["metrics"]
        )
    gap_plain = [m["gap/loss"] for m in plain]
    gap_reg = [m["gap/loss"] for m in regularized]
    summary = f"gap/loss without {gap_plain}, with l2+dropout {gap_reg}"
    # The unregularized network really overfits: it fits its training set almost exactly.
    assert max(m["train/loss"] for m in plain) < 0.01, summary
    assert statistics.mean(gap_plain) - statistics.mean(gap_reg) > MARGIN, summary
    assert all(r < p for p, r in zip(gap_plain, gap_reg, strict=True)), summary
    # A smaller gap by generalizing better, not by fitting nothing (a constant predictor has
    # gap 0): the regularized test loss is lower and its test accuracy stays high.
    assert all(r["test/loss"] < p["test/loss"] for p, r in zip(plain, regularized, strict=True))
    assert min(m["test/acc"] for m in regularized) > 0.9, summary
