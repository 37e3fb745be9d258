"""A persistent cache of preprocessed volumes: one ``.npy`` array (never pickle) + a ``.json`` sidecar.

The key is a SHA-256 of the source files (resolved path, size, modification time) and the preprocessing
settings, so editing a file or changing the target spacing or window misses the cache and a restart
finds what an earlier run wrote. Writes go to a temporary file renamed into place (safe with several
loader workers).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CACHE_VERSION = 1


def cache_key(files: Sequence[str], settings: dict[str, Any]) -> str:
    """Hex key of ``files`` (path, size, mtime) and ``settings`` (JSON-serializable)."""
    stamp = []
    for f in files:
        st = os.stat(f)
        stamp.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    text = json.dumps({"version": CACHE_VERSION, "files": stamp, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class VolumeCache:
    """Arrays and their metadata under ``root`` by key; :meth:`get` returns None on a miss."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def get(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        array_path, meta_path = self.paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            array = np.load(array_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return np.asarray(array), meta

    def put(self, key: str, array: np.ndarray, meta: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        array_path, meta_path = self.paths(key)
        for target, write in ((array_path, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False)),
                              (meta_path, lambda fh: fh.write(json.dumps(meta, default=str).encode()))):
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, target)
