"""Groups of dependent test samples, for bootstraps that resample whole groups.

Crops of one slice, overlapping crops of one image or chips of one spatial block are not independent
samples: resampling them one by one makes intervals too narrow. A groups CSV names the group of each sample
file, ``path,<unit>`` (``path`` relative to the CSV's folder; the second column's name says what a group
is, e.g. ``slice`` or ``block``). A benchmark dataset names it with ``bootstrap_groups:``. The loaders'
sample ids are a file path, or a file name, with an optional draw suffix (``#0``, ``#crop0``, ``#frame=2``,
``/crop0``); each is matched to exactly one row of the CSV.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

import numpy as np

DRAW_SUFFIX = re.compile(r"(#[^/#]*|/crop\d+)$")  # one draw of a file (a chip of a scene, a crop, a frame)


@dataclass(frozen=True)
class SampleGroups:
    """``unit`` names a group (the CSV's second column); ``by_path``: path (relative to the CSV) -> group."""

    unit: str
    by_path: dict[str, str]

    @cached_property
    def _by_name(self) -> dict[str, list[str]]:
        by_name: dict[str, list[str]] = {}
        for path in self.by_path:
            by_name.setdefault(PurePosixPath(path).name, []).append(path)
        return by_name

    def of(self, sample_ids: Sequence[str]) -> np.ndarray:
        """The group of each sample id, in order: a bare file name matches the row of that name, a path the
        row it ends with; an id that matches no row, or several, is an error."""
        out = []
        for sample_id in sample_ids:
            file = DRAW_SUFFIX.sub("", str(sample_id))
            candidates = [p for p in self._by_name.get(PurePosixPath(file).name, [])
                          if "/" not in file or file == p or file.endswith("/" + p)]
            if len(candidates) != 1:
                raise ValueError(f"test sample {sample_id!r}: {len(candidates)} rows of the {self.unit} groups "
                                 f"match it (expected 1)")
            out.append(self.by_path[candidates[0]])
        return np.asarray(out)


def read_groups(path: str | Path) -> SampleGroups:
    """A groups CSV: header ``path,<unit>``, one row per sample file."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or len(header) != 2 or header[0] != "path":
            raise ValueError(f"{path}: a groups CSV has the header path,<unit>; got {header}")
        rows = list(reader)
    by_path = {}
    for number, row in enumerate(rows, start=2):
        if len(row) != 2 or not row[0] or not row[1]:
            raise ValueError(f"{path}, line {number}: expected a path and a group, got {row}")
        if row[0] in by_path:
            raise ValueError(f"{path}, line {number}: {row[0]} listed twice")
        by_path[row[0]] = row[1]
    return SampleGroups(unit=header[1], by_path=by_path)


def write_groups(path: Path, unit: str, rows: Iterable[tuple[str, str]]) -> Path:
    """Write a groups CSV (``path,<unit>``) from ``(path relative to the CSV's folder, group)`` pairs."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", unit])
        writer.writerows(rows)
    return path
