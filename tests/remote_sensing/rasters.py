"""Helpers that write small GeoTIFFs, COGs and Zarr stores with real geotransforms and CRS."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

UTM33N = "EPSG:32633"
ORIGIN = (500000.0, 5800000.0)  # west, north in UTM 33N


def write_raster(
    path: Path,
    data: np.ndarray,
    res: float | tuple[float, float] = 10.0,
    crs: str | None = UTM33N,
    origin: tuple[float, float] = ORIGIN,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tiled: bool = False,
    block: int = 32,
    overviews: Sequence[int] = (),
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    tags: dict | None = None,
) -> Path:
    """``data`` ``(C, H, W)`` (or ``(H, W)``) as a GeoTIFF: striped unless ``tiled``; optional overviews."""
    data = data[None] if data.ndim == 2 else data
    rx, ry = (res, res) if np.isscalar(res) else res
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=crs, transform=from_origin(origin[0], origin[1], rx, ry) if crs else None,
                   nodata=nodata)
    if tiled:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    else:
        profile.update(tiled=False, blockysize=1)
    if crs is None:
        profile.pop("transform")
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, name in enumerate(descriptions, start=1):
                dst.set_band_description(i, name)
        if scales is not None:
            dst.scales = tuple(scales)
        if offsets is not None:
            dst.offsets = tuple(offsets)
        if tags:
            dst.update_tags(**tags)
        if overviews:
            dst.build_overviews(list(overviews), Resampling.average)
    return path


def ramp(height: int, width: int, res: float, origin: tuple[float, float] = ORIGIN) -> np.ndarray:
    """Easting of each pixel centre in km: linear, so bilinear resampling reproduces it exactly."""
    xs = origin[0] + (np.arange(width) + 0.5) * res
    return np.broadcast_to(xs / 1000.0, (height, width)).astype(np.float32)
