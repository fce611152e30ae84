"""Post-hoc seed ensembles: ensembles for free from any sweep with several seeds.

Runs of one configuration differ only in their seed, which is exactly how a deep ensemble's
members differ; averaging their saved test predictions (``predictions.npz``) gives the
ensemble's prediction without training anything. As in ``bench.uncertainty.ensemble``: the
mean of the class probabilities, or for regression the Gaussian moment-matched to the members'
Gaussians. The scores come from ``bench.metrics``, the same definitions the runs used.

This is the only part of the leaderboard that needs numpy; it is imported here, lazily, so the
plain aggregation path starts without it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from typing import Any

from bench.leaderboard.model import Entry, Problem

PREDICTIONS_FILE = "predictions.npz"
_ABSENT = "no predictions.npz"


SeedEnsemble = tuple[tuple[int, ...], dict[str, float]]  # (member seeds, test/* metrics)


def seed_ensembles(entries: Iterable[Entry]) -> tuple[dict[str, SeedEnsemble], list[Problem]]:
    """config key -> (seeds, ``test/*`` metrics) of the seed ensemble of each entry with two or
    more seeds.

    A seed without ``predictions.npz`` is quietly left out (older runs have none); one whose
    file is broken or holds another test set is left out and reported. An entry with fewer
    than two usable seeds gets no row.
    """
    out: dict[str, SeedEnsemble] = {}
    problems: list[Problem] = []
    for entry in entries:
        if len(entry.runs) < 2:
            continue
        members: list[dict[str, Any]] = []
        seeds: list[int] = []
        for run in entry.runs:
            path = os.path.join(run.run_dir, PREDICTIONS_FILE)
            arrays, reason = _load(path)
            if arrays is not None and members:
                reason = _mismatch(members[0], arrays)
            if reason == _ABSENT:
                continue
            if reason:
                problems.append(Problem(path, "predictions", f"left out of ens-of-seeds: {reason}"))
            else:
                members.append(arrays)
                seeds.append(run.seed)
        if len(members) >= 2:
            scores = {f"test/{k}": v for k, v in _score(members).items()}
            out[entry.runs[0].config_key] = (tuple(seeds), scores)
    return out, problems


def _load(path: str) -> tuple[dict[str, Any] | None, str]:
    if not os.path.exists(path):  # checked first: a sweep without predictions needs no numpy
        return None, _ABSENT
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("probs", "labels", "mean", "var", "targets") if k in npz}
    except FileNotFoundError:
        return None, _ABSENT
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated or not an npz
        return None, f"unreadable predictions.npz ({type(exc).__name__})"
    if not ({"probs", "labels"} <= arrays.keys() or {"mean", "var", "targets"} <= arrays.keys()):
        return None, "predictions.npz holds neither probs/labels nor mean/var/targets"
    return arrays, ""


def _mismatch(first: dict[str, Any], other: dict[str, Any]) -> str:
    """Why ``other`` cannot join an ensemble with ``first`` (different test sets), or ''."""
    import numpy as np

    if first.keys() != other.keys():
        return "its arrays differ from the other seeds'"
    truth = "labels" if "labels" in first else "targets"
    if first[truth].shape != other[truth].shape or not np.array_equal(first[truth], other[truth]):
        return f"its test {truth} differ from the other seeds' (another split?)"
    if "probs" in first and first["probs"].shape != other["probs"].shape:
        return "its probs have another shape"
    return ""


def _score(members: list[dict[str, Any]]) -> dict[str, float]:
    import numpy as np

    from bench.metrics import classification_metrics, regression_metrics

    if "probs" in members[0]:
        probs = np.mean([m["probs"].astype(np.float64) for m in members], axis=0)
        return classification_metrics(probs, members[0]["labels"])
    means = np.stack([m["mean"].astype(np.float64) for m in members])
    second = np.stack([m["var"].astype(np.float64) for m in members]) + means**2
    mean = means.mean(axis=0)
    return regression_metrics(mean, second.mean(axis=0) - mean**2, members[0]["targets"])
