"""Which sensor a scene comes from, and how its band numbers map to the adapter's band names.

Band numbers mean different things on different sensors: Landsat 8/9 B5 is near infrared (865 nm), while
Sentinel-2 B5 is a red-edge band (705 nm). The adapter's band names (``bands``, ``groups``) are Sentinel-2
names; a scene of another sensor is mapped onto them by centre wavelength (the convention of NASA's
Harmonized Landsat Sentinel-2 product: Landsat B5 -> B8A, B6 -> B11, B7 -> B12), and bands with no
Sentinel-2 counterpart (Landsat's panchromatic and thermal bands) keep a sensor-qualified name such as
``landsat8:B10`` that no group can take by accident.

The sensor is known from ``data.options.sensor``, else from the file's metadata (``SPACECRAFT_ID`` and
similar tags), else from file names (``LC08_...``, ``LC09_...``, ``S2A_...``, ``T33UUP_20200601T101031_...``,
``HLS.L30...``, ``HLS.S30...``); a scene with none of these is taken as Sentinel-2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from mae_remote_sensing.bands import SENTINEL2_BANDS, BandInfo, normalize_band_name

AUTO = "auto"
WAVELENGTH_TOLERANCE = 0.025  # relative difference of centre wavelengths that still names the same band


@dataclass(frozen=True)
class Sensor:
    key: str
    title: str
    bands: Mapping[str, BandInfo]
    broad: frozenset[str] = frozenset()  # panchromatic bands: no single-wavelength counterpart


# Landsat 8/9 OLI + TIRS (USGS band designations): centre wavelengths in nm, native resolution in m
LANDSAT_OLI_BANDS: dict[str, BandInfo] = {b.name: b for b in (
    BandInfo("B1", 443.0, 30.0, "coastal aerosol"),
    BandInfo("B2", 482.0, 30.0, "blue"),
    BandInfo("B3", 561.0, 30.0, "green"),
    BandInfo("B4", 655.0, 30.0, "red"),
    BandInfo("B5", 865.0, 30.0, "near infrared"),
    BandInfo("B6", 1609.0, 30.0, "short-wave infrared 1"),
    BandInfo("B7", 2201.0, 30.0, "short-wave infrared 2"),
    BandInfo("B8", 590.0, 15.0, "panchromatic"),
    BandInfo("B9", 1373.0, 30.0, "cirrus"),
    BandInfo("B10", 10895.0, 100.0, "thermal infrared 1"),
    BandInfo("B11", 12005.0, 100.0, "thermal infrared 2"),
)}

SENTINEL2 = Sensor("sentinel2", "Sentinel-2 MSI", SENTINEL2_BANDS)
SENSORS: dict[str, Sensor] = {s.key: s for s in (
    SENTINEL2,
    Sensor("landsat8", "Landsat 8 OLI/TIRS", LANDSAT_OLI_BANDS, frozenset({"B8"})),
    Sensor("landsat9", "Landsat 9 OLI-2/TIRS-2", LANDSAT_OLI_BANDS, frozenset({"B8"})),
)}
SENSOR_CHOICES = (AUTO, *SENSORS)

# file-name rules, tried in order: (pattern on the file name, sensor key or a refusal for unknown sensors)
_NAME_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^L[COT]0?8[_\d]", re.IGNORECASE), "landsat8"),
    (re.compile(r"^L[COT]0?9[_\d]", re.IGNORECASE), "landsat9"),
    (re.compile(r"^HLS\.L30\.", re.IGNORECASE), "landsat8"),
    (re.compile(r"^L[COTEM]0?[1-7][_\d]", re.IGNORECASE), "landsat (before 8)"),
    (re.compile(r"^(?:S2[ABCD]_|HLS\.S30\.|T\d{2}[A-Z]{3}_\d{8}T\d{6})|_MSIL[12][AC]_", re.IGNORECASE), "sentinel2"),
)
_TAG_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"LANDSAT[ _-]?0?8\b", re.IGNORECASE), "landsat8"),
    (re.compile(r"LANDSAT[ _-]?0?9\b", re.IGNORECASE), "landsat9"),
    (re.compile(r"LANDSAT[ _-]?0?[1-7]\b", re.IGNORECASE), "landsat (before 8)"),
    (re.compile(r"SENTINEL[ _-]?2", re.IGNORECASE), "sentinel2"),
)
SENSOR_TAGS = ("SPACECRAFT_ID", "SPACECRAFT_NAME", "SPACECRAFT", "SATELLITE", "PLATFORM", "MISSION", "SENSOR")


def sensor_from_name(name: str) -> str | None:
    """Sensor key from a file or scene name, else None."""
    for pattern, key in _NAME_RULES:
        if pattern.search(name):
            return key
    return None


def sensor_from_tags(tags: Mapping[str, object]) -> str | None:
    """Sensor key from metadata tags (``SPACECRAFT_ID=LANDSAT_8``, ``SPACECRAFT_NAME=Sentinel-2A``...)."""
    for key, value in tags.items():
        if str(key).upper() in SENSOR_TAGS:
            for pattern, sensor in _TAG_RULES:
                if pattern.search(str(value)):
                    return sensor
    return None


def resolve_sensor(option: str, detected: Iterable[tuple[str | None, str]], source: str) -> Sensor:
    """The scene's sensor: ``option`` unless ``auto``, else the first detection (``(key, how)`` pairs,
    e.g. ``("landsat8", "file name LC08_...")``), else Sentinel-2. A detection contradicting the option,
    or a sensor whose bands are not known, is a ``ValueError`` naming the source."""
    found = [(key, how) for key, how in detected if key is not None]
    if option != AUTO:
        if option not in SENSORS:
            raise ValueError(f"data.options.sensor must be one of {', '.join(SENSOR_CHOICES)}, got {option!r}")
        clash = [(key, how) for key, how in found if key != option and not {key, option} <= {"landsat8", "landsat9"}]
        if clash:
            raise ValueError(f"{source}: its {clash[0][1]} says {clash[0][0]}, but data.options.sensor is {option}")
        return SENSORS[option]
    if not found:
        return SENTINEL2
    key, how = found[0]
    if key not in SENSORS:
        raise ValueError(f"{source}: {key} (from its {how}) numbers its bands differently from Landsat 8/9 and "
                         f"Sentinel-2, and this adapter does not know its bands; convert the files or name the "
                         f"bands with data.options.file_bands")
    return SENSORS[key]


def canonical_name(sensor: Sensor, name: str) -> str | None:
    """The Sentinel-2 name of ``sensor``'s band ``name``: the same band for Sentinel-2, else the band of
    nearest centre wavelength within :data:`WAVELENGTH_TOLERANCE`; None without a counterpart."""
    band = normalize_band_name(name)
    if sensor.key == SENTINEL2.key:
        return band
    info = sensor.bands.get(band)
    if info is None or band in sensor.broad:
        return None
    best = min(SENTINEL2_BANDS.values(), key=lambda b: abs(b.wavelength_nm - info.wavelength_nm))
    close = abs(best.wavelength_nm - info.wavelength_nm) <= WAVELENGTH_TOLERANCE * info.wavelength_nm
    return best.name if close else None


def canonical_names(sensor: Sensor, names: Iterable[str]) -> tuple[str, ...]:
    """Each band's Sentinel-2 name, or ``sensor:band`` for a band without a counterpart (never selected
    by a Sentinel-2 name by accident)."""
    return tuple(canonical_name(sensor, n) or f"{sensor.key}:{normalize_band_name(n)}" for n in names)


def describe_bands(sensor: Sensor, names: Iterable[str]) -> str:
    """``B5 (near infrared, 865 nm) as B8A, B10 (thermal infrared 1) unused, ...`` for error messages."""
    parts = []
    for name in names:
        band = normalize_band_name(name)
        info = sensor.bands.get(band)
        what = f" ({info.description}, {info.wavelength_nm:g} nm)" if info else ""
        canon = canonical_name(sensor, band)
        as_ = "" if canon == band else (f" as {canon}" if canon else " (no Sentinel-2 counterpart)")
        parts.append(f"{band}{what}{as_}")
    return ", ".join(parts)
