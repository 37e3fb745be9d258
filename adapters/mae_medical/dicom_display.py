"""From decoded DICOM pixels to the grayscale image a radiologist's viewer shows, in [0, 1].

Grayscale (PS3.3 C.11 and PS3.4 N.2): stored values -> Modality LUT (LUT sequence, or RescaleSlope /
Intercept) -> VOI (LUT sequence, or window centre/width with its VOI LUT Function) -> [0, 1];
MONOCHROME1 is then inverted so that air is dark. Several windows or VOI LUTs: the first, unless
:class:`DisplaySettings` picks another by index or by its explanation (``"LUNG"``). A frame without any
VOI is shown over its stored range when that is 8 bits or less, else from its minimum to its maximum
(what viewers do).

Colour (RGB, YBR_* already converted to RGB by the decoder, PALETTE COLOR through its lookup tables)
becomes luma ``0.299 R + 0.587 G + 0.114 B`` (the Y of YBR_FULL) over the nominal range.

The LUT and window arithmetic is pydicom's (``apply_modality_lut``, ``apply_voi``, ``apply_windowing``).
Ours: choosing the window or LUT (by index, by name, the override), scaling to [0, 1], inverting
MONOCHROME1, and normalising the LUT items pydicom would misread (:func:`readable_lut`: a signed first
value written as US, 8-bit entries packed two per word, 12-bit entries, OW data without the file's byte
order). pydicom computes in float64 with boolean masks over its input: 44 ms per 2048 x 2048 frame with
a window, 55 ms with a VOI LUT, against 5.6 and 17.5 ms for the float32 arithmetic this module had before.
But every step maps each stored value on its own, so for integer pixels of at most 16 bits the chain runs
once on every possible stored value and the frame looks the result up
(:mod:`mae_medical.stored_value_table`): pydicom's numbers for every pixel in 3.5 ms (window) and 4.7 ms
(VOI LUT) per frame. Float or wider pixels go through pydicom on the frame. Measured with
``python benchmarks/bench_medical_dicom.py --display --repeats 11`` on the 2-core machine, otherwise idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing

from mae_medical.stored_value_table import stored_value_table

LUMA = np.array([0.299, 0.587, 0.114], np.float64)
COLOUR_INTERPRETATIONS = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}


@dataclass(frozen=True)
class DisplaySettings:
    """How to choose among several VOI transforms. ``window``: index of the window / VOI LUT (0 = the
    first), or a name matched (case-insensitively) against WindowCenterWidthExplanation or the LUT's
    explanation; ``prefer_lut``: when a file has both a VOI LUT sequence and a window, use the LUT;
    ``override``: ``(centre, width)`` used instead of anything in the file (e.g. a lung window)."""

    window: int | str = 0
    prefer_lut: bool = True
    override: tuple[float, float] | None = None


@dataclass
class DisplayImage:
    """A frame as displayed: ``(H, W)`` float32 in [0, 1] and what was done to get it (for metadata)."""

    image: np.ndarray
    voi: str
    photometric: str


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _pick(names: list[str], count: int, window: int | str) -> int:
    """Index chosen by ``window`` among ``count`` alternatives; falls back to the first."""
    if isinstance(window, str):
        wanted = window.strip().lower()
        for i, name in enumerate(names[:count]):
            if str(name).strip().lower() == wanted:
                return i
        return 0
    return int(window) if 0 <= int(window) < count else 0


def readable_lut(item: Dataset, little_endian: bool, signed_input: bool) -> tuple[Dataset, int, int, int]:
    """A copy of a LUT item as pydicom's ``apply_modality_lut`` / ``apply_voi`` read it correctly, with its
    first mapped input, entry count and bits per entry (for the scaling to [0, 1]).

    Where pydicom reads an item otherwise than the standard (PS3.3 C.11.1.1.1, C.11.2.1.1, CP-522), the
    copy is normalised: the first mapped value is signed when the LUT input is, even when the file encodes
    it as US (63536 = -2000); 8-bit entries are packed two per 16-bit word of OW data; OW data is read in
    the file's byte order (a frame's attributes carry none). Entries wider than the descriptor says (seen
    in the wild) widen the bits; entries of 9-15 bits sit in 16-bit words."""
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536
    if signed_input and first >= 32768:
        first -= 65536
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        if len(data) >= 2 * entries:
            table = np.frombuffer(data, dtype="<u2" if little_endian else ">u2", count=entries)
        elif len(data) >= entries:
            table = np.frombuffer(data, dtype=np.uint8, count=entries)
        else:
            raise ValueError(f"LUT data holds {len(data)} bytes for {entries} entries")
    else:
        table = np.asarray(_as_list(data), dtype=np.int64)
    peak = int(table.max()) if table.size else 0
    if peak > 2**bits - 1:
        bits = max(bits, int(math.ceil(math.log2(peak + 1))))
    readable = Dataset()
    readable.LUTDescriptor = [entries % 65536, first, 8 if bits <= 8 else 16]
    readable.add_new(0x00283006, "OW", table.astype("<u2").tobytes())  # LUTData, one entry per word
    return readable, first, entries, bits


def lookup(values: np.ndarray, item: Dataset, little_endian: bool, signed_input: bool,
           sequence: str) -> tuple[np.ndarray, int]:
    """``values`` through the LUT ``item`` of ``sequence`` (ModalityLUTSequence or VOILUTSequence) by
    pydicom, and the bits per entry. Inputs are rounded to integers and clipped to the LUT's input range
    first (below it: the first entry, past it: the last, C.11.2.1.1): pydicom truncates floats and its
    uint16 index wraps for inputs 65536 past the first mapped value."""
    readable, first, entries, bits = readable_lut(item, little_endian, signed_input)
    index = (np.rint(values) if values.dtype.kind == "f" else values).astype(np.int64)
    np.clip(index, first, first + entries - 1, out=index)
    lut = Dataset()
    lut.set_original_encoding(False, True, None)  # the byte order of the OW data above
    setattr(lut, sequence, [readable])
    apply = apply_modality_lut if sequence == "ModalityLUTSequence" else apply_voi
    return apply(index, lut), bits


def window_to_unit(values: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2: window ``values`` into [0, 1] with the VOI LUT Function LINEAR (width >= 1),
    LINEAR_EXACT (width > 0) or SIGMOID, by pydicom's ``apply_windowing``; float32."""
    window = Dataset()
    window.PhotometricInterpretation = "MONOCHROME2"
    # pydicom's output range is the range of the stored values: one unsigned bit is [0, 1].
    window.BitsStored, window.PixelRepresentation = 1, 0
    window.WindowCenter, window.WindowWidth = centre, width
    window.VOILUTFunction = (function or "LINEAR").upper()
    return apply_windowing(values, window).astype(np.float32)


