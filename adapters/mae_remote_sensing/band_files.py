"""Scenes stored as one file per band (Sentinel-2 SAFE/L2A folders, many public archives).

Files are grouped into scenes by a regular expression on the file name with named groups ``scene`` and
``band`` (the default matches ``T33UUP_20200601T101031_B02_10m.tif``, ``tile_B8A.tif``, ``tile_SCL_20m.tif``,
Landsat Collection 2 ``LC08_L2SP_..._T1_SR_B5.TIF`` / ``..._ST_B10.TIF`` / ``..._QA_PIXEL.TIF`` and HLS
``HLS.L30.T10SEG.2020245T183919.v2.0.B05.tif``). Quality and other auxiliary files (``QA_PIXEL``, ``SCL``,
``Fmask``...) belong to their scene, never are a band or a scene of their own, and may serve as
``mask_band``. The scene's sensor (:mod:`mae_remote_sensing.sensors`) maps its band numbers to the
adapter's (Sentinel-2) band names by wavelength. Bands keep their native resolution on disk; each is read
by window onto the target grid of the finest selected band (or ``target_gsd``).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mae_domains.data.sample import BadSampleError
from mae_domains.data.windows import PixelWindow
from mae_remote_sensing.bands import AUXILIARY_PATTERN, is_auxiliary_band, normalize_band_name
from mae_remote_sensing.geotiff import (
    ReadSettings, file_gsd, open_raster, read_class_mask, read_file_window,
)
from mae_remote_sensing.scene import ChipData, Scene, TargetGrid, check_same_crs, crs_text, target_grid_from_reference
from mae_remote_sensing.sensors import Sensor, canonical_name, describe_bands, resolve_sensor, sensor_from_name

DEFAULT_BAND_PATTERN = (r"^(?P<scene>.+?)[_.-](?P<band>(?:(?:SR|ST|TOA)_)?B\d{1,2}A?|" + AUXILIARY_PATTERN +
                        r")(?:[_-]\d+m)?\.(?:tif|tiff|jp2|vrt)$")


def compile_band_pattern(pattern: str) -> re.Pattern:
    compiled = re.compile(pattern, re.IGNORECASE)
    if not {"scene", "band"} <= set(compiled.groupindex):
        raise ValueError(f"band_pattern {pattern!r} needs named groups (?P<scene>...) and (?P<band>...)")
    return compiled


def group_band_files(paths: Iterable[Path], pattern: str = DEFAULT_BAND_PATTERN) -> tuple[dict[str, dict[str, str]], list[Path]]:
    """``{scene key: {band: path}}`` for files matching ``pattern`` and the list of files that do not.

    The scene key is the folder plus the ``scene`` group, so equal tile names in two folders stay apart.
    Two files for one band of one scene are an error naming both.
    """
    regex = compile_band_pattern(pattern)
    scenes: dict[str, dict[str, str]] = defaultdict(dict)
    unmatched: list[Path] = []
    for path in sorted(Path(p) for p in paths):
        match = regex.match(path.name)
        if not match:
            unmatched.append(path)
            continue
        key = str(path.parent / match.group("scene"))
        band = normalize_band_name(match.group("band"))
        if band in scenes[key]:
            raise ValueError(f"scene {key}: band {band} appears twice ({scenes[key][band]} and {path})")
        scenes[key][band] = str(path)
    return dict(scenes), unmatched


class BandFileScene(Scene):
    """One scene whose bands (and optional quality/classification files) are separate single-band files.

    ``band_paths`` is keyed by the files' own band names (``B5``, ``QA_PIXEL``); the bands are asked for by
    their Sentinel-2 names, through the scene's sensor."""

    def __init__(self, key: str, band_paths: dict[str, str], settings: ReadSettings, date: str | None = None) -> None:
        self.source = key
        self.band_paths = {normalize_band_name(b): str(p) for b, p in band_paths.items()}
        self.settings = settings
        self.date = date

    @property
    def files(self) -> tuple[str, ...]:
        """One file per band (quality and mask files included)."""
        return tuple(self.band_paths.values())

    def __repr__(self) -> str:
        return f"BandFileScene({self.source!r}, bands={sorted(self.band_paths)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BandFileScene) and (self.source, self.band_paths, self.date) == (
            other.source, other.band_paths, other.date)

    def __hash__(self) -> int:
        return hash((self.source, self.date))

    @property
    def sensor(self) -> Sensor:
        name = Path(self.source).name
        try:
            return resolve_sensor(self.settings.sensor, [(sensor_from_name(name), f"file name {name}")], self.source)
        except ValueError as err:
            raise BadSampleError(self.source, str(err).removeprefix(f"{self.source}: ")) from None

    @property
    def imagery_bands(self) -> tuple[str, ...]:
        """The files' own names of the imagery bands (no quality or auxiliary files)."""
        return tuple(b for b in self.band_paths if not is_auxiliary_band(b))

    @property
    def canonical_paths(self) -> dict[str, str]:
        """``{Sentinel-2 band name: path}`` of the imagery bands that have one."""
        sensor = self.sensor
        out = {}
        for band in self.imagery_bands:
            name = canonical_name(sensor, band)
            if name is not None:
                out[name] = self.band_paths[band]
        return out

    def describe(self) -> str:
        sensor = self.sensor
        return f"{sensor.title} band files {describe_bands(sensor, sorted(self.imagery_bands, key=_band_order))}"

    def _path(self, band: str) -> str:
        name = normalize_band_name(band)
        paths = self.canonical_paths
        if name not in paths:
            raise BadSampleError(self.source, f"has no file for band {name}; it holds {self.describe()}")
        return paths[name]

    def _mask_path(self) -> str:
        name = normalize_band_name(str(self.settings.mask_band))
        if name not in self.band_paths:
            raise BadSampleError(self.source, f"has no mask file {name!r}; it has {sorted(self.band_paths)}")
        return self.band_paths[name]

    def _reference(self, bands: Sequence[str] | None) -> tuple[str, object, tuple[float, float]]:
        """The finest-resolution file among ``bands`` (ties: the first) and its GSD."""
        names = [normalize_band_name(b) for b in (bands or self.band_names)]
        best = None
        crs = None
        for name in names:
            path = self._path(name)
            src = open_raster(path)
            if src.count != 1:
                raise BadSampleError(path, f"band file holds {src.count} bands; expected exactly 1")
            gsd = file_gsd(src, path, self.settings)
            if gsd is None:
                raise BadSampleError(path, "band files need georeferencing (or data.options.gsd) to share a grid")
            if crs is None:
                crs = src.crs
            elif src.crs != crs:
                raise BadSampleError(path, f"CRS {crs_text(src.crs)} differs from the scene's other bands "
                                           f"({crs_text(crs)}); reproject the files first")
            if best is None or math.prod(gsd) < math.prod(best[2]) - 1e-9:
                best = (path, src, gsd)
        assert best is not None
        return best

    @property
    def band_names(self) -> tuple[str, ...]:
        """Sentinel-2 names of the scene's imagery bands (quality files and the mask band excluded)."""
        return tuple(self.canonical_paths)

    def grid(self, bands: Sequence[str] | None, target_gsd: float | None) -> TargetGrid:
        _, src, gsd = self._reference(bands)
        return target_grid_from_reference(src.transform, src.crs, src.height, src.width, gsd, target_gsd,
                                          self.band_names)

    def read(self, window: PixelWindow, bands: Sequence[str], grid: TargetGrid) -> ChipData:
        planes, valid = [], np.ones((window.height, window.width), dtype=bool)
        for band in bands:
            path = self._path(band)
            src = open_raster(path)
            check_same_crs(grid, src.crs, path)
            gsd = file_gsd(src, path, self.settings)
            chip = read_file_window(src, path, grid, window, [1], math.sqrt(gsd[0] * gsd[1]), self.settings)
            planes.append(chip.image[0])
            valid &= chip.valid
        if self.settings.mask_band is not None:
            path = self._mask_path()
            valid &= read_class_mask(open_raster(path), path, grid, window, 1, self.settings.mask_invalid_values,
                                     self.settings.mask_invalid_bits, self.settings.max_pixels)
        return ChipData(np.stack(planes), valid)


def _band_order(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 99, name)
