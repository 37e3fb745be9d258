"""Scenes stored as one file per band (Sentinel-2 SAFE/L2A folders, many public archives).

Files are grouped into scenes by a regular expression on the file name with named groups ``scene`` and
``band`` (the default matches ``T33UUP_20200601T101031_B02_10m.tif``, ``tile_B8A.tif``, ``tile_SCL_20m.tif``).
Bands keep their native resolution on disk; each is read by window onto the target grid of the finest
selected band (or ``target_gsd``).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mae_domains.data.sample import BadSampleError
from mae_remote_sensing.bands import normalize_band_name
from mae_remote_sensing.geotiff import (
    ReadSettings, file_gsd, open_raster, read_class_mask, read_file_window,
)
from mae_remote_sensing.scene import (
    ChipData, ChipWindow, Scene, TargetGrid, check_same_crs, crs_text, target_grid_from_reference,
)

DEFAULT_BAND_PATTERN = r"^(?P<scene>.+?)[_-](?P<band>B\d{1,2}A?|SCL)(?:[_-]\d+m)?\.(?:tif|tiff|jp2|vrt)$"


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
    """One scene whose bands (and optional classification mask) are separate single-band files."""

    def __init__(self, key: str, band_paths: dict[str, str], settings: ReadSettings, date: str | None = None) -> None:
        self.source = key
        self.band_paths = {normalize_band_name(b): str(p) for b, p in band_paths.items()}
        self.settings = settings
        self.date = date

    def __repr__(self) -> str:
        return f"BandFileScene({self.source!r}, bands={sorted(self.band_paths)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BandFileScene) and (self.source, self.band_paths, self.date) == (
            other.source, other.band_paths, other.date)

    def __hash__(self) -> int:
        return hash((self.source, self.date))

    def _path(self, band: str) -> str:
        name = normalize_band_name(band)
        if name not in self.band_paths:
            raise BadSampleError(self.source, f"has no file for band {name}; found bands {sorted(self.band_paths)}")
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
        mask = normalize_band_name(self.settings.mask_band) if self.settings.mask_band else None
        return tuple(b for b in self.band_paths if b != mask)

    def grid(self, bands: Sequence[str] | None, target_gsd: float | None) -> TargetGrid:
        _, src, gsd = self._reference(bands)
        return target_grid_from_reference(src.transform, src.crs, src.height, src.width, gsd, target_gsd,
                                          self.band_names)

    def read(self, window: ChipWindow, bands: Sequence[str], grid: TargetGrid) -> ChipData:
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
            path = self._path(self.settings.mask_band)
            valid &= read_class_mask(open_raster(path), path, grid, window, 1, self.settings.mask_invalid_values)
        return ChipData(np.stack(planes), valid)
