"""The fast paths of the performance issue: divergence checked without a per-step host sync,
a time-throttled progress bar, channels_last and torch.compile switches that change no result."""

from __future__ import annotations

import pytest

from bench.callbacks.progress import ThrottledProgressBar
from bench.divergence import ACCELERATOR_EVERY, DivergenceWatch, check_every
from bench.train import run
from tests.conftest import make_cfg

QUIET = ["evaluation.ood.partners=[]", "evaluation.shift.corruptions=[]", "evaluation.plots=false"]
NAN_AT_4 = ["+regularizer.nan._target_=tests.faults.NanAt", "+regularizer.nan.step=4"]


def test_check_interval_defaults_to_every_step_on_cpu_only():
    import torch

    assert check_every(None, torch.device("cpu")) == 1
    assert check_every(None, torch.device("cuda")) == ACCELERATOR_EVERY
    assert check_every(7, torch.device("cpu")) == 7


def test_the_watch_keeps_the_first_non_finite_step():
    import torch

    watch = DivergenceWatch()
    assert watch.first() is None
    for step, value in enumerate([1.0, 2.0, float("nan"), float("inf"), 3.0]):
        watch.note(torch.tensor(value), epoch=1, step=step)
    assert watch.first() == (1, 2)


@pytest.mark.parametrize("every", [1, 3])
def test_a_nan_at_step_4_is_diverged_at_step_4_and_stops_within_one_check(
    tmp_path, every, monkeypatch
):
    reads = []
    real_first = DivergenceWatch.first
    monkeypatch.setattr(DivergenceWatch, "first", lambda self: reads.append(1) or real_first(self))
    record = run(make_cfg(tmp_path, *QUIET, *NAN_AT_4, f"check_finite_every={every}"))
    assert record["status"] == "diverged"
    assert record["diverged_at"] == {"epoch": 1, "step": 4}
    # every=1: the NaN step itself is skipped and nothing is noted on the device or read back;
    # every=3: noted at step 4 on the device, read back after steps 2 and 5 (global_step 3 and
    # 6: found — training stops within that one check) and once more at the epoch's end.
    assert len(reads) == (0 if every == 1 else 3)


def test_the_bar_redraws_at_most_every_interval_and_always_at_the_end(monkeypatch):
    clock = iter([0.0, 0.1, 0.2, 0.3, 0.31, 0.4, 0.6])
    monkeypatch.setattr("bench.callbacks.progress.time.monotonic", lambda: next(clock))
    bar = ThrottledProgressBar(interval=0.25)
    drawn = [bar._should_update(n, 7) for n in range(1, 8)]
    # t=0.0 draws (long since the last), 0.1/0.2 not, 0.3 yes, 0.31 not, 0.4 not, end yes.
    assert drawn == [True, False, False, True, False, False, True]


def test_channels_last_changes_no_result(tmp_path):
    base = ["model=cnn", "trainer.max_epochs=2", *QUIET]
    plain = run(make_cfg(tmp_path / "plain", *base))
    nhwc = run(make_cfg(tmp_path / "nhwc", *base, "channels_last=true"))
    for key in ("test/acc", "test/loss", "val/loss"):
        assert nhwc["metrics"][key] == pytest.approx(plain["metrics"][key], rel=1e-4), key


@pytest.mark.slow
def test_compile_changes_no_result(tmp_path):
    base = ["trainer.max_epochs=2", *QUIET]
    plain = run(make_cfg(tmp_path / "plain", *base))
    compiled = run(make_cfg(tmp_path / "compiled", *base, "compile=true"))
    for key in ("test/acc", "test/loss", "val/loss"):
        assert compiled["metrics"][key] == pytest.approx(plain["metrics"][key], rel=1e-4), key
