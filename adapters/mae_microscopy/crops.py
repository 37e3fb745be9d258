"""Crops of large fields: windows (grid or seeded random), foreground-aware choice, z/time planes,
per-channel normalization and seeded flips.

- **Windows** are read, never whole fields; a field smaller than the crop is padded with invalid pixels.
- **Foreground**: a per-channel Otsu threshold from a coarse overview of the field (a pyramid level or a
  strided read) marks pixels brighter than background in any channel; a random window is redrawn (up to
  ``window_attempts`` times, keeping the best) until its foreground share reaches ``min_foreground``.
- **Normalization** per crop and channel: ``percentile`` maps the robust ``(low, high)`` percentiles to
  ``(0, 1)``; ``instance`` standardizes (CA-MAE's InstanceNorm); ``archive`` uses per-channel-name mean and
  std of the archive; ``none`` keeps the stored intensities (as float32). Only valid pixels count.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mae_domains.data.sample import BadSampleError, NormStats
from mae_domains.data.windows import PixelWindow
from mae_microscopy.sorted_percentiles import sorted_percentiles

NORMALIZATIONS = ("percentile", "instance", "archive", "none")
Z_MODES = ("max", "slices", "volume")


def grid_windows(height: int, width: int, size: int, stride: int | None = None) -> list[PixelWindow]:
    """Windows of ``size`` on a grid with ``stride`` (default ``size``) covering the field; the last row and
    column are moved inwards so they end at the border; one centred window when the field is smaller."""
    stride = int(stride or size)

    def starts(extent: int) -> list[int]:
        if extent <= size:
            return [(extent - size) // 2]
        out = list(range(0, extent - size + 1, stride))
        if out[-1] != extent - size:
            out.append(extent - size)
        return out

    return [PixelWindow(r, c, size, size) for r in starts(height) for c in starts(width)]


def random_window(rng: np.random.Generator, height: int, width: int, size: int) -> PixelWindow:
    """A uniformly drawn window inside the field (centred along a side shorter than the crop)."""
    r = int(rng.integers(0, height - size + 1)) if height > size else (height - size) // 2
    c = int(rng.integers(0, width - size + 1)) if width > size else (width - size) // 2
    return PixelWindow(r, c, size, size)


def crops_for_area(height: int, width: int, size: int) -> int:
    """How many crops make one pass over a field on average: its area in crops, at least one."""
    return max(1, int(round(height * width / float(size * size))))


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (maximum between-class variance over a histogram; the middle of the
    maximum when it is flat over an empty gap between the classes)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return float(values.max()) if values.size else 0.0
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    mean0 = np.cumsum(hist * centres) / np.maximum(weight0, 1)
    total = (hist * centres).sum()
    mean1 = (total - np.cumsum(hist * centres)) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))  # an empty gap between classes is a plateau:
    return float((edges[best[0] + 1] + edges[best[-1] + 1]) / 2)  # take its middle


class Foreground:
    """Per-channel thresholds of one field; a pixel is foreground when any channel exceeds its threshold."""

    def __init__(self, thresholds: Sequence[float]) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float32)

    @classmethod
    def from_overview(cls, overview: np.ndarray) -> "Foreground":
        """Thresholds from a coarse ``(C, h, w)`` view of the field."""
        return cls([otsu_threshold(channel) for channel in overview])

    def fraction(self, block: np.ndarray, valid: np.ndarray | None = None) -> float:
        """Foreground share of a ``(C, ..., h, w)`` block over its valid pixels."""
        shape = (-1,) + (1,) * (block.ndim - 1)
        fg = (block > self.thresholds.reshape(shape)).any(axis=0)
        while fg.ndim > 2:
            fg = fg.any(axis=0)
        if valid is not None:
            return float(fg[valid].mean()) if valid.any() else 0.0
        return float(fg.mean())


def project_planes(block: np.ndarray, z_mode: str) -> np.ndarray:
    """``(C, Z, h, w)`` -> ``(C, h, w)`` (``max`` projection, or the single plane of ``slices``), or kept as
    a volume ``(C, Z, h, w)``."""
    if z_mode == "volume":
        return block
    if z_mode == "max":
        return block.max(axis=1)
    if block.shape[1] != 1:
        raise ValueError(f"z_mode=slices reads one plane at a time, got {block.shape[1]}")
    return block[:, 0]


def empty_channels(block: np.ndarray, valid: np.ndarray) -> list[int]:
    """Channels whose valid pixels are all zero (an empty or failed acquisition)."""
    flat = block.reshape(block.shape[0], -1)[:, np.broadcast_to(valid, block.shape[1:]).reshape(-1)]
    return [i for i in range(block.shape[0]) if flat.shape[1] == 0 or not np.any(flat[i])]


def normalize_crop(image: np.ndarray, valid: np.ndarray, mode: str, names: Sequence[str],
                   percentiles: Sequence[float] = (1.0, 99.0), stats: NormStats | None = None) -> np.ndarray:
    """Per-channel normalization of ``(C, ..., h, w)`` over valid pixels (see the module docstring);
    invalid pixels become 0. ``archive`` falls back to ``percentile`` for a name the statistics lack."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"data.options.normalize must be one of {', '.join(NORMALIZATIONS)}, got {mode!r}")
    image = image.astype(np.float32, order="C", copy=True)
    mask = np.broadcast_to(valid, image.shape[1:])
    every_pixel = bool(mask.all())  # the usual crop inside its field: no masked copies, nothing to zero
    lookup = {}
    if mode == "archive" and stats is not None and stats.channel_names:
        lookup = {n: (m, s) for n, m, s in zip(stats.channel_names, stats.mean, stats.std)}
    for c in range(image.shape[0]):
        values = image[c].reshape(-1) if every_pixel else image[c][mask]
        if values.size == 0 or mode == "none":
            continue
        if mode == "archive" and names[c] in lookup:
            mean, std = lookup[names[c]]
            image[c] = (image[c] - mean) / max(float(std), 1e-6)
        elif mode == "instance":
            image[c] = (image[c] - values.mean()) / max(float(values.std()), 1e-6)
        else:
            low, high = sorted_percentiles(values, [float(percentiles[0]), float(percentiles[1])])
            image[c] = (image[c] - low) / max(float(high - low), 1e-6) if high > low else 0.0
    if not every_pixel:
        image[:, ~mask] = 0.0
    return image


def seeded_flips(image: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random one of the 8 dihedral transforms of the last two axes (cells have no up or left)."""
    turns = int(rng.integers(4))
    image, valid = np.rot90(image, turns, axes=(-2, -1)), np.rot90(valid, turns, axes=(-2, -1))
    if rng.random() < 0.5:
        image, valid = image[..., ::-1], valid[..., ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(valid)


def window_validity(window: PixelWindow, height: int, width: int) -> np.ndarray:
    """``(h, w)`` bool: which pixels of ``window`` lie inside the field."""
    rows = np.arange(window.row, window.row + window.height)
    cols = np.arange(window.col, window.col + window.width)
    return ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]


def check_not_empty(source: str, block: np.ndarray, valid: np.ndarray, names: Sequence[str], window: PixelWindow) -> None:
    """Raise :class:`BadSampleError` naming every all-zero channel of a crop."""
    empty = empty_channels(block, valid)
    if empty:
        listed = ", ".join(f"{names[i]!r} (index {i})" for i in empty)
        raise BadSampleError(source, f"channel {listed} is all zero in window {window.as_tuple()} (an empty or "
                                     "failed acquisition; set data.options.reject_empty_channels=false to keep it)")
