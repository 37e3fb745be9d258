"""Sentinel-2 band names, centre wavelengths and native resolutions; band-group and name utilities.

Band names are normalized to the short ESA spelling (``B2``, ``B8A``, ``B11``): ``B02``, ``b02`` and
``B2`` all mean the same band. Identity always comes from the name, never from the position in a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class BandInfo:
    name: str
    wavelength_nm: float
    native_gsd_m: float
    description: str


SENTINEL2_BANDS: dict[str, BandInfo] = {b.name: b for b in (
    BandInfo("B1", 443.0, 60.0, "coastal aerosol"),
    BandInfo("B2", 490.0, 10.0, "blue"),
    BandInfo("B3", 560.0, 10.0, "green"),
    BandInfo("B4", 665.0, 10.0, "red"),
    BandInfo("B5", 705.0, 20.0, "red edge 1"),
    BandInfo("B6", 740.0, 20.0, "red edge 2"),
    BandInfo("B7", 783.0, 20.0, "red edge 3"),
    BandInfo("B8", 842.0, 10.0, "near infrared"),
    BandInfo("B8A", 865.0, 20.0, "narrow near infrared"),
    BandInfo("B9", 945.0, 60.0, "water vapour"),
    BandInfo("B10", 1375.0, 60.0, "cirrus (L1C only)"),
    BandInfo("B11", 1610.0, 20.0, "short-wave infrared 1"),
    BandInfo("B12", 2190.0, 20.0, "short-wave infrared 2"),
)}

# Band order of the usual 13-band (L1C, EuroSAT) and 12-band (L2A, BigEarthNet) stacks.
SENTINEL2_L1C_ORDER: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
SENTINEL2_L2A_ORDER: tuple[str, ...] = tuple(b for b in SENTINEL2_L1C_ORDER if b != "B10")

# SatMAE's Sentinel-2 grouping: 10 m visible + NIR, 20 m red edge + narrow NIR, 20 m SWIR.
DEFAULT_GROUPS: tuple[tuple[str, ...], ...] = (("B2", "B3", "B4", "B8"), ("B5", "B6", "B7", "B8A"), ("B11", "B12"))
DEFAULT_BANDS: tuple[str, ...] = tuple(b for group in DEFAULT_GROUPS for b in group)

# Composites for a person: true colour and the common vegetation false colour (NIR, red, green).
TRUE_COLOUR = ("B4", "B3", "B2")
FALSE_COLOUR = ("B8", "B4", "B3")

_S2_NAME = re.compile(r"^(?:(?:SR|ST|TOA)_)?B0*(\d{1,2})(A?)$", re.IGNORECASE)

# Files of a product that are not imagery bands: quality / classification masks (bit masks or classes, usable
# as ``mask_band``), atmospheric by-products, a true-colour preview, Landsat angle and surface-temperature
# intermediates. They belong to their scene but are never a band of it, nor a scene of their own.
AUXILIARY_BAND = re.compile(
    r"^(?:(?:SR|ST)_)?QA(?:_[A-Z]+)*$|^BQA$|^QA\d+$|^SCL$|^FMASK$|^(?:MSK_)?(?:CLD|SNW)(?:PRB)?$|^AOT$|^WVP$|^TCI$"
    r"|^[SV][AZ]A$|^ST_(?:TRAD|URAD|DRAD|ATRAN|EMIS|EMSD|CDIST)$", re.IGNORECASE)
AUXILIARY_PATTERN = (r"(?:SR_|ST_)?QA(?:_[A-Z]+)*|BQA|QA\d+|SCL|Fmask|(?:MSK_)?(?:CLD|SNW)(?:PRB)?|AOT|WVP|TCI"
                     r"|[SV][AZ]A|ST_(?:TRAD|URAD|DRAD|ATRAN|EMIS|EMSD|CDIST)")


def normalize_band_name(name: str) -> str:
    """``B02`` / ``b2`` / ``B8a`` / ``SR_B5`` -> ``B2`` / ``B2`` / ``B8A`` / ``B5``; other names are stripped
    and kept as given."""
    text = str(name).strip()
    match = _S2_NAME.match(text)
    if match:
        return f"B{int(match.group(1))}{match.group(2).upper()}"
    return text


def is_auxiliary_band(name: str) -> bool:
    """True for a product file that is not an imagery band (``QA_PIXEL``, ``SCL``, ``BQA``, ``Fmask``...)."""
    return bool(AUXILIARY_BAND.match(str(name).strip()))


def normalize_band_names(names: Iterable[str]) -> tuple[str, ...]:
    out = tuple(normalize_band_name(n) for n in names)
    duplicates = sorted({n for n in out if out.count(n) > 1})
    if duplicates:
        raise ValueError(f"band names must be unique, got duplicates {duplicates} in {list(names)}")
    return out


def wavelength_of(name: str) -> float | None:
    """Centre wavelength in nm of a known Sentinel-2 band, else None."""
    info = SENTINEL2_BANDS.get(normalize_band_name(name))
    return info.wavelength_nm if info else None


def default_band_names(count: int) -> tuple[str, ...]:
    """Band names for a file that carries none: Sentinel-2 L1C/L2A order for 13/12 bands, else ``band1..``."""
    if count == len(SENTINEL2_L1C_ORDER):
        return SENTINEL2_L1C_ORDER
    if count == len(SENTINEL2_L2A_ORDER):
        return SENTINEL2_L2A_ORDER
    return tuple(f"band{i + 1}" for i in range(count))


def validate_groups(groups: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """Normalized, non-empty, non-overlapping band groups."""
    out = tuple(normalize_band_names(g) for g in groups)
    if not out or any(len(g) == 0 for g in out):
        raise ValueError(f"band groups must be non-empty, got {groups}")
    flat = [b for g in out for b in g]
    overlap = sorted({b for b in flat if flat.count(b) > 1})
    if overlap:
        raise ValueError(f"bands {overlap} appear in more than one group")
    return out
