"""Finding the samples of a medical archive: files, folders, globs and CSV manifests -> one reference per
frame.

- Folders are searched recursively (symlinked folders followed, each real folder once) for PNG/JPEG/TIFF
  exports and DICOM files (by suffix, or by the Part 10 preamble: series files often have no extension);
  hidden files and DICOMDIR are ignored.
- A DICOM file yields one :class:`FrameRef` per frame (every ``frame_stride``-th frame of a cine); its
  header is read, its pixels are not.
- Files without pixel data (structured reports, presentation states, key objects) are left out with
  their reason (``Discovery.excluded``, logged). Unreadable files and files whose transfer syntax no
  installed decoder handles stay in as one reference, so reading them fails with a message naming the
  file and pretraining lists them in ``skipped.csv``.
- A ``.csv`` source is a manifest: an image column (``image``, ``path``, ``file``, ``filename`` or
  ChestX-ray14's ``Image Index``) and optionally a label column (``labels``, ``label`` or ``Finding
  Labels``, several labels separated by ``|``) and a ``split`` column. Paths are relative to the
  manifest (or ``image_root``); a bare file name not found there is looked up by name under that folder
  (ChestX-ray14 spreads its images over ``images_001/images/`` ...).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mae_domains.data.sample import BadSampleError
from mae_domains.files import find_files, walk_files
from mae_medical.dicom_codecs import decoding_problem
from mae_medical.dicom_header import (
    cached_header, declared_size_problem, frame_count, is_dicom_file, no_pixel_data_reason, transfer_syntax,
)
from mae_medical.raster_images import is_raster_file

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "path", "file", "filename", "Image Index")
LABEL_COLUMNS = ("labels", "label", "Finding Labels")
FRAME_SUFFIX = re.compile(r"^(?P<path>.+)#frame=(?P<frame>\d+)$")
Label = str | tuple[str, ...] | None


@dataclass(frozen=True)
class FrameRef:
    """One sample: frame ``frame`` of ``frames`` in the file ``path``, with a label and a split from a
    manifest. ``str(ref)`` is the path (``path#frame=K`` for multi-frame files); ``os.fspath(ref)`` the file."""

    path: str
    frame: int = 0
    frames: int = 1
    label: Label = None
    split: str | None = None

    def __str__(self) -> str:
        return self.path if self.frames == 1 else f"{self.path}#frame={self.frame}"

    def __fspath__(self) -> str:
        return self.path

    @property
    def source(self) -> str:
        return str(self)


def as_frame_ref(ref: Any) -> FrameRef:
    """A :class:`FrameRef` for a ref, a path, or a ``path#frame=K`` string (manifests, the command line)."""
    if isinstance(ref, FrameRef):
        return ref
    text = os.fspath(ref) if isinstance(ref, os.PathLike) else str(ref)
    match = FRAME_SUFFIX.match(text)
    if match and not Path(text).exists():
        return FrameRef(match["path"], int(match["frame"]), int(match["frame"]) + 1)
    return FrameRef(text)


@dataclass
class ManifestOptions:
    """How manifests are read: ``image_root`` (None = the manifest's folder), the ``split`` rows to keep
    (None = all), the label that means "no finding" (an empty label set), the frame stride, and the most
    values a DICOM frame may declare (``data.max_pixels``; None: no limit)."""

    image_root: str | None = None
    split: str | None = None
    no_finding: str | None = "No Finding"
    frame_stride: int = 1
    max_pixels: int | None = None


@dataclass
class Discovery:
    """References found, and the files left out with their reason."""

    refs: list[FrameRef] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)


