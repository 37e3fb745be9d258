"""STAC items, item collections and local catalogs as ``--data`` sources: each item is one scene whose
single-band COG assets are its band files.

- a ``.json`` source is a STAC Item (``"type": "Feature"``), an ItemCollection (``FeatureCollection``) or a
  Catalog / Collection whose items are found through its links, recursively (pystac);
- an asset's band is named by its ``eo:bands`` entry (STAC 1.0) or its ``bands`` entry (STAC 1.1): the
  centre wavelength picks the Sentinel-2 band (as :mod:`mae_remote_sensing.sensors` maps other sensors),
  else the band's name (``B04``; numbered by the item's ``platform``), else its common name (``red``,
  ``nir08``, ``swir16``); bands without an optical counterpart keep their name (SAR ``VV``). An asset
  without band information whose key is a band or quality name (``B04``, ``SCL``) is taken by its key;
  multi-band assets (the ``visual`` preview) are left out;
- relative hrefs are resolved against the JSON file that holds the item; ``http(s)://``, ``s3://`` and
  ``gs://`` hrefs are read lazily, by window, through GDAL's ``/vsicurl/``, ``/vsis3/`` and ``/vsigs/``
  (credentials as GDAL is configured; timeouts and retries from ``data.options.network_*``); a missing
  local file is a one-line error; a local href (asset or link) outside the folder of the STAC file given
  is refused unless ``data.options.stac_confine_hrefs`` is false (:mod:`mae_remote_sensing.network`);
- the item's date is its ``datetime`` (else ``start_datetime``); items sharing a ``grid:code`` or
  ``s2:mgrs_tile`` form one time series (``remote_sensing.temporal``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

import pystac

from mae_remote_sensing.band_files import BandFileScene
from mae_remote_sensing.bands import SENTINEL2_BANDS, is_auxiliary_band, normalize_band_name
from mae_remote_sensing.geotiff import ReadSettings
from mae_remote_sensing.network import GuardedStacIO, StacSourceError, check_confined
from mae_remote_sensing.sensors import (
    SENTINEL2, WAVELENGTH_TOLERANCE, Sensor, canonical_name, resolve_sensor, sensor_from_tags,
)

log = logging.getLogger(__name__)

# STAC eo common names -> Sentinel-2 bands
COMMON_NAMES: dict[str, str] = {
    "coastal": "B1", "blue": "B2", "green": "B3", "red": "B4", "rededge071": "B5", "rededge075": "B6",
    "rededge078": "B7", "nir": "B8", "nir08": "B8A", "nir09": "B9", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12",
}
REMOTE_PREFIXES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}
NUMBERED_BAND = re.compile(r"^B\d{1,2}A?$")


def gdal_path(href: str, base: str | None) -> str:
    """What rasterio opens for an asset href: a local path (relative ones resolved against ``base``, the
    JSON file's location) or a GDAL virtual path for remote URLs."""
    scheme = urlparse(href).scheme.lower()
    if scheme in REMOTE_PREFIXES:
        rest = href if scheme.startswith("http") else href.split("://", 1)[1]
        return REMOTE_PREFIXES[scheme] + rest
    if scheme == "file":
        href = urlparse(href).path
    elif scheme and len(scheme) > 1:
        raise ValueError(f"asset href {href!r}: scheme {scheme}:// cannot be read; use a local path, http(s), s3 or gs")
    path = Path(href)
    if not path.is_absolute() and base is not None:
        base_scheme = urlparse(base).scheme.lower()
        if base_scheme in REMOTE_PREFIXES:
            return gdal_path(base.rsplit("/", 1)[0] + "/" + href, None)
        path = Path(base).parent / path
    return str(path.resolve())


def nearest_sentinel2(wavelength_um: float) -> str | None:
    """The Sentinel-2 band whose centre wavelength is within tolerance of ``wavelength_um`` (micrometres)."""
    nm = float(wavelength_um) * 1000.0
    best = min(SENTINEL2_BANDS.values(), key=lambda b: abs(b.wavelength_nm - nm))
    return best.name if abs(best.wavelength_nm - nm) <= WAVELENGTH_TOLERANCE * nm else None


def band_entries(asset: pystac.Asset) -> list[dict[str, Any]]:
    """The asset's band descriptions: STAC 1.1 ``bands``, else ``eo:bands``."""
    fields = asset.extra_fields
    bands = fields.get("bands") or fields.get("eo:bands") or []
    return [b for b in bands if isinstance(b, dict)]


def band_name(band: dict[str, Any], sensor: Sensor) -> str | None:
    """The Sentinel-2 (or own) name of one STAC band description."""
    wavelength = band.get("eo:center_wavelength", band.get("center_wavelength"))
    if wavelength is not None:
        name = nearest_sentinel2(wavelength)
        if name is not None:
            return name
    name = band.get("name")
    if name and NUMBERED_BAND.match(normalize_band_name(name)):
        canonical = canonical_name(sensor, name)
        if canonical is not None:
            return canonical
    common = band.get("eo:common_name", band.get("common_name"))
    if common in COMMON_NAMES:
        return COMMON_NAMES[common]
    return normalize_band_name(name) if name else None


def item_sensor(item: pystac.Item, settings: ReadSettings) -> Sensor:
    """The sensor that numbers the item's bands: ``data.options.sensor``, else its platform/constellation."""
    tags = {"PLATFORM": item.properties.get("platform", ""), "MISSION": item.properties.get("constellation", "")}
    return resolve_sensor(settings.sensor, [(sensor_from_tags(tags), "STAC platform")], item.id)


def item_band_paths(item: pystac.Item, base: str | None, settings: ReadSettings,
                    root: Path | None = None) -> dict[str, str]:
    """``{band name: GDAL path}`` of the item's single-band raster assets (and quality assets); local
    assets outside ``root`` (the catalog's folder, None: anywhere) are refused."""
    sensor = item_sensor(item, settings)
    paths: dict[str, str] = {}
    for key, asset in item.assets.items():
        bands = band_entries(asset)
        if len(bands) > 1:
            continue  # multi-band previews (``visual``) are not band files
        if bands:
            name = band_name(bands[0], sensor)
        else:
            candidate = normalize_band_name(key)
            name = candidate if (is_auxiliary_band(candidate) or candidate in SENTINEL2_BANDS) else None
            if name in SENTINEL2_BANDS and sensor.key != SENTINEL2.key:
                name = canonical_name(sensor, key)
        if name is None:
            continue
        if name in paths:
            raise ValueError(f"STAC item {item.id}: band {name} comes from two assets (asset {key!r} and another)")
        path = gdal_path(asset.href, item.get_self_href() or base)
        if not path.startswith("/vsi"):
            check_confined(path, root, f"STAC item {item.id}: asset {key!r} file")
        if not path.startswith("/vsi") and not Path(path).exists():
            raise ValueError(f"STAC item {item.id}: asset {key!r} file not found: {path}")
        paths[name] = path
    return paths


def item_date(item: pystac.Item) -> str | None:
    when = item.datetime or item.common_metadata.start_datetime
    return when.date().isoformat() if when else None


def item_series(item: pystac.Item) -> str | None:
    tile = item.properties.get("grid:code") or item.properties.get("s2:mgrs_tile")
    return f"stac:{item.collection_id or ''}:{tile}" if tile else None


class StacItemScene(BandFileScene):
    """A STAC item's band files; band names are already Sentinel-2 (or their own) names."""

    def __init__(self, item_id: str, source: str, band_paths: dict[str, str], settings: ReadSettings,
                 date: str | None = None) -> None:
        super().__init__(source, band_paths, settings, date=date)
        self.item_id = item_id

    @property
    def sensor(self) -> Sensor:
        return SENTINEL2  # names were mapped to Sentinel-2 when the item was read

    def describe(self) -> str:
        return f"STAC item {self.item_id} with bands {sorted(self.imagery_bands)}"


def catalog_root(path: Path, settings: ReadSettings) -> Path | None:
    """The folder local hrefs must stay in: the STAC file's own (None when confinement is off)."""
    return path.resolve().parent if settings.stac_confine_hrefs else None


def read_stac_items(path: Path, settings: ReadSettings | None = None) -> list[tuple[pystac.Item, str]]:
    """The items of a STAC JSON file and the location their relative hrefs are resolved against; links are
    followed with the network limits of ``settings`` and, if it confines hrefs, only inside the file's folder."""
    settings = settings or ReadSettings()
    try:
        kind = json.loads(path.read_text()).get("type")
    except (OSError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a readable JSON document ({err})") from None
    base = str(path.resolve())
    stac_io = GuardedStacIO(settings.network_timeout, settings.network_retries, catalog_root(path, settings))
    try:
        if kind == "Feature":
            return [(pystac.Item.from_file(base, stac_io=stac_io), base)]
        if kind == "FeatureCollection":
            return [(item, base) for item in pystac.ItemCollection.from_file(base, stac_io=stac_io)]
        if kind in ("Catalog", "Collection"):
            catalog = pystac.read_file(base, stac_io=stac_io)
            return [(item, item.get_self_href() or base) for item in catalog.get_items(recursive=True)]
    except pystac.STACError as err:  # pystac wraps the reader's error: ours names the href and the cause
        if isinstance(err.__cause__, StacSourceError):
            raise err.__cause__ from None
        raise ValueError(f"{path}: {err}") from None
    raise ValueError(f"{path}: JSON of type {kind!r} is not a STAC Item, ItemCollection, Catalog or Collection")


def stac_scenes(path: Path, settings: ReadSettings) -> Iterable[tuple[StacItemScene, str | None]]:
    """One scene (and its series key) per STAC item in ``path``."""
    items = read_stac_items(path, settings)
    if not items:
        raise ValueError(f"{path}: the STAC {path.name} holds no items")
    for item, base in items:
        paths = item_band_paths(item, base, settings, catalog_root(path, settings))
        if not any(not is_auxiliary_band(b) for b in paths):
            log.warning("STAC item %s in %s has no single-band raster asset with band information; left out",
                        item.id, path)
            continue
        source = item.get_self_href() or f"{base}#{item.id}"
        yield StacItemScene(item.id, source, paths, settings, date=item_date(item)), item_series(item)
