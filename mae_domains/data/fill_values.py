"""Fill values that mark nodata in float rasters, recognised even where the file does not declare them.

Float GeoTIFFs often fill nodata with the most negative float32 (-3.4028235e38), -9999 or NaN without a
nodata tag. One such file turns archive statistics into nonsense (mean -7.5e26), so:

- a finite value of magnitude ``>= HUGE`` (about float32's limit) is never a measurement: always nodata;
- NaN, +-Inf and the common fills -9999 and -32768 are nodata where they fill a whole pixel (every
  plane) and form a large constant block: at least ``min_fraction`` of the pixels. A NaN in one plane
  here and there is corruption, not nodata, and stays for the reader to refuse.
"""

from __future__ import annotations

import numpy as np

HUGE = 1e30  # float32 max is 3.4028235e38; nothing measured by these sensors comes near 1e30
COMMON_FILLS = (-9999.0, -32768.0)
MIN_FILL_FRACTION = 0.01


def fill_invalid(image: np.ndarray, min_fraction: float = MIN_FILL_FRACTION, spatial_dims: int = 2) -> np.ndarray:
    """Bool mask over the last ``spatial_dims`` axes: True where a pixel holds a fill value (see the module
    notes). Integer images hold no detected fills (their nodata must be declared)."""
    spatial = image.shape[-spatial_dims:]
    if not np.issubdtype(image.dtype, np.floating):
        return np.zeros(spatial, dtype=bool)
    planes = image.reshape(-1, *spatial)
    with np.errstate(invalid="ignore"):
        bad = (np.isfinite(planes) & (np.abs(planes) >= HUGE)).any(axis=0)
    least = max(1.0, min_fraction * bad.size)
    for hits in (np.isnan(planes), np.isposinf(planes), np.isneginf(planes), *(planes == v for v in COMMON_FILLS)):
        whole = hits.all(axis=0)
        if whole.sum() >= least:
            bad |= whole
    return bad


def declared_invalid(image: np.ndarray, nodata: float | None, spatial_dims: int = 2) -> np.ndarray:
    """Bool mask over the spatial axes: True where any plane equals the declared ``nodata`` value
    (NaN nodata matches NaN)."""
    spatial = image.shape[-spatial_dims:]
    if nodata is None:
        return np.zeros(spatial, dtype=bool)
    planes = image.reshape(-1, *spatial)
    hits = np.isnan(planes) if np.isnan(nodata) else planes == np.asarray(nodata).astype(planes.dtype)
    return hits.any(axis=0)
