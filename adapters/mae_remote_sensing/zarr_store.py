"""Scenes in Zarr arrays: ``(C, H, W)`` for one date or ``(T, C, H, W)`` for a time series.

Metadata comes from the array's attributes, the config overriding them:
``band_names`` (or ``bands``), ``gsd`` (metres; a number or ``[x, y]``), ``dates`` (ISO strings, one per
frame), ``crs`` and ``transform`` (six GDAL/affine numbers ``a, b, c, d, e, f``), ``nodata``.
Chips are slices of the array (only the chunks they touch are read); a target GSD other than the
native one is reached with ``torch.nn.functional.interpolate`` (area when coarser, bilinear when finer).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.crs import CRS

from mae_domains.data.fill_values import fill_invalid
from mae_domains.data.pixel_limit import check_pixel_count
from mae_domains.data.sample import BadSampleError
from mae_domains.data.windows import PixelWindow
from mae_remote_sensing.bands import default_band_names, normalize_band_name, normalize_band_names
from mae_remote_sensing.geotiff import HandleCache, ReadSettings
from mae_remote_sensing.scene import ChipData, Scene, TargetGrid, gsd_metres
from mae_remote_sensing.sensors import canonical_names, resolve_sensor, sensor_from_tags


def _open_zarr_array(key: str):
    import zarr

    store, _, array_path = key.partition("::")
    try:
        return zarr.open_array(store, path=array_path or None, mode="r")
    except Exception as err:
        where = f"{store}::{array_path}" if array_path else store
        raise BadSampleError(where, f"cannot open as a Zarr array ({type(err).__name__}: {err})") from None


ZARR_ARRAYS = HandleCache(_open_zarr_array)


def list_zarr_arrays(store: str | Path) -> list[tuple[str, tuple[int, ...]]]:
    """``(array path, shape)`` of every 3-D or 4-D array in a Zarr store (the root itself may be one)."""
    import zarr

    root = zarr.open(str(store), mode="r")
    if isinstance(root, zarr.Array):
        return [("", tuple(root.shape))]
    found = []
    for name, member in root.members(max_depth=None):
        if isinstance(member, zarr.Array) and member.ndim in (3, 4):
            found.append((name, tuple(member.shape)))
    return sorted(found)


def zarr_dates(store: str | Path, array_path: str) -> list[str] | None:
    dates = ZARR_ARRAYS.get(f"{store}::{array_path}").attrs.get("dates")
    return [str(d) for d in dates] if dates is not None else None


class ZarrScene(Scene):
    """One frame (``frame`` of a 4-D array, or the whole 3-D array) of a Zarr array."""

    def __init__(self, store: str, array_path: str, settings: ReadSettings, frame: int | None = None,
                 date: str | None = None) -> None:
        self.store = str(store)
        self.array_path = array_path
        self.settings = settings
        self.frame = frame
        self.source = f"{self.store}::{array_path}" if array_path else self.store
        if frame is not None:
            self.source += f"[{frame}]"
        self.date = date

    @property
    def files(self) -> tuple[str, ...]:
        return (self.store,)

    def __repr__(self) -> str:
        return f"ZarrScene({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZarrScene) and self.source == other.source

    def __hash__(self) -> int:
        return hash(self.source)

    @property
    def array(self):
        return ZARR_ARRAYS.get(f"{self.store}::{self.array_path}")

    def _attrs(self) -> dict[str, Any]:
        return dict(self.array.attrs)

    def _band_names(self, channels: int) -> tuple[str, ...]:
        attrs = self._attrs()
        names = self.settings.file_bands or attrs.get("band_names") or attrs.get("bands")
        if names is None:
            return default_band_names(channels)
        names = normalize_band_names(names)
        if len(names) != channels:
            raise BadSampleError(self.source, f"has {channels} band(s) but its band names list {len(names)} "
                                              f"({list(names)}); check the attributes or data.options.file_bands")
        try:
            sensor = resolve_sensor(self.settings.sensor, [(sensor_from_tags(attrs), "attributes")], self.source)
        except ValueError as err:
            raise BadSampleError(self.source, str(err).removeprefix(f"{self.source}: ")) from None
        return canonical_names(sensor, names)

    def _native(self) -> tuple[int, int, int, tuple[float, float] | None, Affine | None, str | None]:
        array = self.array
        if array.ndim == 4 and self.frame is None:
            raise BadSampleError(self.source, f"is a time series {tuple(array.shape)}; pick a frame")
        if array.ndim not in (3, 4):
            raise BadSampleError(self.source, f"expected (C, H, W) or (T, C, H, W), got shape {tuple(array.shape)}")
        channels, height, width = array.shape[-3:]
        attrs = self._attrs()
        gsd = self.settings.gsd
        transform = Affine(*attrs["transform"][:6]) if attrs.get("transform") else None
        if gsd is None and attrs.get("gsd") is not None:
            value = attrs["gsd"]
            gsd = (float(value), float(value)) if np.isscalar(value) else (float(value[0]), float(value[1]))
        crs = attrs.get("crs")
        if crs is None and self.settings.require_crs and transform is not None:
            raise BadSampleError(self.source, "has a transform attribute but no crs attribute")
        if gsd is None and transform is not None and crs is not None:
            gsd = gsd_metres(transform, CRS.from_user_input(crs), height, width, self.source)
        return channels, height, width, gsd, transform, crs

    def grid(self, bands: Sequence[str] | None, target_gsd: float | None) -> TargetGrid:
        channels, height, width, gsd, transform, crs = self._native()
        names = self._band_names(channels)
        if target_gsd is None or gsd is None:
            if target_gsd is not None:
                raise BadSampleError(self.source, "target_gsd needs a gsd attribute or data.options.gsd")
            return TargetGrid(height, width, transform, crs, gsd, names)
        fx, fy = target_gsd / gsd[0], target_gsd / gsd[1]
        out_h, out_w = max(1, int(height / fy + 1e-6)), max(1, int(width / fx + 1e-6))
        scaled = transform @ Affine.scale(fx, fy) if transform is not None else None
        return TargetGrid(out_h, out_w, scaled, crs, (float(target_gsd),) * 2, names)

    def read(self, window: PixelWindow, bands: Sequence[str], grid: TargetGrid) -> ChipData:
        channels, height, width, gsd, _, _ = self._native()
        names = self._band_names(channels)
        lookup = {n: i for i, n in enumerate(names)}
        wanted = [normalize_band_name(b) for b in bands]
        missing = [b for b in wanted if b not in lookup]
        if missing:
            raise BadSampleError(self.source, f"lacks band(s) {missing}; it has {list(names)}")
        fx = fy = 1.0
        if grid.gsd is not None and gsd is not None:
            fx, fy = grid.gsd[0] / gsd[0], grid.gsd[1] / gsd[1]
        r0, c0 = int(math.floor(window.row * fy)), int(math.floor(window.col * fx))
        r1 = min(height, int(math.ceil((window.row + window.height) * fy)))
        c1 = min(width, int(math.ceil((window.col + window.width) * fx)))
        first = min(lookup[b] for b in wanted)
        last = max(lookup[b] for b in wanted)
        chunks = tuple(getattr(self.array, "chunks", None) or ())[-2:]
        area = max((r1 - r0) * (c1 - c0), int(np.prod(chunks)) if len(chunks) == 2 else 0)
        check_pixel_count(self.source, (last + 1 - first, area), self.settings.max_pixels, "reading this chip")
        try:
            prefix = (self.frame,) if self.array.ndim == 4 else ()
            block = np.asarray(self.array[prefix + (slice(first, last + 1), slice(r0, r1), slice(c0, c1))])
        except Exception as err:
            raise BadSampleError(self.source, f"cannot read window {window.as_tuple()} ({type(err).__name__}: {err})") from None
        block = block[[lookup[b] - first for b in wanted]]
        nodata = self._attrs().get("nodata")
        image = block.astype(np.float32)
        valid = np.isfinite(image).all(axis=0) & ~fill_invalid(image)
        if nodata is not None:
            valid &= ~(block == np.asarray(nodata, dtype=block.dtype)).any(axis=0)
        if image.shape[-2:] != (window.height, window.width):
            image, valid = resample_block(image, valid, (window.height, window.width))
        return ChipData(np.where(valid[None], image, 0.0).astype(np.float32), valid)


def resample_block(image: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``(C, h, w)`` pixels and their validity to ``size``: area averaging when shrinking, bilinear
    when enlarging; a resampled pixel is valid only if every contributing pixel was."""
    coarser = size[0] < image.shape[-2]
    mode = "area" if coarser else "bilinear"
    kwargs = {} if coarser else {"align_corners": False}
    pixels = torch.from_numpy(np.where(valid[None], image, 0.0).astype(np.float32))[None]
    weights = torch.from_numpy(valid.astype(np.float32))[None, None]
    out = F.interpolate(pixels, size=size, mode=mode, **kwargs)[0].numpy()
    out_valid = F.interpolate(weights, size=size, mode=mode, **kwargs)[0, 0].numpy() >= 1.0 - 1e-6
    return out, out_valid
