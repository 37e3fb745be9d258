"""DICOM series folders -> volumes: grouping, slice order and geometry checks.

Files (with or without extension) are grouped by SeriesInstanceUID, so a folder holding several series
gives several volumes. Slices whose SeriesInstanceUID is empty or absent (anonymised exports) are grouped
as GDCM does, by folder plus geometry (orientation, rows/columns, pixel spacing, frame of reference when
present), with one warning naming the missing attribute. Slices are ordered by ImagePositionPatient
projected on the slice normal (the cross product of the ImageOrientationPatient cosines), never by file
name or InstanceNumber, and the slice spacing comes from those positions, not SliceThickness. Each
series gets a :class:`SeriesReport`: gantry tilt (positions drifting in-plane), missing slices (gaps at a
multiple of the usual step) and uneven spacing. Tilted series are rejected; missing/uneven ones are
rejected unless ``irregular="interpolate"``, which resamples them linearly onto even steps along the normal.

World coordinates: DICOM is LPS, the returned affine is RAS (x and y negated); voxel ``(i, j, k)`` is
(column, row, slice).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from pydicom import dcmread

from mae_domains.data.sample import BadSampleError
from mae_medical.dicom_display import modality_float32
from mae_medical.dicom_header import is_dicom_file, little_endian, read_header
from mae_medical.volumes import Volume

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
TILT_TOLERANCE_MM = 0.05  # in-plane drift of a slice position beyond which the series is tilted
STEP_TOLERANCE = 0.02  # relative deviation of a gap from the usual step counted as uneven


@dataclass(frozen=True)
class SeriesFiles:
    """One series: its UID, its files (any order) and a description for messages."""

    uid: str
    files: tuple[str, ...]
    description: str = ""

    @property
    def name(self) -> str:
        folder = Path(self.files[0]).parent if self.files else Path(".")
        label = f"series {self.uid}" if self.uid else "series without SeriesInstanceUID"
        return f"{folder}/[{label}{', ' + self.description if self.description else ''}]"


@dataclass
class SeriesReport:
    """Geometry of a series: slice count, usual step (mm), tilt (degrees), missing slices, uneven gaps."""

    slices: int
    step: float
    tilt_degrees: float = 0.0
    missing: list[tuple[float, float, int]] = field(default_factory=list)  # (from mm, to mm, slices lost)
    uneven: list[tuple[float, float]] = field(default_factory=list)  # (at mm, gap mm)

    @property
    def regular(self) -> bool:
        return not (self.missing or self.uneven) and self.tilt_degrees == 0.0

    def problems(self) -> list[str]:
        out = []
        if self.tilt_degrees:
            out.append(f"gantry tilt of {self.tilt_degrees:.2f} degrees (slice positions drift in-plane)")
        for start, stop, lost in self.missing:
            out.append(f"{lost} missing slice(s) between {start:.2f} and {stop:.2f} mm along the normal")
        if self.uneven:
            gaps = ", ".join(f"{gap:.3f} mm at {at:.2f}" for at, gap in self.uneven[:4])
            out.append(f"uneven slice spacing (usual step {self.step:.3f} mm; gaps {gaps})")
        return out


VOLUME_SLICE_ATTRIBUTES = ("ImagePositionPatient", "ImageOrientationPatient")


def geometry_key(path: Path, header) -> tuple:
    """What slices of one series share when no SeriesInstanceUID says so: folder, orientation,
    rows/columns, pixel spacing and frame of reference (when present)."""
    orientation = tuple(round(float(v), 4) for v in header.ImageOrientationPatient)
    spacing = tuple(round(float(v), 4) for v in (header.get("PixelSpacing") or ()))
    return (str(path.parent), orientation, int(header.get("Rows") or 0), int(header.get("Columns") or 0), spacing,
            str(header.get("FrameOfReferenceUID", "") or ""))


def describe_geometry(key: tuple) -> str:
    """``512x512, 0.7 x 0.7 mm, axial``: a series without UID told apart from the others of its folder."""
    _, orientation, rows, cols, spacing, _ = key
    normal = np.abs(np.cross(orientation[:3], orientation[3:]))
    plane = {0: "sagittal", 1: "coronal", 2: "axial"}[int(np.argmax(normal))] if normal.any() else "oblique"
    size = f"{rows}x{cols}" + (f", {' x '.join(f'{v:g}' for v in spacing)} mm" if spacing else "")
    return f"{size}, {plane}"


def group_series(paths: Iterable[str | Path]) -> tuple[list[SeriesFiles], list[tuple[str, str]]]:
    """``(series, excluded)``: DICOM files grouped by SeriesInstanceUID (sorted by UID), then the slices
    without one grouped by folder and geometry (:func:`geometry_key`; one warning); files that are not
    slices of a volume are ``(path, reason)`` in ``excluded``, the reason naming the missing attribute."""
    groups: dict[str, list[str]] = defaultdict(list)
    anonymous: dict[tuple, list[str]] = defaultdict(list)
    descriptions: dict[str, str] = {}
    excluded: list[tuple[str, str]] = []
    for path in paths:
        path = Path(path)
        if not path.is_file() or not is_dicom_file(path):
            continue
        try:
            header = read_header(path)
        except BadSampleError as err:
            excluded.append((str(path), err.reason))
            continue
        missing = [k for k in VOLUME_SLICE_ATTRIBUTES if not header.get(k)]
        if missing:
            excluded.append((str(path), f"no {' / '.join(missing)}: not a slice of a volume"))
            continue
        uid = str(header.get("SeriesInstanceUID", "") or "")
        if uid:
            groups[uid].append(str(path))
            descriptions.setdefault(uid, str(header.get("SeriesDescription", "") or ""))
        else:
            anonymous[geometry_key(path, header)].append(str(path))
    series = [SeriesFiles(uid, tuple(sorted(files)), descriptions[uid]) for uid, files in sorted(groups.items())]
    if anonymous:
        folders = {key[0] for key in anonymous}
        log.warning("%d DICOM file(s) in %d folder(s) have an empty or absent SeriesInstanceUID (an anonymised "
                    "export?): their slices are grouped by folder and geometry (orientation, rows/columns, "
                    "pixel spacing, frame of reference)", sum(map(len, anonymous.values())), len(folders))
        named: dict[tuple[str, str], int] = defaultdict(int)
        for key, files in sorted(anonymous.items()):
            description = describe_geometry(key)
            named[key[0], description] += 1
            if named[key[0], description] > 1:  # same size and plane, another orientation or frame of reference
                description += f" #{named[key[0], description]}"
            series.append(SeriesFiles("", tuple(sorted(files)), description))
    return series, excluded


def slice_geometry(positions: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, SeriesReport]:
    """Order of slices along ``normal`` and the series report, from positions ``(N, 3)`` (mm)."""
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    depth, positions = depth[order], positions[order]
    gaps = np.diff(depth)
    if len(gaps) and gaps.min() < 1e-3:
        raise ValueError(f"two slices share the position {depth[int(np.argmin(gaps))]:.3f} mm along the normal "
                         "(duplicate files, or several acquisitions under one SeriesInstanceUID)")
    step = float(np.min(gaps[gaps > 0.5 * np.median(gaps)])) if len(gaps) else 0.0
    report = SeriesReport(slices=len(depth), step=step)
    drift = positions - positions[:1] - np.outer(depth - depth[0], normal)
    along = depth[-1] - depth[0]
    if len(depth) > 1 and np.linalg.norm(drift, axis=1).max() > TILT_TOLERANCE_MM:
        report.tilt_degrees = float(np.degrees(np.arctan2(np.linalg.norm(drift[-1]), along)))
    for i, gap in enumerate(gaps):
        ratio = gap / step
        lost = int(round(ratio)) - 1
        if lost >= 1 and abs(ratio - round(ratio)) < STEP_TOLERANCE * round(ratio):
            report.missing.append((float(depth[i]), float(depth[i + 1]), lost))
        elif abs(ratio - 1.0) > STEP_TOLERANCE:
            report.uneven.append((float(depth[i]), float(gap)))
    return order, report


def _stack_even(slices: np.ndarray, depth: np.ndarray, step: float) -> np.ndarray:
    """Slices ``(N, ...)`` at positions ``depth`` resampled linearly to even ``step`` from ``depth[0]``."""
    targets = depth[0] + step * np.arange(int(np.floor((depth[-1] - depth[0]) / step + 1e-6)) + 1)
    upper = np.clip(np.searchsorted(depth, targets, side="right"), 1, len(depth) - 1)
    lower = upper - 1
    w = ((targets - depth[lower]) / (depth[upper] - depth[lower])).clip(0, 1)
    shape = (-1,) + (1,) * (slices.ndim - 1)
    return (slices[lower] * (1 - w).reshape(shape) + slices[upper] * w.reshape(shape)).astype(np.float32)


def read_series(series: SeriesFiles, irregular: str = "reject") -> Volume:
    """The series as a :class:`Volume` in modality values (HU for CT: RescaleSlope/Intercept applied).

    ``irregular``: ``reject`` (missing slices or uneven spacing raise :class:`BadSampleError` with the
    report) or ``interpolate`` (resampled to the usual step). Gantry tilt is always rejected.
    """
    name = series.name
    if irregular not in ("reject", "interpolate"):
        raise ValueError(f"irregular must be 'reject' or 'interpolate', got {irregular!r}")
    datasets = []
    for path in series.files:
        try:
            datasets.append(dcmread(path))
        except Exception as err:
            raise BadSampleError(path, f"unreadable DICOM slice of {name} ({type(err).__name__}: {err})") from err
    if len(datasets) < 2:
        raise BadSampleError(name, f"has {len(datasets)} slice: a 2D image, not a volume for the CT/MR adapter")
    cosines = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
    if np.abs(cosines - cosines[0]).max() > 1e-4:
        raise BadSampleError(name, "slices have different ImageOrientationPatient (a localizer or mixed stacks)")
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(shapes) > 1:
        raise BadSampleError(name, f"slices have different sizes {sorted(shapes)}")
    row_cos, col_cos = cosines[0, :3], cosines[0, 3:]
    normal = np.cross(row_cos, col_cos)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    try:
        order, report = slice_geometry(positions, normal)
    except ValueError as err:
        raise BadSampleError(name, str(err)) from None
    if report.tilt_degrees:
        raise BadSampleError(name, "; ".join(report.problems()) + ": tilted series are not resampled; "
                                                                   "correct the tilt first")
    if not report.regular and irregular == "reject":
        raise BadSampleError(name, "; ".join(report.problems()) +
                             " (set data.options.irregular_slices=interpolate to resample to even steps)")
    if not report.regular:
        log.warning("%s: %s; resampled linearly to %.3f mm steps", name, "; ".join(report.problems()), report.step)
    slices = np.stack([modality_float32(datasets[i].pixel_array, datasets[i], little_endian(datasets[i]))
                       for i in order])
    depth = (positions @ normal)[order]
    if not report.regular:
        slices = _stack_even(slices, depth, report.step)
    first = datasets[int(order[0])]
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing  # i: along a row (next column)
    lps[:3, 1] = col_cos * row_spacing  # j: down a column (next row)
    lps[:3, 2] = normal * report.step
    lps[:3, 3] = positions[order[0]]
    data = np.ascontiguousarray(slices.transpose(2, 1, 0))  # (slice, row, col) -> (i=col, j=row, k=slice)
    meta = {"format": "dicom-series", "series_uid": series.uid, "series_report": report.problems(),
            "modality": str(first.get("Modality", "") or ""), "slices": report.slices}
    return Volume(data, LPS_TO_RAS @ lps, name, meta)


def log_series(series: Sequence[SeriesFiles]) -> None:
    """Name every series found (one volume each)."""
    for s in series:
        log.info("DICOM series %s: %d file(s)", s.name, len(s.files))
