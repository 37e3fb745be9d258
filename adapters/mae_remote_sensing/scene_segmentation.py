"""A whole scene as the windowed, normalized reader that scene segmentation tiles over
(:mod:`mae_domains.evaluation.scene_segmentation`): the adapter's bands on the scene's target grid (its
CRS and transform), read window by window (never whole), nodata and pixels outside the scene invalid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mae_domains.data.sample import NormStats
from mae_domains.data.windows import PixelWindow
from mae_remote_sensing.bands import wavelength_of
from mae_remote_sensing.scene import Scene, TargetGrid


class SceneWindows:
    """``read(row, col, height, width)`` -> normalized ``(C, h, w)`` float32 and validity ``(h, w)``;
    windows may reach past the scene (padding is invalid). ``height``, ``width``, ``crs`` and
    ``transform`` (six affine coefficients) are the target grid's, which the output is written on."""

    def __init__(self, scene: Scene, bands: tuple[str, ...], grid: TargetGrid, stats: NormStats | None) -> None:
        self.scene, self.bands, self.grid = scene, bands, grid
        self.source = scene.source
        self.height, self.width = int(grid.height), int(grid.width)
        self.crs = grid.crs
        self.transform = None if grid.transform is None else tuple(grid.transform)[:6]
        self.mean = None if stats is None else np.asarray(stats.mean, np.float32).reshape(-1, 1, 1)
        self.std = None if stats is None else np.maximum(np.asarray(stats.std, np.float32), 1e-6).reshape(-1, 1, 1)
        self.meta: dict[str, Any] = {
            "source": scene.source, "band_names": list(bands), "channel_names": list(bands),
            "wavelengths": [wavelength_of(b) for b in bands], "crs": grid.crs,
            "gsd": list(grid.gsd) if grid.gsd else None,
        }
        if stats is not None:
            self.meta["norm_mean"], self.meta["norm_std"] = list(map(float, stats.mean)), list(map(float, stats.std))

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        chip = self.scene.read(PixelWindow(row, col, height, width), self.bands, self.grid)
        image, valid = chip.image.astype(np.float32), chip.valid.copy()
        rows, cols = np.arange(row, row + height), np.arange(col, col + width)
        valid &= ((rows >= 0) & (rows < self.height))[:, None] & ((cols >= 0) & (cols < self.width))[None, :]
        if self.mean is not None:
            image = (np.where(valid[None], image, self.mean) - self.mean) / self.std
        else:
            image = np.where(valid[None], image, 0.0).astype(np.float32)
        return image.astype(np.float32), valid


def open_scene_windows(adapter, path: str | Path, stats: NormStats | None) -> SceneWindows:
    """The first scene of ``path`` (a GeoTIFF/COG, band-file folder or STAC item) as :class:`SceneWindows`."""
    if getattr(adapter, "mask_axis", None) == "time":
        raise ValueError(f"adapter {adapter.name} reads time series; scene segmentation takes single-date scenes "
                         "(a remote_sensing.multispectral or remote_sensing.scale run)")
    entries = adapter.scene_entries([path])
    scenes = [e.scene for e in entries]
    adapter.check_bands(scenes)
    if len(scenes) > 1:
        raise ValueError(f"{path}: holds {len(scenes)} scenes; segment one scene (one file, item or band set) "
                         "at a time")
    scene = scenes[0]
    grid = scene.grid(adapter.bands, adapter.target_gsd)
    if grid.transform is None or grid.crs is None:
        raise ValueError(f"{path}: has no georeferencing (CRS and transform) to write the segmentation on")
    return SceneWindows(scene, tuple(adapter.bands), grid, stats)