def signed_values(frame: Dataset) -> bool:
    """Whether the Modality LUT output (the VOI input) can be negative: signed pixels or a negative
    rescale intercept."""
    try:
        intercept = float(frame.get("RescaleIntercept") or 0.0)
    except (TypeError, ValueError):
        intercept = 0.0
    return int(frame.get("PixelRepresentation") or 0) == 1 or intercept < 0


@dataclass(frozen=True)
class VoiChoice:
    """The VOI transform a frame is shown with: ``kind`` is "lut" (the item ``lut``), "window" (``centre``,
    ``width``, ``function``), "stored range" (0..``stored_max``, 8 bits or less) or "min-max"."""

    kind: str
    description: str = ""
    lut: Dataset | None = None
    centre: float = 0.0
    width: float = 1.0
    function: str = "LINEAR"
    stored_max: int = 255


def choose_voi(frame: Dataset, settings: DisplaySettings, stored_bits: int, rescaled: bool) -> VoiChoice:
    """Which VOI LUT or window to apply (the override, a choice by index or explanation, the fallbacks in
    the module docstring), and its description for the sample's metadata."""
    function = str(frame.get("VOILUTFunction") or "LINEAR")
    if settings.override is not None:
        c, w = (float(v) for v in settings.override)
        return VoiChoice("window", f"window {c:g}/{w:g} (configured)", centre=c, width=w, function=function)
    luts = frame.get("VOILUTSequence") or []
    centres, widths = _as_list(frame.get("WindowCenter")), _as_list(frame.get("WindowWidth"))
    windows = min(len(centres), len(widths))
    if luts and (settings.prefer_lut or not windows):
        k = _pick([item.get("LUTExplanation", "") for item in luts], len(luts), settings.window)
        which = f" {k + 1} of {len(luts)}" if len(luts) > 1 else ""
        return VoiChoice("lut", f"VOI LUT{which}", lut=luts[k])
    if windows:
        k = _pick(_as_list(frame.get("WindowCenterWidthExplanation")), windows, settings.window)
        c, w = float(centres[k]), float(widths[k])
        which = f" ({k + 1} of {windows})" if windows > 1 else ""
        shape = "" if function.upper() == "LINEAR" else f" {function}"
        return VoiChoice("window", f"window {c:g}/{w:g}{shape}{which}", centre=c, width=w, function=function)
    if stored_bits <= 8 and not rescaled:
        return VoiChoice("stored range", f"stored range 0-{2**stored_bits - 1}", stored_max=2**stored_bits - 1)
    return VoiChoice("min-max")


