"""Naming embedded samples: ids relative to the data root, and the position metadata a sample carries.

Ids are paths relative to the root of the ``--data`` sources (their common folder), so ``a/x.png`` and
``b/x.png`` stay apart; a chip's id keeps the part of its sample id after the file (``scene.tif@0_0_64_64``).
Ids that still repeat (several crops of one file) get the adapter's sample id, then a counter.
Position metadata (CRS, bounds, window, slice, plane...) is kept as the sample carries it, so embeddings
of chips and crops can be put back where they came from.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

# Where a sample lies in its file, scene or volume, as adapters name it in ``Sample.meta``.
POSITION_KEYS = (
    "crs", "bounds", "window", "chip_transform", "gsd", "dates", "position", "origin", "slice", "slices",
    "frame", "t", "z", "planes", "spacing", "pixel_size", "z_step", "field_shape", "plate", "well", "site",
    "perturbation", "voxel_box", "world_box",  # voxel_box, world_box: a CT crop's voxels and RAS millimetres
    "count",  # count: samples averaged into an aggregated row (embed --aggregate)
)


def data_root(sources: Sequence[str | os.PathLike]) -> str:
    """The folder the sources share: a folder itself, a file's folder, a glob's fixed leading folders."""
    folders = []
    for source in sources:
        text = str(source)
        if glob.has_magic(text):
            parts = text.split(os.sep)
            text = os.sep.join(parts[:next(i for i, p in enumerate(parts) if glob.has_magic(p))]) or "."
        path = os.path.abspath(text)
        folders.append(path if os.path.isdir(path) else os.path.dirname(path))
    return os.path.commonpath(folders) if folders else os.path.abspath(".")


def _relative(text: str, root: str) -> str | None:
    path = os.path.abspath(text)
    if path != root and not path.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return os.path.relpath(path, root).replace(os.sep, "/")


def sample_key(meta: Mapping[str, Any], root: str) -> str:
    """A sample's id relative to ``root``: its sample id when that extends its file's path (chips) or its
    file's name (``cine.dcm#frame=3``: the relative path with that suffix), else its file's path, else the
    adapter's sample id as it is."""
    source, sample_id = str(meta.get("source") or ""), str(meta.get("sample_id") or "")
    folder, name = os.path.dirname(source), os.path.basename(source)
    if folder and sample_id.startswith(folder + os.sep):
        relative = _relative(sample_id, root)
        if relative is not None:
            return relative
    relative = _relative(source, root) if source else None
    if relative is not None and name and sample_id.startswith(name + "#"):
        return relative + sample_id[len(name):]
    return relative if relative is not None else (sample_id or source)


def unique_keys(keys: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> list[str]:
    """``keys`` made unique: a repeated key gets ``#<sample id>``, and a counter if it still repeats."""
    counts = Counter(keys)
    out = [k if counts[k] == 1 else f"{k}#{m.get('sample_id', '')}" for k, m in zip(keys, metas)]
    counts = Counter(out)
    seen: Counter = Counter()
    final = []
    for key in out:
        if counts[key] > 1:
            seen[key] += 1
            key = f"{key}#{seen[key]}"
        final.append(key)
    return final


def _plain(value: Any) -> Any:
    """JSON-ready: numpy values as Python numbers and lists, other objects (a CRS) as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def position_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The position entries of a sample's metadata (those that are set), JSON-ready."""
    return {key: _plain(meta[key]) for key in POSITION_KEYS if meta.get(key) is not None}


def position_arrays(records: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """One array per position key any sample has: numbers (NaN where a sample has none) when every value
    is a number or a list of numbers of one length, else text (JSON for lists; empty where missing)."""
    records = list(records)
    keys = [k for k in POSITION_KEYS if any(k in r for r in records)]
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        values = [r.get(key) for r in records]
        present = [v for v in values if v is not None]
        shapes = {np.shape(v) for v in present}
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool)
                      for v in present for x in np.ravel(np.asarray(v, dtype=object)))
        if numeric and len(shapes) == 1:
            shape = shapes.pop()
            arrays[key] = np.stack([np.asarray(v, np.float64) if v is not None else np.full(shape, np.nan)
                                    for v in values])
        else:
            arrays[key] = np.asarray(["" if v is None else v if isinstance(v, str) else json.dumps(v)
                                      for v in values], dtype=str)
    return arrays
