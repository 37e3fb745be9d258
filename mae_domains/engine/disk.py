"""A full disk says so: free space is checked against the checkpoint's size before each write, and a
write that fails for lack of space ends the run with one line naming the folder and the checkpoint kept."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

from mae_domains.engine.errors import TrainingStopped
from mae_domains.weights import tensors_in

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
HEADROOM = 1.05  # pickle and zip framing on top of the tensor bytes
SLACK_BYTES = 1 << 20


class DiskFull(TrainingStopped):
    """No room for the next checkpoint (or run file); the previous checkpoint is intact."""


def state_nbytes(obj: Any) -> int:
    """The tensor bytes of a checkpoint (nested dicts and lists of tensors)."""
    return sum(t.numel() * t.element_size() for _, t in tensors_in(obj))


def needed_bytes(tensor_bytes: int) -> int:
    return int(tensor_bytes * HEADROOM) + SLACK_BYTES


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def is_disk_full(err: BaseException) -> bool:
    """An ``OSError`` with ENOSPC/EDQUOT, or one chained under a RuntimeError (torch's zip writer)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        if "No space left on device" in str(err) or "Disk quota exceeded" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full(folder: Path, what: str, needed: int | None, kept: str) -> DiskFull:
    """The one-line message: the disk is full, where, what could not be written, what is intact."""
    try:
        free = f"{megabytes(free_bytes(folder))} free"
    except OSError:
        free = "free space unknown"
    need = f", about {megabytes(needed)} needed" if needed else ""
    return DiskFull(f"disk full: cannot write {what} in {folder} ({free}{need}); {kept}")


def check_free_space(folder: Path, needed: int, what: str, kept: str) -> None:
    """Raise :class:`DiskFull` before writing when ``folder``'s file system has less than ``needed`` bytes."""
    if free_bytes(folder) < needed:
        raise disk_full(folder, what, needed, kept)
