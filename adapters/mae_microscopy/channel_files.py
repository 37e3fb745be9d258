"""One file per channel, as plate readers write them: files grouped into fields by a filename pattern.

A pattern is a regular expression with named groups: ``channel`` (required), and any of ``plate``,
``row`` + ``col`` or ``well``, ``field`` or ``site``, ``plane`` (z) and ``time``. Files that agree on every
group except ``channel``, ``plane`` and ``time`` are one field; channels, planes and time points are
sorted numerically. Built in:

- ``harmony`` (PerkinElmer/Revvity Opera Phenix, Operetta): ``r01c01f01p01-ch1sk1fk1fl1.tiff``;
- ``imagexpress`` (Molecular Devices, the Cell Painting Gallery): ``PLATE_A01_s1_w1<uuid>.tif``.

Channel names come from ``channel_map`` (``{"1": "DNA", "2": "ER"}``), else ``ch<number>``. A channel
missing for some plane or time point is dropped from its field with a warning (the field then makes a
different grid), and a field left without channels is reported as bad.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mae_domains.data.sample import BadSampleError
from mae_microscopy.image_info import FieldReader, ImageInfo
from mae_microscopy.tiff_reader import TIFF_FILES, TiffField

log = logging.getLogger(__name__)

CHANNEL_PATTERNS: dict[str, str] = {
    "harmony": r"r(?P<row>\d+)c(?P<col>\d+)f(?P<field>\d+)p(?P<plane>\d+)-ch(?P<channel>\d+)sk(?P<time>\d+)fk\d+fl\d+\.tiff?$",
    "imagexpress": r"(?P<plate>[^_]+)_(?P<well>[A-Za-z]{1,2}\d{1,3})_s(?P<site>\d+)_w(?P<channel>\d+)[^.]*\.tiff?$",
}
FIELD_KEYS = ("plate", "row", "col", "well", "field", "site")


def compile_pattern(pattern: str) -> re.Pattern:
    """A built-in pattern by name, or a user regular expression with a ``channel`` group."""
    text = CHANNEL_PATTERNS.get(pattern, pattern)
    try:
        compiled = re.compile(text, re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"data.options.channel_pattern {pattern!r} is not a regular expression ({err})") from None
    if "channel" not in compiled.groupindex:
        raise ValueError(f"data.options.channel_pattern {pattern!r} needs a named group (?P<channel>...)")
    return compiled


def match_channel_file(name: str, patterns: Sequence[re.Pattern]) -> dict[str, str] | None:
    """The named groups of the first pattern that matches the file name ``name``, else None."""
    for pattern in patterns:
        found = pattern.search(name)
        if found:
            return {k: v for k, v in found.groupdict().items() if v is not None}
    return None


def well_name(groups: Mapping[str, str]) -> str | None:
    """``A01`` from ``row=1, col=1`` (or the ``well`` group as written, upper case, zero-padded)."""
    if "well" in groups:
        found = re.fullmatch(r"([A-Za-z]+)(\d+)", groups["well"])
        return f"{found.group(1).upper()}{int(found.group(2)):02d}" if found else groups["well"]
    if "row" in groups and "col" in groups:
        row = int(groups["row"])
        letters = ""
        while row > 0:
            row, rem = divmod(row - 1, 26)
            letters = chr(65 + rem) + letters
        return f"{letters}{int(groups['col']):02d}"
    return None


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else 0.0
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class ChannelFileGroup:
    """One field: ``files[t][c][z]`` paths, the channel labels (as in the file names), and ids."""

    files: tuple[tuple[tuple[str, ...], ...], ...]
    channel_labels: tuple[str, ...]
    plate: str | None
    well: str | None
    site: str | None
    key: str

    @property
    def first_file(self) -> str:
        return self.files[0][0][0]


def group_channel_files(paths: Sequence[str | Path], patterns: Sequence[re.Pattern]) -> tuple[list[ChannelFileGroup], list[Path]]:
    """Fields made of the files that match a pattern, and the files that match none."""
    groups: dict[tuple, dict[tuple[float, float, float], str]] = defaultdict(dict)
    info: dict[tuple, dict[str, str]] = {}
    labels: dict[tuple, dict[float, str]] = defaultdict(dict)
    rest: list[Path] = []
    for path in sorted(Path(p) for p in paths):
        found = match_channel_file(path.name, patterns)
        if found is None:
            rest.append(path)
            continue
        key = (str(path.parent),) + tuple((k, found[k]) for k in FIELD_KEYS if k in found)
        slot = (_number(found.get("time")), _number(found["channel"]), _number(found.get("plane")))
        if slot in groups[key]:
            log.warning("two files for one channel/plane/time of a field: %s and %s; keeping the first",
                        groups[key][slot], path)
            continue
        groups[key][slot] = str(path)
        labels[key][slot[1]] = found["channel"]
        info[key] = found
    out = []
    for key, slots in groups.items():
        times = sorted({s[0] for s in slots})
        channels = sorted({s[1] for s in slots})
        planes = sorted({s[2] for s in slots})
        complete = [c for c in channels if all((t, c, z) in slots for t in times for z in planes)]
        dropped = [labels[key][c] for c in channels if c not in complete]
        found = info[key]
        where = f"{key[0]}: field {', '.join(f'{k}={v}' for k, v in key[1:])}"
        if dropped:
            log.warning("%s: channel(s) %s lack files for some planes or time points and are left out", where, dropped)
        files = tuple(tuple(tuple(slots[(t, c, z)] for z in planes) for c in complete) for t in times)
        site = found.get("site", found.get("field"))
        out.append(ChannelFileGroup(files, tuple(labels[key][c] for c in complete), found.get("plate"),
                                    well_name(found), str(int(site)) if site and site.isdigit() else site, where))
    return out, rest


class ChannelFilesField(FieldReader):
    """A field stored as one single-plane TIFF per channel (and plane and time point)."""

    def __init__(self, group: ChannelFileGroup, channel_map: Mapping[str, str] | None = None) -> None:
        self.group = group
        self.source = group.key
        self.channel_map = {str(k): str(v) for k, v in (channel_map or {}).items()}
        self._info: ImageInfo | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_info": None}

    def channel_name(self, label: str) -> str:
        """``channel_map`` looked up by the label as written (``01``) or as a number (``1``)."""
        for key in (label, str(int(label)) if label.isdigit() else label):
            if key in self.channel_map:
                return self.channel_map[key]
        return f"ch{int(label)}" if label.isdigit() else f"ch{label}"

    def info(self) -> ImageInfo:
        if self._info is None:
            if not self.group.files or not self.group.files[0]:
                raise BadSampleError(self.source, "no channel has a file for every plane and time point")
            first = TiffField(self.group.first_file).info()
            if first.channels != 1 or first.planes != 1 or first.frames != 1:
                raise BadSampleError(self.group.first_file, f"a per-channel file must hold one plane, it has "
                                                            f"T, C, Z = {first.sizes[:3]}")
            g = self.group
            self._info = ImageInfo((len(g.files), len(g.files[0]), len(g.files[0][0]), first.height, first.width),
                                   tuple(self.channel_name(c) for c in g.channel_labels), first.pixel_size,
                                   None, first.dtype, 1, "channel-files")
        return self._info

    def read_channel(self, t: int, c: int, planes: Sequence[int], rows: slice, cols: slice) -> np.ndarray:
        info = self.info()
        blocks = []
        for z in planes:
            path = self.group.files[t][c][z]
            handle = TIFF_FILES.get(path)
            array = handle.array(0, 0)
            if tuple(array.shape[:2]) != (info.height, info.width):
                raise BadSampleError(path, f"is {array.shape[0]}x{array.shape[1]} but the field's first channel "
                                           f"file is {info.height}x{info.width}")
            block = np.asarray(array[rows, cols])
            blocks.append(block if block.ndim == 2 else block[..., 0])
        return np.stack(blocks)
