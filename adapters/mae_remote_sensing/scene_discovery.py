"""From the user's sources (files, folders, globs, manifests, Zarr stores) to scenes and time series.

- a ``.csv`` is a manifest (:mod:`mae_remote_sensing.manifest`); a manifest found inside a folder is
  used for that folder: the rasters it lists come with its dates, labels and series, the rasters it does
  not list are left out (with a warning). A CSV there that is not a manifest, or two manifests in one
  folder, are refused with the reason, never ignored;
- a ``.json`` is a STAC item, item collection or catalog (:mod:`mae_remote_sensing.stac`);
- a ``.zarr`` folder holds 3-D ``(C, H, W)`` or 4-D ``(T, C, H, W)`` arrays;
- other folders are searched recursively for rasters; files whose names match ``band_pattern`` are
  grouped into one-file-per-band scenes, the others are multi-band files; quality and auxiliary files
  (``QA_PIXEL``, ``SCL``, ``BQA``, ``Fmask``...) are never scenes of their own;
- a time series is a 4-D Zarr array, the rows of a manifest sharing a ``series`` value, or the rasters
  of one folder (frames sorted by the date in their names).
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mae_domains.files import unique_files, walk_files
from mae_domains.files import expand_source
from mae_remote_sensing.band_files import DEFAULT_BAND_PATTERN, BandFileScene, group_band_files
from mae_remote_sensing.bands import AUXILIARY_PATTERN, is_auxiliary_band
from mae_remote_sensing.geotiff import RasterScene, ReadSettings
from mae_remote_sensing.manifest import date_from_name, read_manifest
from mae_remote_sensing.scene import Scene
from mae_remote_sensing.stac import stac_scenes
from mae_remote_sensing.zarr_store import ZarrScene, list_zarr_arrays, zarr_dates

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneEntry:
    """A scene with its label (class name or names) and the series it belongs to."""

    scene: Scene
    label: Any = None
    series: str | None = None


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


AUXILIARY_FILE = re.compile(r"(?:^|[_.-])(?:" + AUXILIARY_PATTERN + r")(?:[_-]\d+m)?$", re.IGNORECASE)


def is_auxiliary_file(path: Path) -> bool:
    """A product's quality or auxiliary file (``..._QA_PIXEL.TIF``, ``..._SCL_20m.tif``, ``..._BQA.TIF``)."""
    return bool(AUXILIARY_FILE.search(path.stem))


def _raster_entries(files: Sequence[Path], settings: ReadSettings, layout: str, band_pattern: str,
                    label_from_folder: bool) -> list[SceneEntry]:
    entries = []
    multiband = list(files)
    left_out: list[str] = []
    if layout in ("auto", "band_files"):
        scenes, multiband = group_band_files(files, band_pattern)
        for key, bands in sorted(scenes.items()):
            if all(is_auxiliary_band(b) for b in bands):  # only quality files: not a scene
                left_out.extend(bands.values())
                continue
            folder = Path(key).parent
            date = date_from_name(Path(key).name)
            scene = BandFileScene(key, bands, settings, date=date)
            entries.append(SceneEntry(scene, folder.name if label_from_folder else None, str(folder)))
        if layout == "band_files" and multiband:
            raise ValueError(f"layout 'band_files': {len(multiband)} file(s) do not match band_pattern "
                             f"{band_pattern!r}, e.g. {multiband[0]}")
    for path in multiband:
        if is_auxiliary_file(path):
            left_out.append(str(path))
            continue
        scene = RasterScene(str(path), settings, date=date_from_name(path.name))
        entries.append(SceneEntry(scene, path.parent.name if label_from_folder else None, str(path.parent)))
    if left_out:
        log.warning("%d quality/auxiliary file(s) belong to no scene with imagery bands and are not read as "
                    "scenes (e.g. %s); such a file serves only as data.options.mask_band", len(left_out), left_out[0])
    return entries


