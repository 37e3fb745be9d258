"""DICOM files without their pixel data: recognising them, reading the header, counting frames, and the
attributes that apply to one frame (enhanced multi-frame files keep them in functional groups).

Series files often have no extension, so a file is DICOM when its name ends in ``.dcm``/``.dicom``/...
or when bytes 128-131 spell ``DICM`` (the Part 10 preamble). Headers are read with
``stop_before_pixels``: listing a 300-frame cine never touches its pixels.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from mae_domains.data.sample import BadSampleError

log = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
PREAMBLE_MAGIC = b"DICM"

# Attributes of the image pixel, modality LUT, VOI LUT and palette modules a frame needs for display.
DISPLAY_KEYWORDS = (
    "PhotometricInterpretation", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction", "VOILUTSequence",
    "PresentationLUTShape",
)
# Functional-group macros (enhanced multi-frame objects) that override the top-level attributes.
FRAME_MACROS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"),
}


def has_preamble(path: str | Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == PREAMBLE_MAGIC


def is_dicom_file(path: str | Path) -> bool:
    """A DICOM suffix, or the Part 10 preamble (series files often have no extension)."""
    path = Path(path)
    if path.name.upper() == "DICOMDIR":
        return False  # a media directory, not an image
    return path.suffix.lower() in DICOM_SUFFIXES or has_preamble(path)


# First bytes of image files that end up named ``.dcm`` (exports, renamed downloads).
IMAGE_SIGNATURES = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"),
                    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"))


def not_dicom_reason(path: str | Path, detail: str = "") -> str:
    """Why a file without the preamble is not DICOM, naming the image format its bytes spell when known."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        head = b""
    kind = next((name for magic, name in IMAGE_SIGNATURES if head.startswith(magic)), None)
    what = f"; its bytes are {kind}" if kind else (f" ({detail})" if detail else "")
    return f"not a DICOM file (no DICM preamble, and pydicom cannot parse it{what})"


def has_public_attributes(header: Dataset) -> bool:
    """True when the parse found at least one standard attribute (garbage parsed with ``force`` gives
    private or unknown tags only)."""
    return any(not elem.tag.is_private and elem.keyword for elem in header)


def read_header(path: str | Path) -> Dataset:
    """Every attribute up to the pixel data (which is not read). Raises :class:`BadSampleError` naming
    the file for anything that is not a readable DICOM file; a file without the preamble whose parse finds
    no standard attribute (a JPEG renamed ``.dcm``) is not DICOM."""
    source = str(path)
    preamble = has_preamble(path)
    try:
        header = dcmread(path, stop_before_pixels=True, force=not preamble)
    except FileNotFoundError:
        raise BadSampleError(source, "file not found") from None
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        if not preamble:
            raise BadSampleError(source, not_dicom_reason(path, f"{type(err).__name__}: {err}")) from None
        raise BadSampleError(source, f"not a readable DICOM file ({type(err).__name__}: {err})") from None
    if len(header) == 0 and not transfer_syntax(header):
        raise BadSampleError(source, "not a readable DICOM file (no attributes after the preamble)")
    if not preamble and not transfer_syntax(header) and not has_public_attributes(header):
        raise BadSampleError(source, not_dicom_reason(path))
    return header


@lru_cache(maxsize=256)
def _cached_header(path: str, mtime_ns: int, size: int) -> Dataset:
    return read_header(path)


