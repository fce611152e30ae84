"""The results record's schema: building, validating and reading, without torch or numpy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.record import (
    SCHEMA_VERSION,
    RecordError,
    check,
    failed_record,
    interrupted_record,
    read_record,
    run_record,
    validate,
)

REPO = Path(__file__).resolve().parents[1]


def completed(**overrides) -> dict:
    kwargs = dict(
        dataset="digits",
        model="mlp",
        regularizers=["l2"],
        seed=3,
        epochs=30,
        metrics={"test/acc": 0.9, "test/loss": 0.3, "ts/temperature": 1.2},
        config={"seed": 3, "regularizer": {"l2": {"strength": 1e-4}}},
        wall_time_s=1.5,
        versions={"python": "3.11"},
        extras={"best_epoch": 30, "sparsity": 0.0},
    )
    return run_record(**{**kwargs, **overrides})


def legacy() -> dict:
    """A record exactly as bench/train.py wrote it before schema_version existed."""
    return {
        "status": "completed",
        "dataset": "digits",
        "model": "mlp",
        "regularizers": [],
        "seed": 0,
        "epochs": 30,
        "best_epoch": 30,
        "sparsity": 0.0,
        "metrics": {"train/loss": 0.01, "test/loss": 0.2, "gap/loss": 0.19},
        "wall_time_s": 1.4,
        "versions": {"python": "3.11"},
        "config": {"seed": 0},
    }


def test_run_record_is_valid_versioned_and_ordered():
    record = completed()
    assert validate(record) == []
    assert record["schema_version"] == SCHEMA_VERSION == 1
    assert record["status"] == "completed"
    # Extras sit between epochs and metrics, as README's table lists them.
    keys = list(record)
    assert keys.index("epochs") < keys.index("best_epoch") < keys.index("metrics")


def test_diverged_record_carries_where():
    record = completed(diverged_at={"epoch": 4, "step": 17}, metrics={"test/loss": math.nan})
    assert record["status"] == "diverged"
    assert record["diverged_at"] == {"epoch": 4, "step": 17}


def test_failed_record_may_lack_dataset_and_seed():
    record = failed_record(
        error="RuntimeError: boom",
        dataset=None,
        model="mlp",
        regularizers=[],
        seed=None,
        config={},
        wall_time_s=0.1,
        versions={},
    )
    assert validate(record) == []
    assert record["status"] == "failed" and record["metrics"] == {}


def test_interrupted_record_says_where_and_the_leaderboard_lists_it(tmp_path: Path):
    from bench.leaderboard.load import load_runs

    record = interrupted_record(
        signal="SIGUSR2",
        epoch=3,
        step=42,
        checkpoint="checkpoints/e0002-s00000042.ckpt",
        dataset="digits",
        model="mlp",
        regularizers=["l2"],
        seed=0,
        config={},
        wall_time_s=1.5,
        versions={},
    )
    assert validate(record) == [] and record["metrics"] == {}
    assert record["interrupted"] == {
        "signal": "SIGUSR2",
        "epoch": 3,
        "step": 42,
        "checkpoint": "checkpoints/e0002-s00000042.ckpt",
    }
    broken = {k: v for k, v in record.items() if k != "interrupted"}
    assert validate(broken) == ["missing field interrupted"]
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    runs, problems = load_runs([str(path)])
    assert runs == [] and [(p.kind, p.reason) for p in problems] == [
        ("interrupted", "interrupted by SIGUSR2 at epoch 3; run again to resume")
    ]


def test_legacy_record_without_schema_version_is_version_1():
    assert validate(legacy()) == []


@pytest.mark.parametrize(
    "mutate, phrase",
    [
        (lambda r: r.pop("metrics"), "missing field metrics"),
        (lambda r: (r.pop("seed"), r.pop("model")), "missing fields model, seed"),
        (lambda r: r.update(seed=True), "seed must be an integer"),
        (lambda r: r.update(status="finished"), "status must be one of"),
        (lambda r: r.update(regularizers="l2"), "regularizers must be a list"),
        (lambda r: r["metrics"].update({"test/acc": "0.9"}), "metrics must be numbers"),
        (lambda r: r["metrics"].update({"test/acc": True}), "metrics must be numbers"),
        (lambda r: r.update(schema_version=2), "newer than this reader"),
        (lambda r: r.update(status="diverged"), "needs diverged_at"),
        (lambda r: r.update(epochs=-1), "epochs must be an integer >= 0"),
    ],
)
def test_validate_names_each_problem(mutate, phrase):
    record = legacy()
    mutate(record)
    problems = validate(record)
    assert any(phrase in p for p in problems), problems
    with pytest.raises(RecordError, match="invalid results record"):
        check(record)


def test_builder_refuses_an_invalid_record():
    with pytest.raises(RecordError, match="seed must be an integer"):
        completed(seed="0")


def test_validate_rejects_non_objects():
    assert validate([1, 2]) == ["not a JSON object but a list"]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_record_reasons(tmp_path: Path):
    good = json.dumps(completed()).encode()
    assert read_record(write(tmp_path / "good.json", good))[0] == completed()
    cases = {
        "empty.json": (b"  \n", "empty file"),
        "truncated.json": (good[: len(good) // 2], "malformed JSON (truncated?)"),
        "binary.json": (b"\x80\x81 garbage", "not UTF-8"),
        "foreign.json": (b'{"name": "left-pad", "version": "1.0"}', "not a regbench record"),
        "list.json": (b"[1, 2, 3]", "not a JSON object"),
    }
    for name, (data, phrase) in cases.items():
        record, reason = read_record(write(tmp_path / name, data))
        assert record is None and phrase in reason, (name, reason)
    record, reason = read_record(tmp_path / "absent.json")
    assert record is None and reason.startswith("unreadable")


def test_records_written_by_bench_results_read_back(tmp_path: Path):
    """The writer turns a diverged run's NaN into null; the reader accepts it."""
    from bench.results import write_json_atomic

    record = completed(diverged_at={"epoch": 2, "step": 5}, metrics={"test/loss": math.inf})
    write_json_atomic(tmp_path / "results.json", record)
    back, reason = read_record(tmp_path / "results.json")
    assert reason is None and back["metrics"]["test/loss"] is None


def test_import_needs_no_torch_lightning_or_numpy():
    code = (
        "import sys, bench.record; "
        "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_numpy_floats_pass_numpy_ints_do_not():
    """json writes a numpy float64 (a float subclass) but not an int64: the builder says so."""
    import numpy as np

    assert validate({**legacy(), "metrics": {"test/acc": np.float64(0.9)}}) == []
    problems = validate({**legacy(), "metrics": {"ens/members": np.int64(5)}})
    assert problems == ["metrics must be numbers or null: ens/members"]
