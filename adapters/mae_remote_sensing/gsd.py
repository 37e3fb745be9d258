"""Ground sample distance for Scale-MAE: from a file's georeferencing, through crops, into the position code.

- A scene's GSD (metres per pixel, x and y) comes from its geotransform and CRS
  (:func:`~mae_remote_sensing.scene.gsd_metres`: linear units through the CRS's factor, degrees converted at
  the scene's centre latitude on the WGS84 ellipsoid). :func:`file_gsd_metres` reads it from a path.
- A crop of ``side`` native pixels resized to ``out`` pixels has the effective GSD ``native * side / out``:
  a crop of 0.2 of the side resized to the full input size is 5x *finer* (GSD / 5); the whole input
  shrunk to 0.2 of its side is 5x *coarser* (GSD x 5). This is Scale-MAE's ``res = dx / h`` of its
  ``CustomCompose``, times the base resolution.
- The position code multiplies the patch grid by ``gsd / reference_gsd`` per sample before the sin-cos
  (Scale-MAE ``get_2d_sincos_pos_embed_with_resolution(D, grid, res)``, ``res`` = that ratio), in fp32.
- Multi-scale training draws a random resized crop per sample (Scale-MAE: area fraction in
  ``[scale_min, scale_max]`` = [0.2, 1.0] of a source window twice the input side, square), so the GSD
  factor relative to native is ``source_factor * sqrt(area)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mae_remote_sensing.scene import gsd_metres


def file_gsd_metres(path: str) -> tuple[float, float]:
    """GSD ``(x, y)`` in metres of a georeferenced raster file."""
    import rasterio

    with rasterio.open(path) as src:
        if src.crs is None:
            raise ValueError(f"{path}: no CRS, so no ground sample distance")
        return gsd_metres(src.transform, src.crs, src.height, src.width, path)


def effective_gsd(native_gsd: float | Sequence[float], crop_side_px: float, out_side_px: float) -> np.ndarray:
    """GSD of a crop of ``crop_side_px`` native pixels resized to ``out_side_px`` pixels."""
    if crop_side_px <= 0 or out_side_px <= 0:
        raise ValueError(f"crop and output sides must be positive, got {crop_side_px} and {out_side_px}")
    return np.asarray(native_gsd, np.float64) * (float(crop_side_px) / float(out_side_px))


def gsd_ratio(gsd: float | Sequence[float], reference_gsd: float) -> np.ndarray:
    """Scale-MAE's ``res``: the factor the patch grid is multiplied by before the sin-cos."""
    if reference_gsd <= 0:
        raise ValueError(f"reference GSD must be positive, got {reference_gsd}")
    return np.asarray(gsd, np.float64) / float(reference_gsd)


def draw_gsd_factor(rng: np.random.Generator, area_range: Sequence[float], source_factor: float) -> float:
    """One random resized crop's GSD factor (relative to native): ``source_factor * sqrt(area)`` with the
    area fraction uniform in ``area_range`` (torchvision/kornia RandomResizedCrop at ratio 1)."""
    low, high = float(area_range[0]), float(area_range[1])
    if not 0 < low <= high <= 1:
        raise ValueError(f"crop area range must satisfy 0 < min <= max <= 1, got {list(area_range)}")
    return float(source_factor) * math.sqrt(float(rng.uniform(low, high)))


def overview_level(overview_factors: Sequence[int], gsd_factor: float) -> int | None:
    """Index of the coarsest overview whose decimation does not exceed ``gsd_factor`` (None = full
    resolution). GDAL makes the same choice on a decimated read; this names it for messages and tests."""
    best = None
    for i, factor in enumerate(overview_factors):
        if factor <= gsd_factor * (1 + 1e-6):
            best = i
    return best
