"""Manifest CSVs: one row per file with an optional acquisition date, label and series.

Columns (header required, extra columns ignored):

- ``path`` (required): a GeoTIFF/COG or Zarr store, relative to the manifest's folder or absolute;
- ``date`` (optional): ISO date ``2020-06-01`` (or ``20200601``) of the acquisition;
- ``label`` (optional): a class name, or several separated by ``;`` or ``|`` (multi-label, BigEarthNet);
- ``series`` (optional): rows with the same value are frames of one time series (temporal adapter).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path

LABEL_SEPARATORS = re.compile(r"[;|]")
_DATE_IN_TEXT = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


@dataclass(frozen=True)
class ManifestRow:
    path: str
    date: str | None = None
    labels: tuple[str, ...] | None = None
    series: str | None = None


def parse_date(text: str, where: str = "") -> Date:
    """``2020-06-01`` / ``20200601`` / ``2020-06-01T10:10:31`` -> a date; the error names ``where``."""
    match = _DATE_IN_TEXT.search(str(text))
    try:
        if match is None:
            raise ValueError("no YYYY-MM-DD or YYYYMMDD date")
        return Date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError as err:
        raise ValueError(f"{where}: cannot read date {text!r} ({err})") from None


def date_from_name(name: str) -> str | None:
    """The first plausible ``YYYYMMDD``/``YYYY-MM-DD`` date in a file name as ISO text, else None."""
    for match in _DATE_IN_TEXT.finditer(name):
        try:
            return Date(int(match.group(1)), int(match.group(2)), int(match.group(3))).isoformat()
        except ValueError:
            continue
    return None


def date_features(iso: str | None) -> tuple[float, float, float]:
    """``(year, day of year, month)`` of an ISO date (zeros when unknown): the date code's inputs."""
    if not iso:
        return (0.0, 0.0, 0.0)
    d = parse_date(iso)
    return (float(d.year), float(d.timetuple().tm_yday), float(d.month))


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a manifest CSV; errors name the file and line."""
    path = Path(path)
    rows: list[ManifestRow] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields:
            raise ValueError(f"{path}: manifest needs a 'path' column; found columns {reader.fieldnames}")
        for line, raw in enumerate(reader, start=2):
            row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not row.get("path"):
                raise ValueError(f"{path}:{line}: empty path")
            file = Path(row["path"])
            file = file if file.is_absolute() else path.parent / file
            date = parse_date(row["date"], f"{path}:{line}").isoformat() if row.get("date") else None
            labels = None
            if row.get("label"):
                labels = tuple(part.strip() for part in LABEL_SEPARATORS.split(row["label"]) if part.strip())
            rows.append(ManifestRow(str(file), date, labels, row.get("series") or None))
    if not rows:
        raise ValueError(f"{path}: the manifest has no rows")
    return rows
