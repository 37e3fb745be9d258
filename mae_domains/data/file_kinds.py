"""What kind of file this is, by name and by its first bytes: for telling a user that a DICOM or NIfTI
file was given to an adapter that does not read it (instead of "cannot decode image")."""

from __future__ import annotations

import gzip
from pathlib import Path

DICOM = "DICOM"
NIFTI = "NIfTI"

# name patterns an adapter lists in ``file_patterns`` when it reads the kind
KIND_PATTERNS: dict[str, tuple[str, ...]] = {
    DICOM: ("*.dcm", "*.DCM", "*.dicom", "*.DICOM"),
    NIFTI: ("*.nii", "*.nii.gz", "*.NII", "*.NII.GZ"),
}
KIND_SUFFIXES: dict[str, tuple[str, ...]] = {DICOM: (".dcm", ".dicom"), NIFTI: (".nii", ".nii.gz")}
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")  # JPEG, PNG, TIFF


def _head(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(size)
        if head[:2] == b"\x1f\x8b":  # gzip: look inside
            with gzip.open(path, "rb") as fh:
                head = fh.read(size)
    except (OSError, EOFError):
        return b""
    return head


def kind_by_name(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    for kind, suffixes in KIND_SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    return None


def sniff_file_kind(path: str | Path) -> str | None:
    """``"DICOM"`` (``.dcm`` or the ``DICM`` marker at byte 128, as extension-less series files have),
    ``"NIfTI"`` (``.nii``/``.nii.gz`` or the NIfTI-1/2 magic), else None. Reads at most 544 bytes."""
    path = Path(path)
    kind = kind_by_name(path)
    if kind == DICOM and path.is_file() and _head(path, 16).startswith(IMAGE_MAGIC):
        return None  # a JPEG/PNG/TIFF renamed .dcm is no DICOM file, whatever its name says
    if kind is not None or not path.is_file():
        return kind
    head = _head(path, 544)
    if head[128:132] == b"DICM":
        return DICOM
    if head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return NIFTI
    return None
