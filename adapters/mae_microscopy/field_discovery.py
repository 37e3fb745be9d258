"""From what the user gives (files, folders, globs, manifests) to fields and their crop references.

- a TIFF / OME-TIFF file is one field; per-channel files (matching a ``channel_pattern``) are grouped into
  fields; a Zarr store is one field, or one per image of an OME-Zarr HCS plate;
- a folder is searched recursively (Zarr stores are not entered); a glob matches any of the above;
- a manifest CSV (``*.csv``) lists fields with plate / well / site / perturbation ids and expectations.

Every field's header is read once here (axis sizes, channel names, pixel size), so crops and grid
signatures are known without pixels. A field whose header cannot be read stays in the list with its
error, to be reported (and skipped) when it is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mae_domains.data.sample import BadSampleError
from mae_domains.files import expand_source
from mae_microscopy.channel_files import ChannelFileGroup, ChannelFilesField, compile_pattern, group_channel_files
from mae_microscopy.image_info import FieldReader, ImageInfo
from mae_microscopy.manifest import ManifestRow, read_manifest
from mae_microscopy.tiff_reader import TIFF_SUFFIXES, TiffField
from mae_microscopy.zarr_reader import ZarrField, ZarrImageRef, is_zarr_path, list_zarr_fields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderSettings:
    """Reader options of a run (``data.options``)."""

    pages_axis: str = "auto"
    rgb_names: tuple[str, ...] = ("red", "green", "blue")
    level: int = 0
    channel_patterns: tuple[str, ...] = ("harmony", "imagexpress")
    channel_map: tuple[tuple[str, str], ...] = ()
    max_pixels: int | None = None  # data.max_pixels: the most values a window read, or a Zarr level, may hold


@dataclass(frozen=True)
class FieldSpec:
    """How to open one field: a TIFF file, a group of per-channel files, or a Zarr image."""

    kind: str  # "tiff" | "channel_files" | "zarr"
    path: str
    group: ChannelFileGroup | None = None
    zarr: ZarrImageRef | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """The files (or Zarr store) the field reads: one TIFF, every per-channel file, or the store."""
        if self.kind == "channel_files" and self.group is not None:
            return tuple(f for channels in self.group.files for planes in channels for f in planes)
        return (self.path,)

    def open(self, settings: ReaderSettings) -> FieldReader:
        if self.kind == "tiff":
            axis = {"channel": "C", "z": "Z", "time": "T", "auto": "auto"}.get(settings.pages_axis, settings.pages_axis)
            return TiffField(self.path, axis, settings.rgb_names, settings.level)
        if self.kind == "channel_files":
            assert self.group is not None
            return ChannelFilesField(self.group, dict(settings.channel_map))
        if self.kind == "zarr":
            assert self.zarr is not None
            return ZarrField(self.zarr, settings.level, settings.max_pixels)
        raise ValueError(f"unknown field kind {self.kind!r}")


@dataclass(frozen=True)
class FieldEntry:
    """A field with its ids, the manifest's expectations and its header (or the error reading it)."""

    spec: FieldSpec
    ids: tuple[tuple[str, str], ...]
    info: ImageInfo | None = None
    error: str | None = None
    expected_channels: int | None = None
    given_names: tuple[str, ...] | None = None

    @property
    def source(self) -> str:
        return self.spec.path

    def id(self, key: str) -> str | None:
        return dict(self.ids).get(key)

    @property
    def sample_id(self) -> str:
        """``plate/well/site`` when known, else the file (or store and image) name."""
        ids = dict(self.ids)
        if ids.get("well"):
            return "/".join(str(ids.get(k) or "-") for k in ("plate", "well", "site"))
        if self.spec.zarr is not None and self.spec.zarr.path:
            return f"{Path(self.spec.zarr.store).name}/{self.spec.zarr.path}"
        return Path(self.spec.path).name


def _field_ids(spec: FieldSpec) -> dict[str, str]:
    """Ids a field carries in its names: plate (the parent folder unless the name says), well, site."""
    if spec.group is not None:
        g = spec.group
        ids = {"plate": g.plate or Path(g.first_file).parent.name, "well": g.well, "site": g.site}
    elif spec.zarr is not None and spec.zarr.well is not None:
        ids = {"plate": spec.zarr.plate, "well": spec.zarr.well, "site": spec.zarr.site}
    else:
        ids = {"plate": Path(spec.path).parent.name}
    return {k: v for k, v in ids.items() if v}


