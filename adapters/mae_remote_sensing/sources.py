"""From the user's sources (files, folders, globs, manifests, Zarr stores) to scenes and time series.

- a ``.csv`` is a manifest (:mod:`mae_remote_sensing.manifest`);
- a ``.zarr`` folder holds 3-D ``(C, H, W)`` or 4-D ``(T, C, H, W)`` arrays;
- other folders are searched recursively for rasters; files whose names match ``band_pattern`` are
  grouped into one-file-per-band scenes, the others are multi-band files;
- a time series is a 4-D Zarr array, the rows of a manifest sharing a ``series`` value, or the rasters
  of one folder (frames sorted by the date in their names).
"""

from __future__ import annotations

import glob
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mae_remote_sensing.band_files import DEFAULT_BAND_PATTERN, BandFileScene, group_band_files
from mae_remote_sensing.geotiff import RasterScene, ReadSettings
from mae_remote_sensing.manifest import date_from_name, read_manifest
from mae_remote_sensing.scene import Scene
from mae_remote_sensing.zarr_store import ZarrScene, list_zarr_arrays, zarr_dates

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


@dataclass(frozen=True)
class SceneEntry:
    """A scene with its label (class name or names) and the series it belongs to."""

    scene: Scene
    label: Any = None
    series: str | None = None


def _expand(source: str | Path) -> list[Path]:
    path = Path(source)
    if path.exists():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(source), recursive=True))
    if not matches:
        raise FileNotFoundError(f"{source}: no such file, folder or glob match")
    return matches


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path.is_dir() and ((path / "zarr.json").exists() or (path / ".zarray").exists()
                                                         or (path / ".zgroup").exists()))


def _zarr_entries(store: Path, settings: ReadSettings, label: Any = None, date: str | None = None) -> list[SceneEntry]:
    entries = []
    for array_path, shape in list_zarr_arrays(store):
        series = f"{store}::{array_path}"
        if len(shape) == 4:
            dates = zarr_dates(store, array_path) or [None] * shape[0]
            for t in range(shape[0]):
                scene = ZarrScene(str(store), array_path, settings, frame=t, date=dates[t] if t < len(dates) else None)
                entries.append(SceneEntry(scene, label, series))
        else:
            dates = zarr_dates(store, array_path)
            entries.append(SceneEntry(ZarrScene(str(store), array_path, settings, date=date or (dates[0] if dates else None)),
                                      label, None))
    return entries


def _raster_entries(files: Sequence[Path], settings: ReadSettings, layout: str, band_pattern: str,
                    label_from_folder: bool) -> list[SceneEntry]:
    entries = []
    multiband = list(files)
    if layout in ("auto", "band_files"):
        scenes, multiband = group_band_files(files, band_pattern)
        for key, bands in sorted(scenes.items()):
            folder = Path(key).parent
            date = date_from_name(Path(key).name)
            scene = BandFileScene(key, bands, settings, date=date)
            entries.append(SceneEntry(scene, folder.name if label_from_folder else None, str(folder)))
        if layout == "band_files" and multiband:
            raise ValueError(f"layout 'band_files': {len(multiband)} file(s) do not match band_pattern "
                             f"{band_pattern!r}, e.g. {multiband[0]}")
    for path in multiband:
        scene = RasterScene(str(path), settings, date=date_from_name(path.name))
        entries.append(SceneEntry(scene, path.parent.name if label_from_folder else None, str(path.parent)))
    return entries


def discover_scenes(sources: Sequence[str | Path], settings: ReadSettings, layout: str = "auto",
                    band_pattern: str = DEFAULT_BAND_PATTERN, label_from_folder: bool = True) -> list[SceneEntry]:
    """Every scene in ``sources``; rasters in folders are labelled by their parent folder's name
    (EuroSAT's ``class_name/*.tif``); manifest labels come from its ``label`` column."""
    if layout not in ("auto", "multiband", "band_files"):
        raise ValueError(f"layout must be 'auto', 'multiband' or 'band_files', got {layout!r}")
    entries: list[SceneEntry] = []
    loose: list[Path] = []
    for source in sources:
        for path in _expand(source):
            if path.suffix.lower() == ".csv":
                for row in read_manifest(path):
                    file = Path(row.path)
                    label = row.labels
                    if _is_zarr(file):
                        entries.extend(_zarr_entries(file, settings, label, row.date))
                    else:
                        entries.append(SceneEntry(RasterScene(str(file), settings, date=row.date), label, row.series))
            elif _is_zarr(path):
                entries.extend(_zarr_entries(path, settings))
            elif path.is_dir():
                stores = sorted(p for p in path.rglob("*.zarr") if p.is_dir())
                for store in stores:
                    entries.extend(_zarr_entries(store, settings))
                inside = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
                          and not any(s in p.parents for s in stores)]
                loose.extend(inside)
            else:
                loose.append(path)
    entries.extend(_raster_entries(sorted(set(loose)), settings, layout, band_pattern, label_from_folder))
    if not entries:
        raise FileNotFoundError(f"no rasters, Zarr arrays or manifests found in {', '.join(map(str, sources))}")
    return entries


def group_series(entries: Sequence[SceneEntry]) -> list[tuple[str, list[SceneEntry]]]:
    """Scenes grouped into time series (by ``series``), each sorted by date (undated frames last)."""
    groups: dict[str, list[SceneEntry]] = defaultdict(list)
    for entry in entries:
        groups[entry.series or entry.scene.source].append(entry)
    return [(key, sorted(items, key=lambda e: (e.scene.date is None, e.scene.date or "", e.scene.source)))
            for key, items in sorted(groups.items())]