def _manifest_entries(path: Path, settings: ReadSettings) -> list[SceneEntry]:
    entries = []
    for row in read_manifest(path):
        file = Path(row.path)
        if _is_zarr(file):
            entries.extend(_zarr_entries(file, settings, row.labels, row.date))
        else:
            entries.append(SceneEntry(RasterScene(str(file), settings, date=row.date), row.labels, row.series))
    return entries


def folder_manifests(folder: Path, stores: Sequence[Path]) -> list[Path]:
    """The manifest CSVs inside ``folder`` (outside Zarr stores). A CSV that is not a manifest, or two in
    one folder, is a ``ValueError`` with the reason: a CSV there is never silently ignored."""
    csvs = [p for p in walk_files(folder) if p.is_file() and p.suffix.lower() == ".csv"
            and not any(s in p.parents for s in stores)]
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for csv_path in csvs:
        by_folder[csv_path.parent].append(csv_path)
    for where, found in by_folder.items():
        if len(found) > 1:
            raise ValueError(f"{where} holds {len(found)} CSV files ({', '.join(p.name for p in found)}); which one is "
                             f"the manifest is ambiguous: pass the manifest to use as --data (e.g. {found[0]})")
    for csv_path in csvs:
        try:
            read_manifest(csv_path)
        except ValueError as err:
            raise ValueError(f"{csv_path} inside the data folder is not a usable manifest ({err}); a manifest "
                             f"needs a 'path' column (and optionally date, label, series): fix it, or move it "
                             f"out of {folder}") from None
    return csvs


def _folder_entries(folder: Path, settings: ReadSettings) -> tuple[list[SceneEntry], list[Path]]:
    """Zarr stores and manifests inside ``folder`` as entries, and the loose rasters left for grouping."""
    entries: list[SceneEntry] = []
    stores = sorted(p for p in folder.rglob("*.zarr") if p.is_dir())
    for store in stores:
        entries.extend(_zarr_entries(store, settings))
    manifests = folder_manifests(folder, stores)
    listed: set[str] = set()
    for manifest in manifests:
        rows = _manifest_entries(manifest, settings)
        entries.extend(rows)
        listed.update(os.path.realpath(e.scene.source) for e in rows if isinstance(e.scene, RasterScene))
        log.info("%s: using manifest %s (%d rows)", folder, manifest, len(rows))
    governed = [m.parent for m in manifests]
    loose, unlisted = [], []
    for p in walk_files(folder):
        if not (p.is_file() and p.suffix.lower() in RASTER_SUFFIXES) or any(s in p.parents for s in stores):
            continue
        if any(g == p.parent or g in p.parents for g in governed):
            if os.path.realpath(p) not in listed:
                unlisted.append(p)
            continue
        loose.append(p)
    if unlisted:
        log.warning("%d raster(s) under %s are not listed in its manifest and are left out (e.g. %s)",
                    len(unlisted), governed[0], unlisted[0])
    return entries, loose


def discover_scenes(sources: Sequence[str | Path], settings: ReadSettings, layout: str = "auto",
                    band_pattern: str = DEFAULT_BAND_PATTERN, label_from_folder: bool = True) -> list[SceneEntry]:
    """Every scene in ``sources``; rasters in folders are labelled by their parent folder's name
    (EuroSAT's ``class_name/*.tif``); manifest labels come from its ``label`` column."""
    if layout not in ("auto", "multiband", "band_files"):
        raise ValueError(f"layout must be 'auto', 'multiband' or 'band_files', got {layout!r}")
    entries: list[SceneEntry] = []
    loose: list[Path] = []
    for source in sources:
        for path in expand_source(source):
            if path.suffix.lower() == ".csv":
                entries.extend(_manifest_entries(path, settings))
            elif path.suffix.lower() == ".json":  # STAC item, item collection or catalog
                entries.extend(SceneEntry(scene, None, series) for scene, series in stac_scenes(path, settings))
            elif _is_zarr(path):
                entries.extend(_zarr_entries(path, settings))
            elif path.is_dir():
                found, inside = _folder_entries(path, settings)
                entries.extend(found)
                loose.extend(inside)
            else:
                loose.append(path)
    entries.extend(_raster_entries(unique_files(sorted(set(loose))), settings, layout, band_pattern, label_from_folder))
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
