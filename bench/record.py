"""The results record's schema, defined once: build, validate and read ``results.json``.

Training writes records and the leaderboard reads thousands of them, so this module imports
only the standard library — no torch, Lightning or numpy — and ``bench-leaderboard`` starts
fast. Writing (atomically, secrets scrubbed) stays in ``bench.results``.

Records written before ``schema_version`` existed carry no such field; they are read as
version 1 when they have the required fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
STATUSES = ("completed", "diverged", "failed", "interrupted")
# Records without metrics: the run did not finish.
UNFINISHED = ("failed", "interrupted")


class RecordError(ValueError):
    """A dict is not a valid results record; the message lists every problem."""


def run_record(
    *,
    dataset: str,
    model: str,
    regularizers: Sequence[str],
    seed: int,
    epochs: int,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    wall_time_s: float,
    versions: Mapping[str, str],
    extras: Mapping[str, Any] | None = None,
    diverged_at: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The record of a run that finished: ``completed``, or ``diverged`` when ``diverged_at``
    (``{"epoch": …, "step": …}``) says where the loss became non-finite.

    ``extras`` holds the optional top-level fields (``best_epoch``, ``sparsity``,
    ``stopped_epoch``, ``augment``, ``ensemble``, ``plots``); they come after ``epochs``.
    """
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "diverged" if diverged_at is not None else "completed",
        "dataset": dataset,
        "model": model,
        "regularizers": list(regularizers),
        "seed": seed,
        "epochs": epochs,
        **dict(extras or {}),
        "metrics": dict(metrics),
        "wall_time_s": wall_time_s,
        "versions": dict(versions),
        "config": dict(config),
    }
    if diverged_at is not None:
        record["diverged_at"] = dict(diverged_at)
    return check(record)


def failed_record(*, error: str, **what: Any) -> dict[str, Any]:
    """The record of a run that raised: what was asked for and the error, no metrics.

    ``what``: ``dataset``, ``model``, ``regularizers``, ``seed``, ``config``, ``wall_time_s``,
    ``versions`` (any may be None but ``config``: it may have died before they were known).
    """
    return _unfinished("failed", {"error": error}, **what)


def interrupted_record(
    *, signal: str, epoch: int, step: int, checkpoint: str | None, **what: Any
) -> dict[str, Any]:
    """The record of a run stopped by a signal: where it stopped and what it resumes from
    (``checkpoint``, relative to the run directory; null when it stopped before the first).
    ``what`` as for :func:`failed_record`."""
    where = {"signal": signal, "epoch": epoch, "step": step, "checkpoint": checkpoint}
    return _unfinished("interrupted", {"interrupted": where}, **what)


def _unfinished(
    status: str,
    detail: Mapping[str, Any],
    *,
    dataset: str | None,
    model: str | None,
    regularizers: Sequence[str],
    seed: int | None,
    config: Mapping[str, Any],
    wall_time_s: float,
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """A record without metrics, in the same schema as a finished one (leaderboards list it)."""
    return check(
        {
            "schema_version": SCHEMA_VERSION,
            "status": status,
            **detail,
            "dataset": dataset,
            "model": model,
            "regularizers": list(regularizers),
            "seed": seed,
            "epochs": None,
            "best_epoch": None,
            "metrics": {},
            "wall_time_s": wall_time_s,
            "versions": dict(versions),
            "config": dict(config),
        }
    )


_METRIC_TYPES = (int, float, type(None))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_str_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(v, str) for v in x)


# field -> (check, what it must be), for completed and diverged records. A failed record needs
# only status, error and config (it may have died before the dataset or seed were known); an
# interrupted one status, interrupted and config.
_REQUIRED = {
    "status": (lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}"),
    "dataset": (lambda v: isinstance(v, str), "a string"),
    "model": (lambda v: isinstance(v, str), "a string"),
    "regularizers": (_is_str_list, "a list of strings"),
    "seed": (_is_int, "an integer"),
    "epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "metrics": (lambda v: isinstance(v, dict), "an object"),
    "config": (lambda v: isinstance(v, dict), "an object"),
}
_OPTIONAL = {
    "best_epoch": (lambda v: v is None or _is_int(v), "an integer or null"),
    "sparsity": (lambda v: v is None or _is_number(v), "a number or null"),
    "wall_time_s": (lambda v: v is None or _is_number(v), "a number or null"),
    "versions": (lambda v: isinstance(v, dict), "an object"),
    "error": (lambda v: isinstance(v, str), "a string"),
    "diverged_at": (lambda v: isinstance(v, dict) and _is_int(v.get("epoch")), "{epoch, step}"),
    "interrupted": (
        lambda v: isinstance(v, dict) and _is_int(v.get("epoch")) and _is_int(v.get("step")),
        "{signal, epoch, step, checkpoint}",
    ),
}


def validate(record: Any) -> list[str]:
    """Every way ``record`` breaks the schema, as short phrases; ``[]`` when it is valid."""
    if not isinstance(record, dict):
        return [f"not a JSON object but a {type(record).__name__}"]
    version = record.get("schema_version", 1)  # absent: written before the field existed
    if not _is_int(version):
        return [f"schema_version must be an integer, got {version!r}"]
    if version > SCHEMA_VERSION:
        return [f"schema_version {version} is newer than this reader's {SCHEMA_VERSION}"]
    failed = record.get("status") == "failed"
    interrupted = record.get("status") == "interrupted"
    required = (
        ("status", "config")
        if failed
        else ("status", "config", "interrupted")
        if interrupted
        else _REQUIRED
    )
    missing = [k for k in required if k not in record]
    if missing:
        return [f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"]
    fields = {**_REQUIRED, **_OPTIONAL}
    checked = (
        ("status", "config", "error")
        if failed
        else ("status", "config", "interrupted")
        if interrupted
        else fields
    )
    problems = [
        f"{key} must be {fields[key][1]}, got {_short(record[key])}"
        for key in checked
        if key in record and not fields[key][0](record[key])
    ]
    if failed and not isinstance(record.get("error"), str):
        problems.append("a failed record needs error (a string)")
    if record.get("status") == "diverged" and "diverged_at" not in record:
        problems.append("a diverged record needs diverged_at")
    if isinstance(record.get("metrics"), dict):
        # type() first: this runs over every metric of thousands of records, where it is several
        # times faster than isinstance; subclasses (numpy.float64) fall through to the full check.
        metrics = record["metrics"].items()
        bad = [k for k, v in metrics if type(v) not in _METRIC_TYPES and not _is_number(v)]
        if bad:
            problems.append(f"metrics must be numbers or null: {', '.join(sorted(bad)[:3])}")
    return problems


def check(record: Any) -> dict[str, Any]:
    """``record`` itself if it is valid; otherwise ``RecordError`` listing the problems."""
    problems = validate(record)
    if problems:
        raise RecordError("invalid results record: " + "; ".join(problems))
    return record


def read_record(path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a valid record file, ``(None, reason)`` for anything else.

    Failed records are valid records (the caller decides what to do with them); the reason
    for a bad file is one phrase a user can act on: unreadable, empty, truncated, foreign.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if not data.strip():
        return None, "empty file"
    try:
        record = json.loads(data)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"malformed JSON (truncated?): {exc.msg} at line {exc.lineno}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"
    problems = validate(record)
    if problems:
        return None, "not a regbench record: " + "; ".join(problems)
    return record, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: {"optimizer": {"lr": 1}} -> {"optimizer.lr": 1}."""
    if not isinstance(value, dict) or not value:
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
