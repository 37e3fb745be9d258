"""GeoTIFF / COG reading by window with rasterio: per-process handles, GSD, scale/offset, validity.

- Files are opened once per process (loader worker) and kept in a small LRU; a forked worker never
  reuses its parent's GDAL handles.
- A chip is read by its bounds on the target grid: ``src.read(window=..., out_shape=..., resampling=...)``
  resamples bands of any native resolution onto it, and a decimated read uses COG overviews.
- Validity: GDAL's mask (declared nodata value, internal mask or alpha band), NaN, fill values that are
  not declared (-3.4e38, large blocks of -9999: :mod:`mae_domains.data.fill_values`), and optionally a
  classification band (e.g. Sentinel-2 SCL) whose listed classes are invalid, or a bit-mask quality band
  (Landsat ``QA_PIXEL``) whose listed bits mark invalid pixels.
- Before a window is decoded, the blocks it touches are counted against ``max_pixels`` (a compressed file
  with one huge strip would otherwise decode whole for any chip).
- A file's bands are named from ``file_bands``, its band descriptions or its band count, in its own sensor's
  numbering, and mapped to Sentinel-2 names through its sensor (:mod:`mae_remote_sensing.sensors`).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window, from_bounds

from mae_domains.data.fill_values import fill_invalid
from mae_domains.data.pixel_limit import DEFAULT_MAX_PIXELS, check_pixel_count
from mae_domains.data.sample import BadSampleError
from mae_domains.data.handle_cache import HandleCache
from mae_domains.data.windows import PixelWindow
from mae_remote_sensing.bands import default_band_names, normalize_band_name, normalize_band_names
from mae_remote_sensing.scene import (
    ChipData, Scene, TargetGrid, check_same_crs, gsd_metres, target_grid_from_reference,
)
from mae_remote_sensing.sensors import (
    AUTO, Sensor, canonical_names, describe_bands, resolve_sensor, sensor_from_name, sensor_from_tags,
)

MAX_OPEN_FILES = int(os.environ.get("MAE_RS_MAX_OPEN_FILES", "64"))


def _open_raster(path: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except (RasterioError, OSError) as err:
        if path.startswith("/vsi"):  # a remote asset: unreachable, timed out or refused, not corrupt
            url = path.split("/", 2)[2] if path.startswith("/vsicurl/") else path
            raise BadSampleError(url, f"cannot read the remote raster ({err}); network limits: "
                                      "data.options.network_timeout, network_connect_timeout, network_retries") from None
        raise BadSampleError(path, f"cannot open as a raster: corrupt or not a GeoTIFF ({err})") from None


RASTERS = HandleCache(_open_raster, MAX_OPEN_FILES)


def open_raster(path: str):
    """This process's open rasterio dataset for ``path``."""
    return RASTERS.get(str(path))


@dataclass(frozen=True)
class ReadSettings:
    """How files are interpreted; built from the adapter options, shared by all scene kinds.

    ``file_bands``: names of a file's bands in order (else band descriptions, else Sentinel-2 order for 12/13
    bands); a file with another band count is rejected. ``mask_band`` + ``mask_invalid_values``: a
    classification band whose listed classes are invalid (e.g. SCL 0, 1, 3, 8, 9, 10); ``mask_invalid_bits``:
    bits of a quality bit mask that mark invalid pixels (Landsat QA_PIXEL 0 fill, 1 dilated cloud, 2 cirrus,
    3 cloud, 4 cloud shadow). ``sensor``: the data's sensor, or ``auto`` (metadata, file names, else
    Sentinel-2). ``max_pixels``: the most values one read may decode. ``network_*``: read and connect
    timeouts (seconds) and retries of remote rasters and STAC documents; ``stac_confine_hrefs``: local
    STAC hrefs must stay inside the folder of the STAC file given (:mod:`mae_remote_sensing.network`).
    """

    file_bands: tuple[str, ...] | None = None
    require_crs: bool = True
    gsd: tuple[float, float] | None = None  # used when a file has no georeferencing (or for Zarr)
    upsampling: str = "bilinear"
    downsampling: str = "average"
    mask_band: str | None = None
    mask_invalid_values: tuple[float, ...] = field(default_factory=tuple)
    mask_invalid_bits: tuple[int, ...] = field(default_factory=tuple)
    sensor: str = AUTO
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    network_timeout: float = 30.0
    network_connect_timeout: float = 10.0
    network_retries: int = 2
    stac_confine_hrefs: bool = True

    def resampling_for(self, native_gsd: float, target_gsd: float) -> Resampling:
        name = self.downsampling if target_gsd > native_gsd * (1 + 1e-6) else self.upsampling
        try:
            return Resampling[name]
        except KeyError:
            raise ValueError(f"unknown resampling {name!r}; use one of {[r.name for r in Resampling]}") from None


def file_band_names(src, path: str, settings: ReadSettings) -> tuple[str, ...]:
    """Band names of an open file: configured, described in the file, or a default by band count."""
    if settings.file_bands is not None:
        if len(settings.file_bands) != src.count:
            raise BadSampleError(path, f"has {src.count} band(s) but data.options.file_bands lists "
                                       f"{len(settings.file_bands)} ({list(settings.file_bands)})")
        return normalize_band_names(settings.file_bands)
    descriptions = src.descriptions
    if all(descriptions):
        return normalize_band_names(descriptions)
    return default_band_names(src.count)


