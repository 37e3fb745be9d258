"""Synthetic fluorescence fields for the conformance kit, tests and benchmarks: round cells whose stains
differ per channel name, on a dark camera background with shot noise.

Each Cell Painting stain has its own look (``DNA``: bright nuclei; ``RNA``: nucleoli and cytoplasm; ``ER``:
a ring around the nucleus; ``AGP``: the cell outline; ``Mito``: puncta in the cytoplasm); other names get a
smooth cytoplasm stain with a name-dependent brightness, so every channel is distinguishable.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

CAMERA_OFFSET = 100.0


def _name_seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0xFFFF


def cell_layout(rng: np.random.Generator, height: int, width: int, cells: int, region: tuple[float, float, float, float] | None = None):
    """Centres ``(n, 2)`` and nucleus / cell radii of ``cells`` cells, inside ``region`` = (top, left,
    bottom, right) as fractions of the field (the whole field by default)."""
    top, left, bottom, right = region or (0.0, 0.0, 1.0, 1.0)
    centres = np.stack([rng.uniform(top * height, bottom * height, cells),
                        rng.uniform(left * width, right * width, cells)], axis=1)
    scale = min(height, width)
    nucleus = rng.uniform(0.04, 0.07, cells) * max(scale, 48)
    cell = nucleus * rng.uniform(1.8, 2.4, cells)
    return centres, nucleus, cell


def stain(name: str, dist: np.ndarray, nucleus: np.ndarray, cell: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Expected photons of one stain ``(H, W)`` from per-cell distances ``(n, H, W)`` to the centres."""
    d = dist / nucleus[:, None, None]
    c = dist / cell[:, None, None]
    inside_cell = (c < 1.0).astype(np.float32)
    if name == "DNA":
        signal = np.clip(1.0 - d**2, 0, None) * 3000
    elif name == "RNA":
        signal = inside_cell * 400 + np.exp(-((d - 0.3) ** 2) / 0.02) * 1500
    elif name == "ER":
        signal = np.exp(-((d - 1.3) ** 2) / 0.08) * 1800
    elif name == "AGP":
        signal = np.exp(-((c - 0.95) ** 2) / 0.005) * 2000
    elif name == "Mito":
        signal = inside_cell * (d > 1.0) * 600 * (1 + np.sin(dist * 1.7 + rng.uniform(0, 6.28)) ** 8 * 3)
    else:
        level = 300 + _name_seed(name) % 1500
        signal = inside_cell * level * (1.2 - c)
    return signal.max(axis=0)


def synthetic_field(seed: int, names: Sequence[str], height: int = 96, width: int = 96, cells: int = 6,
                    region: tuple[float, float, float, float] | None = None, planes: int = 1,
                    dtype: str = "uint16") -> np.ndarray:
    """A ``(C, H, W)`` field (``(C, Z, H, W)`` when ``planes > 1``: intensity peaks at the middle plane) of
    ``cells`` cells in ``region``, with camera offset and Poisson noise, as ``dtype``."""
    rng = np.random.default_rng(seed)
    centres, nucleus, cell = cell_layout(rng, height, width, cells, region)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dist = np.sqrt((yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2)
    clean = np.stack([stain(name, dist, nucleus, cell, rng) for name in names]).astype(np.float32)
    if planes > 1:
        focus = np.exp(-((np.arange(planes) - (planes - 1) / 2) ** 2) / max(planes / 2, 1.0))
        clean = clean[:, None] * focus[None, :, None, None].astype(np.float32)
    noisy = rng.poisson(np.maximum(clean, 0) + CAMERA_OFFSET).astype(np.float32)
    if np.dtype(dtype).kind == "f":
        return (noisy / 4095.0).astype(dtype)
    info = np.iinfo(dtype)
    if info.max < 4096:  # 8-bit: scale 12-bit-like counts down
        noisy = noisy / 16.0
    return np.clip(noisy, 0, info.max).astype(dtype)
