"""What every scene source (GeoTIFF, one file per band, Zarr) offers: a target pixel grid and chip reads.

A *scene* is one place (and one date) that may be far larger than a chip. It owns only paths and
settings, so it pickles into loader workers; file handles live in per-process caches. Its *target
grid* is where chips are cut: the finest native grid of the selected bands, or a coarser/finer one
when ``target_gsd`` (metres per pixel) is given. Bands at other native resolutions are resampled to it
by the reader (rasterio window reads with ``out_shape``), never by hand.
"""

from __future__ import annotations

from functools import lru_cache

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from affine import Affine

from mae_domains.data.sample import BadSampleError
from mae_domains.data.windows import PixelWindow


@dataclass(frozen=True)
class TargetGrid:
    """The pixel grid chips are cut from.

    ``transform`` maps target pixels to the scene CRS (None without georeferencing); ``gsd`` is metres
    per pixel along x and y (None when unknown); ``band_names`` are every band the scene holds.
    """

    height: int
    width: int
    transform: Affine | None
    crs: str | None
    gsd: tuple[float, float] | None
    band_names: tuple[str, ...]

    def bounds(self, window: PixelWindow) -> tuple[float, float, float, float] | None:
        """``(left, bottom, right, top)`` of ``window`` in the scene CRS (north-up grids)."""
        if self.transform is None:
            return None
        xs, ys = [], []
        for r, c in ((window.row, window.col), (window.row + window.height, window.col + window.width)):
            x, y = self.transform @ (c, r)
            xs.append(x)
            ys.append(y)
        return (min(xs), min(ys), max(xs), max(ys))


@dataclass
class ChipData:
    """Pixels of one chip: ``image`` ``(C, H, W)`` float32 in physical units, ``valid`` ``(H, W)`` bool."""

    image: np.ndarray
    valid: np.ndarray


class Scene(ABC):
    """One readable place/date. Subclasses: :class:`~mae_remote_sensing.geotiff.RasterScene`,
    :class:`~mae_remote_sensing.band_files.BandFileScene`, :class:`~mae_remote_sensing.zarr_store.ZarrScene`."""

    source: str
    date: str | None = None

    @abstractmethod
    def grid(self, bands: Sequence[str] | None, target_gsd: float | None) -> TargetGrid:
        """The target grid for these bands (None = all) at ``target_gsd`` metres (None = finest native)."""

    @abstractmethod
    def read(self, window: PixelWindow, bands: Sequence[str], grid: TargetGrid) -> ChipData:
        """Pixels of ``window`` of ``grid`` (this scene's target grid, or that of the first frame of a time
        series: frames are matched by bounds), bands in the order asked; raises :class:`BadSampleError`."""

    @property
    def files(self) -> tuple[str, ...]:
        """The files (or stores) the scene reads; one unless a reader says more."""
        return (self.source,)

    def describe(self) -> str:
        """What the scene holds, for messages (sensor, bands); readers with a sensor say more."""
        return f"scene with bands {list(self.grid(None, None).band_names)}"

    def extent(self) -> tuple[float, float, float, float] | None:
        """``(left, bottom, right, top)`` of the whole scene in its CRS (None without georeferencing)."""
        grid = self.grid(None, None)
        return grid.bounds(PixelWindow(0, 0, grid.height, grid.width))


# ----- georeferencing helpers ---------------------------------------------------------------------------
def metres_per_degree(latitude_deg: float) -> tuple[float, float]:
    """Length of one degree of longitude and of latitude in metres on the WGS84 ellipsoid."""
    phi = math.radians(latitude_deg)
    lat = 111132.92 - 559.82 * math.cos(2 * phi) + 1.175 * math.cos(4 * phi) - 0.0023 * math.cos(6 * phi)
    lon = 111412.84 * math.cos(phi) - 93.5 * math.cos(3 * phi) + 0.118 * math.cos(5 * phi)
    return lon, lat


def pixel_size_in_crs(transform: Affine) -> tuple[float, float]:
    """Pixel width and height in CRS units, also for rotated geotransforms."""
    return math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)


def gsd_metres(transform: Affine, crs, height: int, width: int, source: str) -> tuple[float, float]:
    """Ground sample distance ``(x, y)`` in metres from the geotransform; degrees (geographic CRS) are
    converted at the scene's centre latitude, feet and other linear units through the CRS's factor."""
    size_x, size_y = pixel_size_in_crs(transform)
    if crs.is_geographic:
        _, centre_lat = transform @ (width / 2.0, height / 2.0)
        if not -90.0 <= centre_lat <= 90.0:
            raise BadSampleError(source, f"geographic CRS but centre latitude {centre_lat:.3f} is outside [-90, 90]")
        lon_m, lat_m = metres_per_degree(centre_lat)
        return size_x * lon_m, size_y * lat_m
    try:
        _, factor = crs.linear_units_factor
    except Exception as err:  # a CRS whose units GDAL cannot tell
        raise BadSampleError(source, f"cannot tell the linear unit of CRS {crs} ({err})") from None
    return size_x * factor, size_y * factor


def check_same_crs(grid: TargetGrid, crs, source: str) -> None:
    """Frames of one series and bands of one scene must share a CRS (nothing is reprojected)."""
    own = crs_text(crs)
    if grid.crs is not None and own is not None and own != grid.crs:
        raise BadSampleError(source, f"CRS {own} differs from the reference grid's {grid.crs}; reproject first")


def crs_text(crs) -> str | None:
    """``EPSG:32633`` when the CRS has an EPSG code, else its WKT; None without CRS."""
    if crs is None:
        return None
    return _crs_text_of_wkt(crs.to_wkt())


@lru_cache(maxsize=256)
def _crs_text_of_wkt(wkt: str) -> str:
    # looking up the EPSG code of a CRS that carries none (GRASS and other exports) takes PROJ a tenth of
    # a second or more: once per CRS, not once per read
    from rasterio.crs import CRS

    epsg = CRS.from_wkt(wkt).to_epsg()
    return f"EPSG:{epsg}" if epsg else wkt


def target_grid_from_reference(
    transform: Affine, crs, height: int, width: int, native_gsd: tuple[float, float],
    target_gsd: float | None, band_names: tuple[str, ...],
) -> TargetGrid:
    """A grid over the same extent as a reference raster at ``target_gsd`` metres (None = native)."""
    if target_gsd is None:
        return TargetGrid(height, width, transform, crs_text(crs), native_gsd, band_names)
    fx, fy = target_gsd / native_gsd[0], target_gsd / native_gsd[1]
    out_h, out_w = max(1, int(math.floor(height / fy + 1e-6))), max(1, int(math.floor(width / fx + 1e-6)))
    return TargetGrid(out_h, out_w, transform @ Affine.scale(fx, fy), crs_text(crs), (float(target_gsd),) * 2, band_names)