def file_gsd(src, path: str, settings: ReadSettings) -> tuple[float, float] | None:
    """Metres per pixel (x, y) of an open file, or the configured ``gsd`` for files without a CRS."""
    if src.crs is None:
        if settings.require_crs:
            raise BadSampleError(path, "has no CRS (the file is not georeferenced); fix the file or set "
                                       "data.options.require_crs: false (and data.options.gsd)")
        return settings.gsd
    return gsd_metres(src.transform, src.crs, src.height, src.width, path)


def radiometric_scale_offset(src, band_index: int) -> tuple[float, float]:
    """``(scale, offset)`` so that ``value = DN * scale + offset`` for 1-based ``band_index``.

    GDAL's band scale/offset first; else Sentinel-2 tags (``(DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE``);
    else CF tags (``DN * scale_factor + add_offset``); else identity.
    """
    scale, offset = src.scales[band_index - 1], src.offsets[band_index - 1]
    if (scale not in (None, 1.0)) or (offset not in (None, 0.0)):
        return float(scale if scale is not None else 1.0), float(offset or 0.0)
    tags = {k.upper(): v for k, v in {**src.tags(), **src.tags(band_index)}.items()}
    add = next((tags[k] for k in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET") if k in tags), None)
    quant = next((tags[k] for k in ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE") if k in tags), None)
    if add is not None or quant is not None:
        q = float(quant) if quant is not None else 1.0
        return 1.0 / q, float(add or 0.0) / q
    if "SCALE_FACTOR" in tags or "ADD_OFFSET" in tags:
        return float(tags.get("SCALE_FACTOR", 1.0)), float(tags.get("ADD_OFFSET", 0.0))
    return 1.0, 0.0


def file_sensor(src, path: str, settings: ReadSettings) -> Sensor:
    """The sensor of an open file: the option, else its metadata tags, else its file name, else Sentinel-2."""
    name = os.path.basename(path)
    detected = [(sensor_from_tags(src.tags()), "metadata"), (sensor_from_name(name), f"file name {name}")]
    try:
        return resolve_sensor(settings.sensor, detected, path)
    except ValueError as err:
        raise BadSampleError(path, str(err).removeprefix(f"{path}: ")) from None


def blocks_touched(src, win: Window, indexes: Sequence[int]) -> tuple[int, int, int]:
    """``(planes, rows, cols)`` that decoding ``win`` of bands ``indexes`` costs at most: whole blocks (tiles or
    strips) of every band read, or of every band when the file interleaves them by pixel."""
    bh, bw = src.block_shapes[indexes[0] - 1]
    r0, r1 = max(0, int(math.floor(win.row_off))), min(src.height, int(math.ceil(win.row_off + win.height)))
    c0, c1 = max(0, int(math.floor(win.col_off))), min(src.width, int(math.ceil(win.col_off + win.width)))
    if r1 <= r0 or c1 <= c0:
        return (0, 0, 0)
    rows = min(src.height, (math.ceil(r1 / bh) - r0 // bh) * bh)
    cols = min(src.width, (math.ceil(c1 / bw) - c0 // bw) * bw)
    pixel_interleaved = str(getattr(src.interleaving, "name", "")).lower() == "pixel"
    return (src.count if pixel_interleaved else len(indexes), rows, cols)


def native_window(src, grid: TargetGrid, window: PixelWindow) -> Window:
    """The (fractional) window of ``src`` covering ``window`` of the target grid."""
    bounds = grid.bounds(window)
    if bounds is None:
        return Window(window.col, window.row, window.width, window.height)
    return from_bounds(*bounds, transform=src.transform)


def _outside(src, win: Window, tolerance: float = 1e-3) -> bool:
    return (win.col_off < -tolerance or win.row_off < -tolerance
            or win.col_off + win.width > src.width + tolerance or win.row_off + win.height > src.height + tolerance)


def _has_mask(src, indexes: Sequence[int]) -> bool:
    """False when GDAL reports every pixel of these bands valid (no nodata, mask or alpha)."""
    flags = src.mask_flag_enums
    return any(list(flags[i - 1]) != [MaskFlags.all_valid] for i in indexes)


def read_file_window(
    src, path: str, grid: TargetGrid, window: PixelWindow, indexes: Sequence[int], native_gsd: float | None,
    settings: ReadSettings,
) -> ChipData:
    """Bands ``indexes`` (1-based) of one open file resampled onto ``window`` of the target grid."""
    win = native_window(src, grid, window)
    target_gsd = math.sqrt(grid.gsd[0] * grid.gsd[1]) if grid.gsd else None
    resampling = (settings.resampling_for(native_gsd, target_gsd) if native_gsd and target_gsd
                  else Resampling[settings.upsampling])
    out_shape = (len(indexes), window.height, window.width)
    boundless = _outside(src, win)
    check_pixel_count(path, blocks_touched(src, win, indexes), settings.max_pixels, "reading this chip's blocks")
    try:
        data = src.read(list(indexes), window=win, out_shape=out_shape, resampling=resampling,
                        boundless=boundless, out_dtype="float32")
        valid = np.ones(out_shape[1:], dtype=bool)
        if boundless or _has_mask(src, indexes):
            masks = src.read_masks(list(indexes), window=win, out_shape=out_shape, resampling=resampling,
                                   boundless=boundless)
            # an averaged mask below full means the pixel mixes in nodata: keep only fully valid pixels,
            # except for averaging, where GDAL skips nodata and a majority suffices
            threshold = 128 if resampling is Resampling.average else 255
            valid = (masks >= threshold).all(axis=0)
    except RasterioError as err:
        raise BadSampleError(path, f"cannot read window {window.as_tuple()} (corrupt data? {err})") from None
    for k, band in enumerate(indexes):
        scale, offset = radiometric_scale_offset(src, band)
        if scale != 1.0 or offset != 0.0:
            data[k] = data[k] * np.float32(scale) + np.float32(offset)
    valid &= np.isfinite(data).all(axis=0) & ~fill_invalid(data)
    return ChipData(data, valid)


def read_class_mask(
    src, path: str, grid: TargetGrid, window: PixelWindow, index: int, invalid_values: Sequence[float],
    invalid_bits: Sequence[int] = (), max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """``(H, W)`` validity from a classification band whose ``invalid_values`` are invalid classes, or a
    quality bit mask whose ``invalid_bits`` mark invalid pixels (nearest resampling: never blended)."""
    win = native_window(src, grid, window)
    check_pixel_count(path, blocks_touched(src, win, [index]), max_pixels, "reading the mask band's blocks")
    try:
        classes = src.read(index, window=win, out_shape=(window.height, window.width),
                           resampling=Resampling.nearest, boundless=_outside(src, win))
    except RasterioError as err:
        raise BadSampleError(path, f"cannot read mask band window {window.as_tuple()} ({err})") from None
    invalid = np.isin(classes, np.asarray(invalid_values, dtype=classes.dtype))
    if invalid_bits:
        bits = sum(1 << int(b) for b in invalid_bits)
        invalid |= (classes.astype(np.int64) & bits) != 0
    return ~invalid


class RasterScene(Scene):
    """All bands in one (multi-band) GeoTIFF or COG."""

    def __init__(self, path: str, settings: ReadSettings, date: str | None = None) -> None:
        self.source = str(path)
        self.settings = settings
        self.date = date

    def __repr__(self) -> str:
        return f"RasterScene({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RasterScene) and (self.source, self.date) == (other.source, other.date)

    def __hash__(self) -> int:
        return hash((self.source, self.date))

    def _describe(self):
        """The open file, its bands' Sentinel-2 names (see :mod:`mae_remote_sensing.sensors`) and its GSD."""
        src = open_raster(self.source)
        names = canonical_names(file_sensor(src, self.source, self.settings),
                                file_band_names(src, self.source, self.settings))
        gsd = file_gsd(src, self.source, self.settings)
        return src, names, gsd

    def describe(self) -> str:
        src = open_raster(self.source)
        sensor = file_sensor(src, self.source, self.settings)
        names = file_band_names(src, self.source, self.settings)
        return f"{sensor.title} file with bands {describe_bands(sensor, names)}"

    def grid(self, bands: Sequence[str] | None, target_gsd: float | None) -> TargetGrid:
        src, names, gsd = self._describe()
        if target_gsd is not None and gsd is None:
            raise BadSampleError(self.source, "target_gsd needs a georeferenced file or data.options.gsd")
        return target_grid_from_reference(src.transform, src.crs, src.height, src.width, gsd, target_gsd, names) \
            if gsd is not None else TargetGrid(src.height, src.width, src.transform, None, None, names)

    def read(self, window: PixelWindow, bands: Sequence[str], grid: TargetGrid) -> ChipData:
        src, names, gsd = self._describe()
        check_same_crs(grid, src.crs, self.source)
        lookup = {n: i + 1 for i, n in enumerate(names)}
        wanted = [normalize_band_name(b) for b in bands]
        missing = [b for b in wanted if b not in lookup]
        if missing:
            raise BadSampleError(self.source, f"lacks band(s) {missing}; it holds a {self.describe()}")
        native = math.sqrt(gsd[0] * gsd[1]) if gsd else None
        chip = read_file_window(src, self.source, grid, window, [lookup[b] for b in wanted], native, self.settings)
        if self.settings.mask_band is not None:
            own = {n: i + 1 for i, n in enumerate(file_band_names(src, self.source, self.settings))}
            mask_name = normalize_band_name(self.settings.mask_band)
            if mask_name not in own and mask_name not in lookup:
                raise BadSampleError(self.source, f"lacks mask band {mask_name!r}; it has {list(own)}")
            chip.valid &= read_class_mask(src, self.source, grid, window, own.get(mask_name) or lookup[mask_name],
                                          self.settings.mask_invalid_values, self.settings.mask_invalid_bits,
                                          self.settings.max_pixels)
        return chip
