"""Manifest CSVs: one row per field (an image file, a Zarr image, or a pattern of per-channel files).

Columns (a header is required; names are case-insensitive; extra columns are kept as metadata):

- ``path`` (required): a TIFF / OME-TIFF, an OME-Zarr or Zarr store, a folder, or a glob pattern of
  per-channel files (``plate1/r01c01f01p01-ch*sk1fk1fl1.tiff``); relative paths start at the manifest's
  folder;
- ``plate``, ``well``, ``site``: ids carried into every crop's metadata and embedding;
- ``perturbation``: the treatment (compound, gene knock-out, ``DMSO`` for controls);
- ``label`` (optional): a class for probes and kNN;
- ``channels`` (optional): the number of channels the row's image must have, and ``channel_names``
  (optional, ``;``-separated): names for files that carry none, checked against files that do.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

ID_COLUMNS = ("plate", "well", "site", "perturbation", "label")
NAME_SEPARATORS = (";", "|")


@dataclass(frozen=True)
class ManifestRow:
    """One row: where the field is, its ids, and what it is expected to hold."""

    path: str
    line: int
    plate: str | None = None
    well: str | None = None
    site: str | None = None
    perturbation: str | None = None
    label: str | None = None
    channels: int | None = None
    channel_names: tuple[str, ...] | None = None
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def ids(self) -> dict[str, str]:
        """The row's non-empty ids and extra columns."""
        out = {k: getattr(self, k) for k in ID_COLUMNS if getattr(self, k)}
        out.update(dict(self.extra))
        return out


def split_names(text: str) -> tuple[str, ...]:
    """``DNA;ER;Mito`` (or ``|``-separated) -> a tuple of names."""
    for sep in NAME_SEPARATORS:
        if sep in text:
            return tuple(part.strip() for part in text.split(sep) if part.strip())
    return (text.strip(),) if text.strip() else ()


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a manifest; problems raise ``ValueError`` naming the file and line."""
    path = Path(path)
    rows: list[ManifestRow] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [str(f).strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields:
            raise ValueError(f"{path}: a manifest needs a 'path' column; found columns {reader.fieldnames}")
        for line, raw in enumerate(reader, start=2):
            row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not row.get("path"):
                raise ValueError(f"{path}:{line}: empty path")
            target = Path(row["path"])
            target = target if target.is_absolute() else path.parent / target
            channels = None
            if row.get("channels"):
                try:
                    channels = int(row["channels"])
                except ValueError:
                    raise ValueError(f"{path}:{line}: channels must be a whole number, got {row['channels']!r}") from None
                if channels < 1:
                    raise ValueError(f"{path}:{line}: channels must be at least 1, got {channels}")
            names = split_names(row["channel_names"]) if row.get("channel_names") else None
            if names is not None and channels is not None and len(names) != channels:
                raise ValueError(f"{path}:{line}: {len(names)} channel_names for channels={channels}")
            known = set(ID_COLUMNS) | {"path", "channels", "channel_names"}
            extra = tuple((k, v) for k, v in row.items() if k not in known and v)
            rows.append(ManifestRow(str(target), line, *(row.get(k) or None for k in ID_COLUMNS),
                                    channels=channels, channel_names=names, extra=extra))
    if not rows:
        raise ValueError(f"{path}: the manifest has no rows")
    return rows