def voi_to_unit(values: np.ndarray, choice: VoiChoice, frame: Dataset, little_endian: bool,
                frame_range: tuple[float, float] | None = None) -> tuple[np.ndarray, str]:
    """Modality values -> [0, 1] by ``choice`` (pydicom's ``apply_voi`` / ``apply_windowing``); float32,
    with the description. "min-max" spans ``frame_range``, the lowest and highest modality value of the
    frame, by default those of ``values``."""
    if choice.kind == "lut":
        entries, bits = lookup(values, choice.lut, little_endian, signed_values(frame), "VOILUTSequence")
        unit = entries.astype(np.float32)
        unit *= 1.0 / float(2**bits - 1)
        return unit, choice.description
    if choice.kind == "window":
        return window_to_unit(values, choice.centre, choice.width, choice.function), choice.description
    unit = values.astype(np.float32)
    if choice.kind == "stored range":
        unit *= 1.0 / float(choice.stored_max)
        return unit, choice.description
    low, high = frame_range if frame_range is not None else (float(np.min(values)), float(np.max(values)))
    unit -= low
    unit *= 1.0 / max(high - low, 1e-12)
    return unit, f"min-max {low:g}..{high:g}"


def modality_values(pixels: np.ndarray, frame: Dataset, little_endian: bool) -> np.ndarray:
    """The Modality LUT stage (PS3.3 C.11.1): pydicom's ``apply_modality_lut`` (LUT sequence, or Rescale
    Slope / Intercept); stored values when the frame has neither."""
    if frame.get("ModalityLUTSequence"):
        signed = int(frame.get("PixelRepresentation") or 0) == 1
        return lookup(pixels, frame.ModalityLUTSequence[0], little_endian, signed, "ModalityLUTSequence")[0]
    return apply_modality_lut(pixels, frame)


def modality_float32(pixels: np.ndarray, frame: Dataset, little_endian: bool) -> np.ndarray:
    """:func:`modality_values` of a frame as float32 (e.g. Hounsfield units), through the stored-value
    table where the pixels have one."""
    table = stored_value_table(pixels)
    if table is None:
        return modality_values(pixels, frame, little_endian).astype(np.float32)
    results = modality_values(table.inputs, frame, little_endian).astype(np.float32)
    return table.look_up(results, pixels)


