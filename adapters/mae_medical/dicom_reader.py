"""Read one frame of a DICOM file as a viewer displays it, decoding that frame only.

``read_dicom_frame(path, k)`` parses the header (cached per process, so the frames of a cine share it),
checks that the file holds pixel data and that its transfer syntax can be decoded here, decodes frame
``k`` alone (``pydicom.pixels.pixel_array(path, index=k)`` seeks to the frame's bytes or fragments;
a 300-frame cine is never decoded whole to pick one frame) and applies the display pipeline of
:mod:`mae_medical.dicom_display`. Large JPEG 2000 radiographs can be decoded at a reduced resolution
(``min_size``; :mod:`mae_medical.jpeg2000_reduced`). Every failure is a :class:`BadSampleError` naming the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array

from mae_domains.data.sample import BadSampleError
from mae_medical.dicom_codecs import decoding_problem, preferred_plugin, syntax_label
from mae_medical.dicom_display import DisplaySettings, to_display
from mae_medical.dicom_header import (
    cached_header,
    describe_object,
    frame_attributes,
    frame_count,
    has_preamble,
    little_endian,
    no_pixel_data_reason,
    pixel_spacing,
    transfer_syntax,
)
from mae_medical.jpeg2000_reduced import decode_reduced, reduced_shape, reduction_levels

log = logging.getLogger(__name__)


@dataclass
class DicomFrame:
    """One displayed frame: ``image`` ``(H, W)`` float32 in [0, 1], the file's header (no pixel data)
    and metadata for the sample (modality, photometric interpretation, VOI used, frame, spacing ...)."""

    image: np.ndarray
    header: Dataset
    meta: dict[str, Any] = field(default_factory=dict)


def decode_frame(path: str | Path, header: Dataset, index: int, levels: int = 0) -> tuple[np.ndarray, int]:
    """Stored values of frame ``index`` (``(H, W)``, or ``(H, W, 3)`` RGB for colour: YBR is converted by
    the decoder; bits above BitsStored are masked and signed values sign-extended by pydicom) and the
    resolution levels actually discarded: ``levels`` > 0 asks for a reduced JPEG 2000 decode
    (:mod:`mae_medical.jpeg2000_reduced`), which falls back to full resolution if it fails."""
    source = str(path)
    syntax = transfer_syntax(header)
    problem = decoding_problem(syntax)
    if problem is not None:
        raise BadSampleError(source, problem)
    if levels > 0:
        try:
            return decode_reduced(path, levels), levels
        except Exception as err:  # noqa: BLE001 - any failure: decode at full resolution instead
            log.debug("%s: reduced JPEG 2000 decode failed (%s); decoding at full resolution", source, err)
    return decode_full(path, header, index), 0


def decode_full(path: str | Path, header: Dataset, index: int) -> np.ndarray:
    """Frame ``index`` at full resolution through pydicom's decoders (the fastest installed plugin first)."""
    source = str(path)
    syntax = transfer_syntax(header)
    frames = frame_count(header)
    plugin = preferred_plugin(syntax)
    try:
        if not has_preamble(path):  # parse the whole data set (force) and decode the one frame from it
            return pixel_array(dcmread(path, force=True), index=index)
        try:
            return pixel_array(path, index=index, decoding_plugin=plugin)
        except Exception:
            if not plugin:
                raise
            return pixel_array(path, index=index)  # every installed plugin in turn
    except BadSampleError:
        raise
    except (InvalidDicomError, EOFError) as err:
        raise BadSampleError(source, f"truncated or corrupt DICOM file ({type(err).__name__}: {err})") from None
    except Exception as err:  # decoders raise many kinds (ValueError, RuntimeError, struct.error ...)
        if not has_pixel_data_element(path):
            raise BadSampleError(source, f"holds no image: no Pixel Data element ({describe_object(header)}); "
                                         "structured reports and presentation states hold none") from None
        where = f"frame {index + 1} of {frames}" if frames > 1 else "pixel data"
        detail = "; ".join(line.strip().rstrip(":") for line in str(err).splitlines() if line.strip())
        raise BadSampleError(source, f"cannot decode {where} ({syntax_label(syntax or '')}), the file may be "
                                     f"truncated or corrupt: {type(err).__name__}: {detail}") from None


def has_pixel_data_element(path: str | Path) -> bool:
    """Whether the file holds (Float / Double Float) Pixel Data; asked only after a decode failed."""
    try:
        ds = dcmread(path, force=True, defer_size=256)  # large values stay on disk
    except Exception:  # noqa: BLE001 - unparseable: let the decode error speak
        return True
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def frame_meta(path: str | Path, header: Dataset, index: int) -> dict[str, Any]:
    """Metadata of frame ``index`` carried by the sample (no patient identifiers)."""
    frames = frame_count(header)
    stem = Path(path).name
    return {
        "source": str(path),
        "sample_id": stem if frames == 1 else f"{stem}#frame={index}",
        "format": "dicom",
        "modality": str(header.get("Modality", "")),
        "photometric": str(header.get("PhotometricInterpretation", "")),
        "transfer_syntax": transfer_syntax(header),
        "bits_stored": int(header.get("BitsStored") or 0),
        "frame": index,
        "frames": frames,
        "spacing": pixel_spacing(header, path),
        "view_position": str(header.get("ViewPosition", "")) or None,
    }


def read_dicom_frame(path: str | Path, index: int = 0, settings: DisplaySettings | None = None,
                     min_size: int | None = None) -> DicomFrame:
    """Frame ``index`` of ``path`` as displayed (module docstring). ``min_size``: a large JPEG 2000 image may
    be decoded at a reduced resolution whose shorter side is still at least this many pixels (the
    metadata says so, and its pixel spacing is scaled). Raises :class:`BadSampleError`."""
    source = str(path)
    header = cached_header(path)
    reason = no_pixel_data_reason(header)
    if reason is not None:
        raise BadSampleError(source, reason)
    frames = frame_count(header)
    if not 0 <= index < frames:
        raise BadSampleError(source, f"has {frames} frame(s); frame {index} does not exist")
    levels = reduction_levels(header, transfer_syntax(header), min_size)
    pixels, levels = decode_frame(path, header, index, levels)
    rows, cols = reduced_shape(int(header.Rows), int(header.Columns), levels)
    if pixels.shape[:2] != (rows, cols):
        raise BadSampleError(source, f"decoded frame is {pixels.shape[:2]}, the header says {rows} x {cols}")
    try:
        display = to_display(pixels, header, frame_attributes(header, index), settings or DisplaySettings(),
                             little_endian(header))
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, NotImplementedError) as err:
        raise BadSampleError(source, f"cannot apply the display transforms ({type(err).__name__}: {err})") from None
    meta = frame_meta(path, header, index)
    meta["voi"] = display.voi
    if levels:
        meta["decoded_scale"] = 1.0 / (1 << levels)
        if meta["spacing"]:
            meta["spacing"] = [s * (1 << levels) for s in meta["spacing"]]
    return DicomFrame(display.image, header, meta)