def cached_header(path: str | Path) -> Dataset:
    """:func:`read_header` through a small per-process cache keyed by path, size and modification time,
    so the frames of one cine share a parse (each loader worker has its own cache)."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise BadSampleError(str(path), "file not found") from None
    return _cached_header(str(path), stat.st_mtime_ns, stat.st_size)


def transfer_syntax(header: Dataset) -> str | None:
    meta = getattr(header, "file_meta", None)
    value = None if meta is None else meta.get("TransferSyntaxUID")
    return None if value is None else str(value)


def describe_object(header: Dataset) -> str:
    """``"Comprehensive SR, modality SR"``: what a file holds, for messages."""
    sop = header.get("SOPClassUID")
    sop_name = UID(str(sop)).name if sop else "unknown SOP class"
    modality = header.get("Modality")
    return f"{sop_name}, modality {modality}" if modality else sop_name


def no_pixel_data_reason(header: Dataset) -> str | None:
    """Why a file holds no image (structured reports, presentation states, key objects ...), or None
    when its header describes one (Rows, Columns, BitsAllocated)."""
    if all(header.get(k) for k in ("Rows", "Columns", "BitsAllocated")):
        return None
    return f"no pixel data ({describe_object(header)})"


def frame_count(header: Dataset) -> int:
    """NumberOfFrames (1 when absent or empty)."""
    try:
        return max(1, int(header.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _first_item(group: Dataset | None, keyword: str) -> Dataset | None:
    if group is None:
        return None
    seq = group.get(keyword)
    return seq[0] if seq else None


def frame_attributes(header: Dataset, index: int) -> Dataset:
    """The display attributes (:data:`DISPLAY_KEYWORDS`) valid for frame ``index``: the top-level values,
    overridden by the shared and then the per-frame functional groups of enhanced multi-frame objects
    (pixel value transformation, frame VOI LUT)."""
    frame = Dataset()
    for keyword in DISPLAY_KEYWORDS:
        if keyword in header:
            setattr(frame, keyword, header.data_element(keyword).value)
    groups: list[Dataset] = []
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        groups.append(per_frame[index])
    for group in groups:
        for macro, keywords in FRAME_MACROS.items():
            item = _first_item(group, macro)
            if item is None:
                continue
            for keyword in keywords:
                if keyword in item:
                    setattr(frame, keyword, item.data_element(keyword).value)
    return frame


def little_endian(header: Dataset) -> bool:
    """Byte order of the file's data set (for OW lookup tables)."""
    encoding = getattr(header, "original_encoding", (None, None))
    if encoding[1] is not None:
        return bool(encoding[1])
    ts = transfer_syntax(header)
    return ts != "1.2.840.10008.1.2.2"


def pixel_spacing(header: Dataset, source: str | Path | None = None) -> list[float] | None:
    """Row and column spacing in mm: PixelSpacing, else ImagerPixelSpacing (projection radiographs). Zero,
    negative or non-finite values (``0.000`` from some exports) mean unknown: None, with one warning per
    file naming the attribute."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = header.get(keyword)
        if value is not None and len(value) == 2:
            try:
                spacing = [float(value[0]), float(value[1])]
            except (TypeError, ValueError):
                continue
            if all(math.isfinite(v) and v > 0 for v in spacing):
                return spacing
            _warn_unknown_spacing(str(source or "a DICOM file"), keyword, tuple(spacing))
            return None
    return None


@lru_cache(maxsize=1024)
def _warn_unknown_spacing(source: str, keyword: str, spacing: tuple[float, ...]) -> None:
    log.warning("%s: %s %s is not a pixel size (zero, negative or not finite): spacing unknown", source, keyword,
                " \\ ".join(f"{v:g}" for v in spacing))


MIN_FRAGMENT_BYTES = 8  # an encapsulated frame is at least one item: its tag and length


def declared_size_problem(path: str | Path, header: Dataset, max_pixels: int | None = None) -> str | None:
    """Why the header's declared size cannot be true or is refused, before any frame is enumerated or
    decoded: more frames (of a multi-frame file) than the file's bytes can hold (uncompressed: rows x columns x samples x bits per
    frame; compressed: at least one 8-byte item per frame), or a frame of more than ``max_pixels``
    values. None when the declared size is plausible."""
    frames = frame_count(header)
    rows, cols = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    samples = int(header.get("SamplesPerPixel") or 1)
    if max_pixels and rows * cols * samples > int(max_pixels):
        return (f"a frame of {rows} x {cols} x {samples} = {rows * cols * samples:,} values is more than "
                f"data.max_pixels={int(max_pixels):,} (raise data.max_pixels if the file is genuine)")
    if frames == 1:
        return None  # nothing to enumerate: a short file is named by the reader ("truncated or corrupt")
    try:
        size = Path(path).stat().st_size
    except OSError:
        return None  # reading it names the problem
    syntax = transfer_syntax(header)
    uid = UID(syntax) if syntax else None
    if uid is not None and uid.is_deflated:
        return None  # deflate may shrink anything: the decoder checks the inflated length
    if uid is not None and uid.is_encapsulated:
        needed = frames * MIN_FRAGMENT_BYTES
        what = f"at least {MIN_FRAGMENT_BYTES} bytes per compressed frame"
    else:
        if str(header.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            samples = 2  # chroma subsampled: two values per pixel
        needed = -(-frames * rows * cols * samples * int(header.get("BitsAllocated") or 8) // 8)
        what = f"{rows} x {cols} x {samples} values of {int(header.get('BitsAllocated') or 8)} bits per frame"
    if needed > size:
        return (f"header field NumberOfFrames declares {frames:,} frames ({what}: {needed:,} bytes), but the "
                f"file holds only {size:,} bytes")
    return None