def is_image_file(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    return is_raster_file(path) or is_dicom_file(path)


def frame_refs(path: Path, label: Label, found: Discovery, stride: int = 1, split: str | None = None,
               max_pixels: int | None = None) -> None:
    """Append the references of one image file to ``found`` (module docstring); a DICOM file whose header
    declares more frames than it holds, or frames over ``max_pixels``, is left out with its reason."""
    if not is_dicom_file(path):
        found.refs.append(FrameRef(str(path), label=label, split=split))
        return
    try:
        header = cached_header(path)
    except BadSampleError:  # unreadable: keep it, reading names the problem and the run lists it
        found.refs.append(FrameRef(str(path), label=label, split=split))
        return
    reason = no_pixel_data_reason(header) or declared_size_problem(path, header, max_pixels)
    if reason is not None:
        log.warning("skipping %s: %s", path, reason)
        found.excluded.append((str(path), reason))
        return
    frames = frame_count(header)
    if decoding_problem(transfer_syntax(header)) is not None:
        found.refs.append(FrameRef(str(path), 0, frames, label, split))  # one failing read, not one per frame
        return
    found.refs.extend(FrameRef(str(path), k, frames, label, split) for k in range(0, frames, max(1, stride)))


def _column(header: Sequence[str], names: Iterable[str]) -> str | None:
    lowered = {h.strip().lower(): h for h in header}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def parse_labels(text: str, no_finding: str | None) -> tuple[str, ...]:
    """``"Effusion|Mass"`` -> ``("Effusion", "Mass")``; the "no finding" label gives ``()``."""
    names = tuple(s.strip() for s in str(text or "").split("|") if s.strip())
    if no_finding is not None:
        names = tuple(n for n in names if n.lower() != no_finding.lower())
    return names


class NameIndex:
    """File name -> paths under a folder, built on first use (for manifests listing bare names)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: dict[str, list[Path]] | None = None

    def find(self, name: str) -> Path | None:
        if self._index is None:
            self._index = {}
            for p in walk_files(self.root):
                self._index.setdefault(p.name, []).append(p)
        hits = self._index.get(Path(name).name, [])
        return hits[0] if len(hits) == 1 else None


def read_manifest(path: Path, options: ManifestOptions, found: Discovery) -> None:
    """Append the references of a manifest's rows to ``found`` (module docstring)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        image_col = _column(header, IMAGE_COLUMNS)
        if image_col is None:
            raise ValueError(f"{path}: a manifest needs an image column ({', '.join(IMAGE_COLUMNS)}); "
                             f"found {', '.join(header) or 'no header'}")
        label_col = _column(header, LABEL_COLUMNS)
        split_col = _column(header, ("split",))
        rows = [row for row in reader if (row.get(image_col) or "").strip()]
    if options.split is not None:
        if split_col is None:
            raise ValueError(f"{path}: split={options.split!r} is set but the manifest has no split column")
        rows = [row for row in rows if (row.get(split_col) or "").strip() == options.split]
    labels = [parse_labels(row[label_col], options.no_finding) if label_col else None for row in rows]
    multilabel = any(names is not None and len(names) != 1 for names in labels)
    root = Path(options.image_root) if options.image_root else path.parent
    index = NameIndex(root)
    for row, names in zip(rows, labels):
        label: Label = None if names is None else (names if multilabel else names[0])
        split = ((row.get(split_col) or "").strip() or None) if split_col else None
        entry = as_frame_ref(row[image_col].strip())
        image = Path(entry.path)
        image = image if image.is_absolute() else root / image
        if not image.exists():
            image = index.find(image.name) or image  # a missing file fails at read time, named
        if entry.frames > 1:  # an explicit ``file#frame=K`` row
            found.refs.append(FrameRef(str(image), entry.frame, entry.frames, label, split))
        else:
            frame_refs(image, label, found, options.frame_stride, split, options.max_pixels)


def discover_sources(sources: Sequence[str | os.PathLike], options: ManifestOptions | None = None) -> Discovery:
    """References for files, folders, globs and manifests (module docstring). Raises FileNotFoundError
    for a source that matches nothing, or when no image is found at all."""
    options = options or ManifestOptions()
    found = Discovery()
    for source in sources:
        path = Path(os.fspath(source))
        if path.is_file() and path.suffix.lower() == ".csv":
            read_manifest(path, options, found)
            continue
        given = path.is_file()  # a file named on its own is read whatever its name
        for p in find_files([source]):  # folders walked once (symlink loops end), globs expanded
            if given or is_image_file(p):
                frame_refs(p, None, found, options.frame_stride, max_pixels=options.max_pixels)
    if not found.refs:
        detail = ""
        if found.excluded:
            first, reason = found.excluded[0]
            detail = f"; {len(found.excluded)} file(s) left out (e.g. {first}: {reason})"
        raise FileNotFoundError(f"no images found in {', '.join(map(str, sources))} (looked for DICOM, PNG, "
                                f"JPEG and TIFF files){detail}")
    return found
