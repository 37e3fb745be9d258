"""Opening a run folder for a run: writable, locked, not another run's, rid of dead writers' temp files.

:func:`open_run_folder` is called before anything of a run is written. A new run refuses a folder that
already holds a run unless ``overwrite``; a resumed run needs the folder's checkpoint. The previous run's
files are only removed by :func:`clear_previous_run`, once the new run is known good.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from mae_domains.runs.layout import (
    CHECKPOINT_NAME, CONFIG_NAME, FIGURES_DIR, METRICS_NAME, SKIPPED_NAME, STATS_NAME,
)
from mae_domains.runs.lock import RunLock

log = logging.getLogger(__name__)

RUN_FILES = (CHECKPOINT_NAME, CONFIG_NAME, STATS_NAME, METRICS_NAME, SKIPPED_NAME)
RUN_FOLDERS = (FIGURES_DIR, "tensorboard")
# temp files of atomic writes: ".checkpoint.pt.tmp-PID" (see mae_domains.engine.checkpoint.save_atomic)
TEMP_PATTERN = re.compile(r"^\.(?:" + "|".join(re.escape(n) for n in RUN_FILES) + r")\.tmp-(\d+)$")


class RunFolderError(RuntimeError):
    """The run folder cannot be used: not writable, already holds a run, nothing to resume."""


def existing_run_files(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()]


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove temp files of interrupted writes by other processes. Called under the run's lock, so no
    other process is writing here: such a file belongs to a dead writer."""
    removed = []
    for path in folder.iterdir():
        match = TEMP_PATTERN.match(path.name)
        if match and int(match.group(1)) != os.getpid():
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
            log.warning("removed %s (%.1f MB), left by an interrupted write", path, size / 2**20)
    return removed


def _unwritable(folder: Path, err: OSError) -> RunFolderError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return RunFolderError(f"{folder}: the disk is full; cannot write in the run folder")
    return RunFolderError(f"{folder}: cannot write in the run folder ({err.strerror or err}); "
                          "fix its permissions or choose another folder")


def open_run_folder(folder: str | Path, resume: bool = False, overwrite: bool = False) -> RunLock:
    """Create ``folder`` if needed, take its lock and check it suits the run; returns the held lock.

    Raises :class:`RunFolderError` (or :class:`~mae_domains.runs.lock.RunLocked`) before any run file is
    written."""
    folder = Path(folder)
    if resume and not (folder / CHECKPOINT_NAME).is_file():
        hint = (" (the run stopped before its first checkpoint; start it again with --overwrite)"
                if existing_run_files(folder) else " (is it a run directory?)")
        raise RunFolderError(f"{folder}: cannot resume, no {CHECKPOINT_NAME}{hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = RunLock(folder).acquire()
    except OSError as err:
        raise _unwritable(folder, err) from None
    try:
        if not resume and not overwrite:
            found = existing_run_files(folder)
            if found:
                raise RunFolderError(
                    f"{folder}: already holds a run ({', '.join(found)}); continue it with --resume {folder}, "
                    f"start over with --overwrite (its files are replaced), or choose another folder")
        remove_stale_temp_files(folder)
    except BaseException:
        lock.release()
        raise
    return lock


def clear_previous_run(folder: Path) -> None:
    """Remove a previous run's files and figures (``--overwrite``), once the new run is known good."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(temp)`` then rename the temp file over ``path``: a kill never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
