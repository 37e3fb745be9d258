"""Finding the user's files: folders searched recursively, globs, single files; each file once.

Archives often hold symlinks (a dataset linked in from another disk, a "latest" link to a sibling
folder), sometimes loops. Folders are walked following links, but a real folder is entered only once,
and a file reached through several paths is listed once (under the first path found, in sorted order).
A link to a folder that holds the walked folder itself (``/``, the home folder) is not followed: it would
walk everything above the data. Folders and entries that cannot be read (no permission, gone meanwhile)
are skipped with a logged reason, and the walk stops going deeper than :data:`MAX_DEPTH` folders.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence


log = logging.getLogger(__name__)

MAX_DEPTH = 100  # folders below the walked one; deeper is a link maze, not an archive


def walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` in sorted order (each folder's files, then its subfolders), following
    symlinked folders but never entering a real folder twice (so a link loop ends), nor a link to a folder
    that holds ``root``; unreadable folders and entries are skipped with a logged reason."""
    root_real = os.path.realpath(root)
    seen_dirs: set[str] = set()
    stack = [(os.fspath(root), 0)]
    while stack:
        folder, depth = stack.pop()
        real = os.path.realpath(folder)
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        try:
            with os.scandir(folder) as found:
                entries = sorted(found, key=lambda e: e.name)
        except OSError as err:
            log.warning("skipping folder %s: %s", folder, err.strerror or err)
            continue
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir():  # follows links
                    subfolders.append(entry.path)
                elif entry.is_file():
                    yield Path(entry.path)
            except OSError as err:  # a link into a folder without permission, an entry gone meanwhile
                log.warning("skipping %s: %s", entry.path, err.strerror or err)
        for sub in reversed(subfolders):  # popped in sorted order
            target = os.path.realpath(sub)
            if os.path.islink(sub) and (root_real == target or root_real.startswith(target.rstrip(os.sep) + os.sep)):
                log.warning("not following the link %s -> %s: it holds the data folder %s itself", sub, target, root)
            elif depth >= MAX_DEPTH:
                log.warning("not entering %s: more than %d folders deep", sub, MAX_DEPTH)
            else:
                stack.append((sub, depth + 1))


def matches(path: Path, patterns: Sequence[str]) -> bool:
    """True when the file name matches one of the glob ``patterns`` (case as given)."""
    return any(fnmatch.fnmatchcase(path.name, pattern) for pattern in patterns)


def unique_files(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without repeats of the same real file (the first spelling is kept)."""
    seen: set[str] = set()
    out: list[Path] = []
    for path in paths:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(path)
    return out


def expand_source(source: str | os.PathLike) -> list[Path]:
    """A path as given (file or folder), or the sorted matches of a glob; an error naming the source when
    neither exists."""
    path = Path(source)
    if path.exists():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(source), recursive=True))
    if not matches:
        raise FileNotFoundError(f"{source}: no such file, folder or glob match")
    return matches


def find_files(sources: Sequence[str | os.PathLike], patterns: Sequence[str] = ("*",)) -> list[Path]:
    """Files named by ``sources``: a file as given, a folder searched recursively for ``patterns``, or
    a glob (``**`` recursive). Raises ``FileNotFoundError`` naming a source that matches nothing at all."""
    found: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_file():
            found.append(path)
            continue
        for hit in expand_source(source):
            if hit.is_dir():
                found.extend(sorted(p for p in walk_files(hit) if p.is_file() and matches(p, patterns)))
            else:
                found.append(hit)
    return unique_files(found)
