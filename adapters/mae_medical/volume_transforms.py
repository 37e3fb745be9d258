"""Intensity presets, foreground crop and seeded crops of ``(Z, Y, X)`` volumes with a validity mask.

CT: a Hounsfield window scaled to [0, 1] and clipped (MONAI's ``ScaleIntensityRange`` with clip, the
SelfMedMAE/BTCV recipe). MR: percentile normalization (0.5th..99.5th percentile of the foreground to
[0, 1], MONAI's ``ScaleIntensityRangePercentiles`` idea). Crops smaller than the volume are drawn at a
seeded random position; a volume smaller than the crop is padded and the padding marked invalid.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from monai.transforms.utils import generate_spatial_bounding_box

HU_WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (-175.0, 250.0),
    "lung": (-1000.0, 400.0),
    "bone": (-450.0, 1050.0),  # centre 300, width 1500
    "wide": (-1000.0, 1000.0),
}


def intensity_to_unit(volume: np.ndarray, preset: str, mr_percentiles: Sequence[float] = (0.5, 99.5)) -> np.ndarray:
    """Scale to [0, 1]: a CT window name from :data:`HU_WINDOWS`, ``[low, high]`` in HU, or ``mr``."""
    if isinstance(preset, str) and preset == "mr":
        body = volume[volume > volume.min()] if np.any(volume > volume.min()) else volume.ravel()
        low, high = np.percentile(body, list(mr_percentiles))
    elif isinstance(preset, str):
        if preset not in HU_WINDOWS:
            raise ValueError(f"unknown intensity preset {preset!r}; use one of {', '.join(HU_WINDOWS)}, mr "
                             "or [low, high] in HU")
        low, high = HU_WINDOWS[preset]
    else:
        low, high = (float(v) for v in preset)
    scale = max(float(high) - float(low), 1e-6)
    return np.clip((volume - float(low)) / scale, 0.0, 1.0).astype(np.float32)


def foreground_box(volume: np.ndarray, threshold: float = 0.0, margin: int = 2) -> tuple[list[int], list[int]]:
    """``(start, end)`` of voxels above ``threshold`` plus ``margin`` (MONAI's bounding box); the whole
    volume when nothing is above it."""
    if not np.any(volume > threshold):
        return [0, 0, 0], list(volume.shape)
    start, end = generate_spatial_bounding_box(volume[None], lambda x: x > threshold, margin=margin)
    return [max(int(s), 0) for s in start], [min(int(e), n) for e, n in zip(end, volume.shape)]


def crop_box(volume: np.ndarray, start: Sequence[int], end: Sequence[int]) -> np.ndarray:
    return volume[tuple(slice(s, e) for s, e in zip(start, end))]


def crop_or_pad(volume: np.ndarray, size: int | Sequence[int], rng: np.random.Generator | None,
                valid: np.ndarray | None = None, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(crop, valid, origin)``: a ``size`` crop of ``(Z, Y, X)`` at a random (``rng``) or centred
    (None) origin; axes shorter than ``size`` are padded (centred) with ``fill`` and marked invalid.
    ``origin`` is the crop's first voxel in the volume (negative where padded)."""
    sizes = [int(size)] * 3 if isinstance(size, (int, np.integer)) else [int(s) for s in size]
    origin = []
    for n, s in zip(volume.shape, sizes):
        if n >= s:
            origin.append(int(rng.integers(0, n - s + 1)) if rng is not None else (n - s) // 2)
        else:
            origin.append(-((s - n) // 2))
    out = np.full(sizes, fill, np.float32)
    mask = np.zeros(sizes, bool)
    src = tuple(slice(max(o, 0), min(o + s, n)) for o, s, n in zip(origin, sizes, volume.shape))
    dst = tuple(slice(max(-o, 0), max(-o, 0) + (sl.stop - sl.start)) for o, sl in zip(origin, src))
    out[dst] = volume[src]
    mask[dst] = True if valid is None else valid[src]
    return out, mask, origin


def random_flips(rng: np.random.Generator, *arrays: np.ndarray, p: float = 0.5) -> list[np.ndarray]:
    """Flip all ``arrays`` together along each spatial axis with probability ``p`` (seeded)."""
    flips = [axis for axis in range(3) if rng.random() < p]
    return [np.ascontiguousarray(np.flip(a, axis=tuple(flips))) if flips else a for a in arrays]
