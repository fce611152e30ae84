"""Checkpoint files that a kill cannot corrupt, and the choice of the one to resume from.

Lightning writes a checkpoint in place (``open(path, "wb")``): a job killed mid-write leaves a
truncated ``last.ckpt`` that fails to load — or worse, and Lightning's ``ckpt_path="last"``
silently trains from scratch when no file is there. Here:

- :class:`AtomicCheckpointIO` (a Lightning ``CheckpointIO`` plugin, so every checkpoint the
  Trainer writes goes through it) serializes to memory, writes ``<name>.sha256`` and then the
  file itself through a temporary file, fsync and rename. A kill at any moment leaves the old
  files intact and at worst a stray temporary file or a checksum without its checkpoint.
- Resumable checkpoints are immutable and named by position, ``e0003-s000042.ckpt`` (epoch and
  global step), ``…-final.ckpt`` once fit has ended; the newest ``keep`` stay, ``last.ckpt``
  links to the newest.
- :func:`latest_valid` picks the newest whose bytes match their checksum, falling back to older
  ones with a warning; when checkpoints exist but none is valid it raises
  :class:`CheckpointError` — one line — rather than start again from nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _load as pl_load
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bench.atomic import write_bytes_atomic, write_text_atomic

log = logging.getLogger("bench")

CHECKSUM_SUFFIX = ".sha256"
LAST = "last.ckpt"
NAME = re.compile(r"^e(\d+)-s(\d+)(-final)?\.ckpt$")


class CheckpointError(RuntimeError):
    """No checkpoint to resume from although some exist: every one is truncated or corrupt."""


def checkpoint_name(epoch: int, step: int, final: bool = False) -> str:
    return f"e{epoch:04d}-s{step:08d}{'-final' if final else ''}.ckpt"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to memory, then checksum and file written atomically (temp, fsync, rename).

    Memory holds one serialized checkpoint at a time: a few MB for the benchmark's networks,
    ~45 MB for a ResNet-18 with Adam moments.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        path = Path(path)
        # The checksum goes first: a checksum without its file is ignored, a file without its
        # checksum would not be trusted.
        sums = path.with_name(path.name + CHECKSUM_SUFFIX)
        write_text_atomic(sums, digest(data) + "\n")
        try:
            write_bytes_atomic(path, data)
        except BaseException:
            sums.unlink(missing_ok=True)  # a disk that filled up: no checksum without its file
            raise

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's loader, after checking the file against its checksum when it has one
        (a checkpoint from elsewhere, without one, loads as Lightning would load it)."""
        path = Path(path)
        has_sum = path.with_name(path.name + CHECKSUM_SUFFIX).is_file()
        problem = verify(path) if has_sum else None
        if problem is not None:
            raise CheckpointError(f"checkpoint {path} is {problem}")
        return pl_load(path, map_location=map_location, weights_only=False)


def verify(path: Path) -> str | None:
    """Why ``path`` cannot be trusted (None when it can): missing, or not what was written."""
    if not path.is_file():
        return "missing"
    sums = path.with_name(path.name + CHECKSUM_SUFFIX)
    if not sums.is_file():
        return "without its checksum file (its write never finished)"
    expected = sums.read_text().strip()
    actual = digest(path.read_bytes())
    if actual != expected:
        size = path.stat().st_size
        return f"corrupt or truncated ({size} bytes; checksum mismatch)"
    return None


def resumable(directory: Path) -> list[Path]:
    """Resumable checkpoints in ``directory``, newest first (final after the epoch-end one)."""
    found = []
    for path in Path(directory).glob("e*-s*.ckpt"):
        match = NAME.match(path.name)
        if match:
            found.append(((int(match[2]), int(match[1]), bool(match[3])), path))
    return [path for _, path in sorted(found, reverse=True)]


def latest_valid(directory: Path) -> Path | None:
    """The newest checkpoint whose bytes match its checksum; older ones are the fallback.

    None when there is none at all (a fresh run); :class:`CheckpointError` when there are some
    and every one is damaged — starting over silently would throw their work away.
    """
    candidates = resumable(directory)
    problems = []
    for path in candidates:
        problem = verify(path)
        if problem is None:
            for bad, why in problems:
                log.warning("checkpoint %s is %s; resuming from the previous one", bad, why)
            return path
        problems.append((path, problem))
    if problems:
        bad, why = problems[0]
        raise CheckpointError(
            f"cannot resume: checkpoint {bad} is {why} and no earlier valid checkpoint exists "
            f"in {directory}; run again with resume=false to start afresh in a new directory"
        )
    return None


def prune(directory: Path, keep: int) -> None:
    """Keep the ``keep`` newest resumable checkpoints; point ``last.ckpt`` at the newest.

    Stray temporary files and checksums without a checkpoint (a write that was killed) go too.
    """
    directory = Path(directory)
    candidates = resumable(directory)
    for old in candidates[keep:]:
        old.unlink(missing_ok=True)
        old.with_name(old.name + CHECKSUM_SUFFIX).unlink(missing_ok=True)
    for sums in directory.glob(f"*.ckpt{CHECKSUM_SUFFIX}"):
        if not sums.with_name(sums.name.removesuffix(CHECKSUM_SUFFIX)).exists():
            sums.unlink(missing_ok=True)
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    if candidates:
        link_atomic(directory / LAST, candidates[0].name)


def link_atomic(link: Path, target: str) -> None:
    """Make ``link`` a relative symlink to ``target``, replacing any old one in one rename."""
    tmp = link.with_name(f".{link.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def clear(directory: Path) -> None:
    """Remove the resumable checkpoints of a run that starts over (a failed run re-run)."""
    for path in resumable(directory):
        path.unlink(missing_ok=True)
        path.with_name(path.name + CHECKSUM_SUFFIX).unlink(missing_ok=True)
    (Path(directory) / LAST).unlink(missing_ok=True)
