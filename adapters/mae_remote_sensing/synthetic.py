"""Synthetic multispectral scenes: land-cover patches with plausible reflectance per wavelength.

Used by ``synthetic_sample`` (conformance kit) and by tests and benchmarks that write GeoTIFFs.
Values are Sentinel-2 style digital numbers (reflectance x 10000).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mae_remote_sensing.bands import wavelength_of

# Reflectance at (490, 560, 665, 705, 740, 783, 842, 865, 1610, 2190) nm for four surface types.
_WAVELENGTHS = np.array([443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190], np.float64)
_SIGNATURES = {
    "vegetation": np.array([0.03, 0.04, 0.08, 0.04, 0.12, 0.30, 0.38, 0.42, 0.43, 0.40, 0.01, 0.22, 0.10]),
    "water": np.array([0.08, 0.07, 0.06, 0.03, 0.025, 0.02, 0.015, 0.01, 0.01, 0.005, 0.001, 0.005, 0.003]),
    "urban": np.array([0.12, 0.13, 0.15, 0.17, 0.18, 0.19, 0.20, 0.21, 0.21, 0.20, 0.02, 0.26, 0.24]),
    "soil": np.array([0.07, 0.08, 0.11, 0.16, 0.19, 0.21, 0.23, 0.25, 0.26, 0.25, 0.02, 0.33, 0.28]),
}


def reflectance(surface: str, wavelength_nm: float) -> float:
    return float(np.interp(wavelength_nm, _WAVELENGTHS, _SIGNATURES[surface]))


def band_wavelengths(bands: Sequence[str]) -> list[float]:
    """Known Sentinel-2 wavelengths, and a spread over 450-2200 nm for unknown band names."""
    out = []
    for i, b in enumerate(bands):
        w = wavelength_of(b)
        out.append(w if w is not None else 450.0 + 1750.0 * i / max(len(bands) - 1, 1))
    return out


def land_cover(seed: int, height: int, width: int) -> np.ndarray:
    """``(H, W)`` int map of 0 vegetation, 1 water, 2 urban, 3 soil: fields, a river and a town."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cover = np.where(((xx // max(width / 4, 1)) + (yy // max(height / 3, 1))) % 2 == 0, 0, 3)
    centre = rng.uniform(0.2, 0.8) * width + 0.15 * width * np.sin(yy / max(height, 1) * 2 * np.pi * rng.uniform(0.5, 1.5))
    cover[np.abs(xx - centre) < max(1.5, width * 0.05)] = 1
    cy, cx, r = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width, rng.uniform(0.1, 0.25) * min(height, width)
    cover[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 2
    return cover


def synthetic_scene(seed: int, bands: Sequence[str], height: int, width: int, nodata_corner: bool = True,
                    noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``(C, H, W)`` float32 DNs and ``(H, W)`` validity (a triangular nodata corner when asked)."""
    rng = np.random.default_rng(seed + 1000)
    cover = land_cover(seed, height, width)
    surfaces = list(_SIGNATURES)
    image = np.empty((len(bands), height, width), np.float32)
    for c, w in enumerate(band_wavelengths(bands)):
        table = np.array([reflectance(s, w) for s in surfaces])
        image[c] = (table[cover] + noise * rng.standard_normal((height, width))) * 10000.0
    np.clip(image, 1.0, 10000.0, out=image)
    valid = np.ones((height, width), dtype=bool)
    if nodata_corner:
        yy, xx = np.mgrid[0:height, 0:width]
        valid &= xx + yy > min(height, width) // 4
    image[:, ~valid] = 0.0
    return image, valid