def grayscale_to_unit(pixels: np.ndarray, frame: Dataset, settings: DisplaySettings, little_endian: bool,
                      use_table: bool = True) -> DisplayImage:
    """MONOCHROME1/2 stored values of one frame -> displayed image in [0, 1] (module docstring).
    ``use_table=False`` runs the chain on the frame itself even where a stored-value table exists."""
    photometric = str(frame.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    rescaled = bool(frame.get("ModalityLUTSequence")) or ("RescaleSlope" in frame and "RescaleIntercept" in frame)
    stored_bits = int(frame.get("BitsStored") or frame.get("BitsAllocated") or 16)
    choice = choose_voi(frame, settings, stored_bits, rescaled)
    table = stored_value_table(pixels) if use_table else None
    if table is not None and choice.kind == "min-max" and frame.get("ModalityLUTSequence"):
        table = None  # a LUT need not be monotonic: the range comes from the frame's own modality values
    if table is None:
        unit, voi = voi_to_unit(modality_values(pixels, frame, little_endian), choice, frame, little_endian)
    else:
        frame_range = None
        if choice.kind == "min-max":  # rescale is monotonic: the frame's extremes map to the range's ends
            ends = modality_values(np.array([pixels.min(), pixels.max()], pixels.dtype), frame, little_endian)
            frame_range = float(np.min(ends)), float(np.max(ends))
        values = modality_values(table.inputs, frame, little_endian)
        unit, voi = voi_to_unit(values, choice, frame, little_endian, frame_range)
    # MONOCHROME1: the minimum is white. A Presentation LUT Shape of INVERSE flips the result again.
    invert = photometric == "MONOCHROME1"
    if str(frame.get("PresentationLUTShape", "")).strip().upper() == "INVERSE":
        invert = not invert
    if invert:
        np.subtract(1.0, unit, out=unit)
    np.clip(unit, 0.0, 1.0, out=unit)
    if table is not None:
        unit = table.look_up(unit, pixels)
    return DisplayImage(unit.astype(np.float32, copy=False), voi, photometric)


def colour_to_unit(rgb: np.ndarray, bits: int, photometric: str) -> DisplayImage:
    """``(H, W, 3)`` RGB with ``bits`` per sample -> luma in [0, 1]."""
    gray = rgb[..., :3].astype(np.float32) @ (LUMA / float(2**bits - 1)).astype(np.float32)
    return DisplayImage(np.clip(gray, 0.0, 1.0, out=gray), f"luma of {photometric}", photometric)


def palette_to_unit(indices: np.ndarray, header: Dataset) -> DisplayImage:
    """PALETTE COLOR indices -> RGB through the palette (``apply_color_lut``, segmented tables too) -> luma."""
    rgb = apply_color_lut(indices, header)
    descriptor = header.get("RedPaletteColorLookupTableDescriptor")
    bits = int(descriptor[2]) if descriptor is not None else (8 if rgb.dtype == np.uint8 else 16)
    if rgb.dtype == np.uint8:
        bits = 8
    return colour_to_unit(rgb, bits, "PALETTE COLOR")


def to_display(pixels: np.ndarray, header: Dataset, frame: Dataset, settings: DisplaySettings,
               little_endian: bool) -> DisplayImage:
    """One decoded frame (``(H, W)`` stored values or palette indices, ``(H, W, 3)`` RGB) -> displayed gray."""
    photometric = str(frame.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        return palette_to_unit(pixels, header)
    if pixels.ndim == 3:
        bits = int(frame.get("BitsStored") or frame.get("BitsAllocated") or 8)
        return colour_to_unit(pixels, bits, photometric)
    if photometric in COLOUR_INTERPRETATIONS:
        raise ValueError(f"{photometric} pixel data decoded to one sample per pixel")
    return grayscale_to_unit(pixels, frame, settings, little_endian)
