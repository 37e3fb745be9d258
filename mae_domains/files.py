"""Finding the user's files: folders searched recursively, globs, single files; each file once.

Archives often hold symlinks (a dataset linked in from another disk, a "latest" link to a sibling
folder), sometimes loops. Folders are walked following links, but a real folder is entered only once,
and a file reached through several paths is listed once (under the first path found, in sorted order).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence


def walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` in sorted order, following symlinked folders but never entering a real
    folder twice (so a link loop ends)."""
    seen_dirs: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


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