def specs_at(paths: Sequence[Path], settings: ReaderSettings) -> list[FieldSpec]:
    """Fields of a list of files, folders and Zarr stores."""
    files: list[Path] = []
    stores: list[Path] = []

    def walk(folder: Path) -> None:
        for child in sorted(folder.iterdir()):
            if is_zarr_path(child):
                stores.append(child)
            elif child.is_dir():
                walk(child)
            elif child.suffix.lower() in TIFF_SUFFIXES:
                files.append(child)

    for path in paths:
        if is_zarr_path(path):
            stores.append(path)
        elif path.is_dir():
            walk(path)
        elif path.is_file():
            files.append(path)
    patterns = [compile_pattern(p) for p in settings.channel_patterns]
    groups, singles = group_channel_files(files, patterns)
    specs = [FieldSpec("channel_files", g.key, group=g) for g in groups]
    specs += [FieldSpec("tiff", str(p)) for p in singles]
    for store in stores:
        try:
            specs += [FieldSpec("zarr", ref.key, zarr=ref) for ref in list_zarr_fields(store)]
        except BadSampleError as err:
            log.warning("skipping %s", err)
            specs.append(FieldSpec("zarr", str(store), zarr=ZarrImageRef(str(store))))
    return specs


def read_header(spec: FieldSpec, settings: ReaderSettings) -> tuple[ImageInfo | None, str | None]:
    """The field's header, or the reason it cannot be read."""
    try:
        return spec.open(settings).info(), None
    except BadSampleError as err:
        return None, err.reason
    except Exception as err:  # a reader failure becomes a reported, skippable field
        return None, f"unreadable header ({type(err).__name__}: {err})"


def discover_fields(sources: Sequence[str | Path], settings: ReaderSettings) -> list[FieldEntry]:
    """Every field of ``sources`` with ids and header (see the module docstring)."""
    entries: list[FieldEntry] = []
    for source in sources:
        if str(source).lower().endswith(".csv") and Path(source).is_file():
            for row in read_manifest(source):
                entries.extend(_manifest_fields(row, settings))
            continue
        for spec in specs_at(expand_source(source), settings):
            info, error = read_header(spec, settings)
            entries.append(FieldEntry(spec, tuple(sorted(_field_ids(spec).items())), info, error))
    if not entries:
        raise FileNotFoundError(f"no TIFF, OME-TIFF or Zarr images found in {', '.join(map(str, sources))}")
    return entries


def _manifest_fields(row: ManifestRow, settings: ReaderSettings) -> list[FieldEntry]:
    try:
        specs = specs_at(expand_source(row.path), settings)
    except FileNotFoundError as err:
        raise ValueError(f"manifest line {row.line}: {err}") from None
    if not specs:
        raise ValueError(f"manifest line {row.line}: {row.path} holds no TIFF, OME-TIFF or Zarr image")
    out = []
    for spec in specs:
        ids: dict[str, Any] = _field_ids(spec)
        ids.update(row.ids())
        info, error = read_header(spec, settings)
        out.append(FieldEntry(spec, tuple(sorted((k, str(v)) for k, v in ids.items())), info, error,
                              row.channels, row.channel_names))
    return out


@dataclass(frozen=True)
class CropRef:
    """One sample: crop ``index`` of plane ``(t, z)`` of a field (``z`` None = all planes), at a fixed
    ``window`` (grid sampling, embedding) or a window drawn from the sample seed (random sampling).
    ``signature`` is the grid it makes (the channel names and, for volumes, the depth)."""

    field: FieldEntry
    t: int = 0
    z: int | None = None
    window: tuple[int, int, int, int] | None = None
    index: int = 0
    signature: tuple = field(default_factory=tuple)

    @property
    def source(self) -> str:
        return self.field.source

    @property
    def files(self) -> tuple[str, ...]:
        return self.field.spec.files

    @property
    def sample_id(self) -> str:
        parts = [self.field.sample_id]
        if self.field.info is not None and self.field.info.frames > 1:
            parts.append(f"t{self.t}")
        if self.z is not None:
            parts.append(f"z{self.z}")
        parts.append(f"crop{self.index}" if self.window is None else "win" + "-".join(map(str, self.window[:2])))
        return "/".join(parts)

    def __str__(self) -> str:
        return f"{self.source} [{self.sample_id}]"


def planes_of(info: ImageInfo, z_mode: str, time_mode: str) -> list[tuple[int, int | None]]:
    """The ``(t, z)`` planes a field contributes: every frame (``time_mode=frames``) or the first, and every
    plane (``z_mode=slices``) or all planes together (``max`` projection, ``volume``)."""
    frames = range(info.frames) if time_mode == "frames" else range(1)
    zs: list[int | None] = list(range(info.planes)) if z_mode == "slices" else [None]
    return [(t, z) for t in frames for z in zs]


def summarize(entries: Sequence[FieldEntry]) -> Mapping[str, int]:
    """Counts for a log line: fields, unreadable headers, formats."""
    out: dict[str, int] = {"fields": len(entries), "unreadable": sum(e.info is None for e in entries)}
    for e in entries:
        if e.info is not None:
            out[e.info.format] = out.get(e.info.format, 0) + 1
    return out
