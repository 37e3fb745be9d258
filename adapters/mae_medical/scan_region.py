"""The scan region of an ultrasound frame: the pixels that show tissue. Burned-in text, calipers, colour
bars and logos lie outside it; those pixels are invalid (never targets, never in statistics).

In order of preference (``source="auto"``):

1. ``dicom``: the union of the 2D regions of the file's ``SequenceOfUltrasoundRegions`` (Region Spatial
   Format 1; M-mode, spectral Doppler and waveform regions are not 2D images). Region corners are
   inclusive pixel coordinates.
2. ``mask``: a mask image given by the user (nonzero = inside): one image for every frame, or a folder
   holding ``<file name>.png`` / ``<file stem>.png`` per file. A mask of another size than the frame
   is an error naming both files and both sizes.
3. ``estimate``: the pixels of a scan are dense: after a median filter that removes text strokes and
   thin lines (and evens out speckle), nearly every pixel of a window is above the threshold, while
   burned-in text rows (institution, patient, study, MI/TI) are sparse strokes on black. Power and
   grey-scale bars at the sides are dense but narrow, and go with an opening by a horizontal line
   wider than them. The largest dense component, filled by its convex hull (a sector or linear scan
   is convex, and dark fluid inside it stays inside) and grown back by the few pixels the density
   window takes off its edge, is the region. Text or bars a few pixels from the scan stay outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset

from mae_domains.data.sample import BadSampleError
from mae_medical.raster_images import read_raster

REGION_SOURCES = ("auto", "dicom", "mask", "estimate", "none")
SPATIAL_FORMAT_2D = 1
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class RegionSettings:
    """``source``: one of :data:`REGION_SOURCES`; ``mask``: a mask image or a folder of them;
    ``threshold``: gray level (0-1) above which a pixel can belong to the estimated region;
    ``min_fraction``: an estimate covering less of the frame is discarded (all pixels valid)."""

    source: str = "auto"
    mask: str | None = None
    threshold: float = 0.04
    min_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.source not in REGION_SOURCES:
            raise ValueError(f"scan_region must be one of {', '.join(REGION_SOURCES)}, got {self.source!r}")
        if self.source == "mask" and not self.mask:
            raise ValueError("scan_region='mask' needs region_mask (a mask image or a folder of them)")
        if self.mask and not Path(self.mask).exists():
            raise FileNotFoundError(f"region_mask {self.mask}: no such file or folder")


def dicom_regions(header: Dataset | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Union of the 2D ultrasound regions, or None when the header has none."""
    if header is None:
        return None
    regions = header.get("SequenceOfUltrasoundRegions") or []
    mask = np.zeros(shape, bool)
    found = False
    for item in regions:
        if int(item.get("RegionSpatialFormat", SPATIAL_FORMAT_2D)) != SPATIAL_FORMAT_2D:
            continue
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except AttributeError:
            continue
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(shape[1] - 1, x1), min(shape[0] - 1, y1)
        if x1 >= x0 and y1 >= y0:
            mask[y0:y1 + 1, x0:x1 + 1] = True
            found = True
    return mask if found else None


def mask_file_for(mask: str, source: str) -> Path | None:
    """The mask image of ``source``: ``mask`` itself, or ``<name>.png`` / ``<stem>.png`` in a folder."""
    root = Path(mask)
    if root.is_file():
        return root
    name = Path(source).name
    for stem in (name, Path(name).stem):
        for suffix in MASK_SUFFIXES:
            candidate = root / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


@lru_cache(maxsize=64)
def _mask_image(path: str, mtime_ns: int) -> np.ndarray:
    image, _ = read_raster(path)
    return image > 0


def user_mask(mask: str, source: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The user's mask for ``source`` (None when a folder has none for it); wrong size: BadSampleError."""
    path = mask_file_for(mask, source)
    if path is None:
        return None
    region = _mask_image(str(path), path.stat().st_mtime_ns)
    if region.shape != tuple(shape):
        raise BadSampleError(source, f"scan-region mask {path} is {region.shape[1]} x {region.shape[0]} pixels "
                                     f"but the frame is {shape[1]} x {shape[0]}")
    if not region.any():
        raise BadSampleError(source, f"scan-region mask {path} marks no pixel as inside")
    return region


DENSE_FRACTION = 0.9  # share of a window's pixels above the threshold for the window to count as scan


def estimate_region(gray: np.ndarray, threshold: float = 0.04, min_fraction: float = 0.05) -> np.ndarray | None:
    """Automatic scan region of a ``(H, W)`` frame in [0, 1] (module docstring), or None when nothing
    large enough is found."""
    h, w = gray.shape
    k = max(3, (min(h, w) // 48) | 1)  # the density window: wider than text strokes and caliper lines
    smooth = cv2.medianBlur(np.round(np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8), max(3, (2 * k // 3) | 1))
    bright = (smooth > threshold * 255).astype(np.float32)
    dense = (cv2.blur(bright, (k, k), borderType=cv2.BORDER_CONSTANT) >= DENSE_FRACTION).astype(np.uint8)
    core = cv2.morphologyEx(dense, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * k + 1, 1)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
    if count <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < min_fraction * h * w:
        return None
    hull = cv2.convexHull(cv2.findNonZero((labels == largest).astype(np.uint8)))
    region = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(region, hull, 1)
    edge = max(0, int(np.ceil(DENSE_FRACTION * k)) - k // 2 - 1)  # how far inside the edge a window is dense
    if edge:
        region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * edge + 1, 2 * edge + 1)))
    return region.astype(bool)


def scan_region(gray: np.ndarray, source: str, header: Dataset | None,
                settings: RegionSettings) -> tuple[np.ndarray | None, str]:
    """``(valid mask or None for all valid, how it was found)`` for one frame (module docstring)."""
    shape = gray.shape
    if settings.source == "none":
        return None, "none"
    if settings.source in ("auto", "dicom"):
        region = dicom_regions(header, shape)
        if region is not None:
            return region, "dicom"
        if settings.source == "dicom":
            raise BadSampleError(source, "has no 2D SequenceOfUltrasoundRegions (scan_region='dicom')")
    if settings.source in ("auto", "mask") and settings.mask:
        region = user_mask(settings.mask, source, shape)
        if region is not None:
            return region, "mask"
        if settings.source == "mask":
            raise BadSampleError(source, f"no scan-region mask for this file in {settings.mask}")
    region = estimate_region(gray, settings.threshold, settings.min_fraction)
    return (region, "estimate") if region is not None else (None, "estimate failed: all pixels valid")
