"""Zarr fields: OME-Zarr images (NGFF multiscales, versions 0.1 to 0.5), OME-Zarr HCS plates, and plain Zarr.

- **OME-Zarr image**: a group whose attributes hold ``multiscales`` (v0.4) or ``ome.multiscales`` (v0.5).
  ``level`` picks a dataset of the pyramid (0 = full resolution); axes come from ``axes`` (names and
  types; v0.3 lists of names too), pixel size from the level's ``scale`` transformation (times any
  multiscale-wide scale) in the axis ``unit``; channel names from ``omero.channels[*].label``.
- **OME-Zarr plate** (HCS): ``plate.wells[*].path`` (``B/3``) lead to wells whose ``well.images[*].path``
  are OME-Zarr images, one field each, with plate, well and site ids.
- **plain Zarr**: an array (or a group with one array) with optional attributes ``axes`` (``"CYX"``; by
  default ``YX``, ``CYX``, ``CZYX``, ``TCZYX`` for 2 to 5 dimensions), ``channel_names`` (or
  ``channels``) and ``pixel_size`` (micrometres; a number or ``[y, x]``).

Only the chunks under a window are read. The shape each array declares (every level of a pyramid) is
checked against ``data.max_pixels`` before anything is enumerated or read: a store that declares
(3, 2^20, 2^20) and holds almost nothing would otherwise make millions of crops. An image stating an NGFF
version outside :data:`SUPPORTED_NGFF_VERSIONS` is refused with the version (later specs change the layout);
one stating none is read as the layout above says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zarr

from mae_domains.data.pixel_limit import check_pixel_count
from mae_domains.data.sample import BadSampleError
from mae_microscopy.image_info import FieldReader, HandleCache, ImageInfo, default_channel_names, length_in_um

DEFAULT_AXES = {2: "YX", 3: "CYX", 4: "CZYX", 5: "TCZYX"}
# 0.1/0.2: implicit TCZYX axes; 0.3: axes as names; 0.4: typed axes, scale transforms; 0.5: Zarr v3, "ome" key.
SUPPORTED_NGFF_VERSIONS = ("0.1", "0.2", "0.3", "0.4", "0.5")


def _open_node(key: str) -> Any:
    store, _, inner = key.partition("::")
    try:
        return zarr.open(store, path=inner or None, mode="r")
    except Exception as err:
        raise BadSampleError(key, f"cannot open as Zarr ({type(err).__name__}: {err})") from None


ZARR_NODES = HandleCache(_open_node, max_open=256)


def node_attrs(node: Any) -> dict[str, Any]:
    """Attributes with the v0.5 ``ome`` namespace folded in."""
    attrs = dict(node.attrs)
    ome = attrs.get("ome")
    if isinstance(ome, dict):
        attrs = {**attrs, **ome}
    return attrs


def is_zarr_path(path: Path) -> bool:
    """A folder that is a Zarr group or array (v2 or v3)."""
    return path.is_dir() and any((path / f).is_file() for f in (".zgroup", ".zarray", "zarr.json", ".zattrs"))


@dataclass(frozen=True)
class ZarrImageRef:
    """Where a field lives: a store and the path of an image inside it, and ids from an HCS plate."""

    store: str
    path: str = ""
    plate: str | None = None
    well: str | None = None
    site: str | None = None

    @property
    def key(self) -> str:
        return f"{self.store}::{self.path}" if self.path else self.store

    def child(self, name: str) -> str:
        """Handle key of the member ``name`` of this node."""
        return f"{self.store}::{self.path}/{name}" if self.path else f"{self.store}::{name}"


def list_zarr_fields(store: str | Path) -> list[ZarrImageRef]:
    """Every field of a store: the wells x images of an HCS plate, or the store itself."""
    store = str(store)
    node = ZARR_NODES.get(store)
    attrs = node_attrs(node)
    plate = attrs.get("plate")
    if not isinstance(plate, dict):
        return [ZarrImageRef(store)]
    name = str(plate.get("name") or Path(store).stem)
    out = []
    for well in plate.get("wells", []):
        well_path = str(well["path"])
        row, _, col = well_path.partition("/")
        well_node = ZARR_NODES.get(f"{store}::{well_path}")
        images = node_attrs(well_node).get("well", {}).get("images", [])
        well_id = f"{row.upper()}{int(col):02d}" if col.isdigit() else well_path.replace("/", "")
        for site, image in enumerate(images):
            out.append(ZarrImageRef(store, f"{well_path}/{image['path']}", name, well_id, str(site)))
    return out


class ZarrField(FieldReader):
    """One OME-Zarr image (at pyramid ``level``) or plain Zarr array as a field."""

    def __init__(self, ref: ZarrImageRef, level: int = 0, max_pixels: int | None = None) -> None:
        self.ref = ref
        self.source = ref.key
        self.level = int(level)
        self.max_pixels = max_pixels
        self._info: ImageInfo | None = None
        self._array_key: str | None = None
        self._axes: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_info": None, "_array_key": None, "_axes": None}

    @property
    def array(self) -> Any:
        self.layout()
        return ZARR_NODES.get(self._array_key)

    def layout(self) -> None:
        """Find the level's array and axes (an info handed over from discovery says neither)."""
        if self._array_key is None or self._axes is None:
            self._info = None
            self.info()

    def info(self) -> ImageInfo:
        if self._info is None:
            node = ZARR_NODES.get(self.ref.key)
            attrs = node_attrs(node) if not isinstance(node, zarr.Array) else dict(node.attrs)
            if isinstance(attrs.get("multiscales"), list) and attrs["multiscales"]:
                self._info = self._ngff_info(attrs)
            else:
                self._info = self._plain_info(node)
        return self._info

    # ----- OME-Zarr ----------------------------------------------------------------------------------
    def _ngff_info(self, attrs: dict[str, Any]) -> ImageInfo:
        multiscale = attrs["multiscales"][0]
        version = attrs.get("version") or multiscale.get("version")
        if version is not None and str(version) not in SUPPORTED_NGFF_VERSIONS:
            raise BadSampleError(self.source, f"OME-Zarr (NGFF) version {version} is not supported (supported: "
                                              f"{', '.join(SUPPORTED_NGFF_VERSIONS)})")
        datasets = multiscale.get("datasets") or []
        if not 0 <= self.level < len(datasets):
            raise BadSampleError(self.source, f"has {len(datasets)} resolution level(s); data.options.level="
                                              f"{self.level} asks for another")
        axes_meta = multiscale.get("axes") or [{"name": a} for a in "tczyx"[-5:]]
        axes_meta = [a if isinstance(a, dict) else {"name": str(a)} for a in axes_meta]
        letters = "".join(str(a["name"]).upper()[:1] for a in axes_meta)
        for level, entry in enumerate(datasets):  # the overview reads coarser levels: every one is checked
            shape = ZARR_NODES.get(self.ref.child(str(entry["path"]))).shape
            check_pixel_count(self.source, shape, self.max_pixels, f"pyramid level {level} (declared shape)")
        dataset = datasets[self.level]
        self._array_key = self.ref.child(str(dataset["path"]))
        array = ZARR_NODES.get(self._array_key)
        if array.ndim != len(letters):
            raise BadSampleError(self.source, f"level {self.level} has {array.ndim} dimensions but axes {letters}")
        scale, scaled = np.ones(len(letters)), False
        for transforms in (dataset.get("coordinateTransformations"), multiscale.get("coordinateTransformations")):
            for tr in transforms or []:
                if tr.get("type") == "scale" and "scale" in tr:
                    scale, scaled = scale * np.asarray(tr["scale"], dtype=float), True
        units = {letter: a.get("unit") for letter, a in zip(letters, axes_meta)}
        pixel_size = z_step = None  # without a scale (NGFF before 0.4) the pixel size is unknown, not 1
        if scaled and "Y" in letters and "X" in letters:
            y = length_in_um(scale[letters.index("Y")], units.get("Y"), "micrometer")
            x = length_in_um(scale[letters.index("X")], units.get("X"), "micrometer")
            pixel_size = (y, x) if y and x else None
        if scaled and "Z" in letters:
            z_step = length_in_um(scale[letters.index("Z")], units.get("Z"), "micrometer")
        names = None
        omero = attrs.get("omero")
        sizes = self._set_axes(letters, array.shape)
        if isinstance(omero, dict) and len(omero.get("channels") or []) == sizes[1]:
            names = [str(ch.get("label") or "") or None for ch in omero["channels"]]
        fallback = default_channel_names(sizes[1])
        names = [n if n else fallback[i] for i, n in enumerate(names or fallback)]
        return ImageInfo(sizes, tuple(names), pixel_size, z_step, str(array.dtype), len(datasets), "ome-zarr")

    # ----- plain Zarr --------------------------------------------------------------------------------
    def _plain_info(self, node: Any) -> ImageInfo:
        if isinstance(node, zarr.Array):
            self._array_key = self.ref.key
            array = node
        else:
            arrays = [name for name, member in node.members() if isinstance(member, zarr.Array)]
            if len(arrays) != 1:
                raise BadSampleError(self.source, f"is a Zarr group with {len(arrays)} arrays and no OME-Zarr "
                                                  "multiscales; point at one array")
            self._array_key = self.ref.child(arrays[0])
            array = ZARR_NODES.get(self._array_key)
        if self.level:
            raise BadSampleError(self.source, f"a plain Zarr array has one resolution level; data.options.level="
                                              f"{self.level} asks for another")
        check_pixel_count(self.source, array.shape, self.max_pixels, "the array (declared shape)")
        attrs = dict(array.attrs)
        axes = attrs.get("axes") or DEFAULT_AXES.get(array.ndim)
        if axes is None:
            raise BadSampleError(self.source, f"cannot tell the axes of a {array.ndim}-D array; set its 'axes' attribute")
        letters = "".join(str(a)[:1].upper() for a in axes) if not isinstance(axes, str) else axes.upper()
        if len(letters) != array.ndim:
            raise BadSampleError(self.source, f"axes attribute {axes!r} does not fit shape {tuple(array.shape)}")
        sizes = self._set_axes(letters, array.shape)
        given = attrs.get("channel_names") or attrs.get("channels")
        if given is not None and len(given) != sizes[1]:
            raise BadSampleError(self.source, f"has {sizes[1]} channel(s) but its channel_names attribute lists "
                                              f"{len(given)} ({list(given)})")
        names = tuple(str(n) for n in given) if given is not None else default_channel_names(sizes[1])
        size = attrs.get("pixel_size")
        pixel_size = None
        if size is not None:
            y, x = (size, size) if np.isscalar(size) else (size[0], size[1])
            pixel_size = (float(y), float(x))
        return ImageInfo(sizes, names, pixel_size, attrs.get("z_step"), str(array.dtype), 1, "zarr")

    def _set_axes(self, letters: str, shape: Sequence[int]) -> tuple[int, int, int, int, int]:
        unknown = [a for a, s in zip(letters, shape) if a not in "TCZYX" and s != 1]
        if unknown or "Y" not in letters or "X" not in letters:
            raise BadSampleError(self.source, f"axes {letters} of shape {tuple(shape)}: need Y and X, and only "
                                              "T, C, Z besides")
        self._axes = letters
        return tuple(int(shape[letters.index(a)]) if a in letters else 1 for a in "TCZYX")  # type: ignore[return-value]

    # ----- pixels ------------------------------------------------------------------------------------
    def read_channel(self, t: int, c: int, planes: Sequence[int], rows: slice, cols: slice) -> np.ndarray:
        self.layout()
        axes = self._axes or ""
        index: list[Any] = []
        kept: list[str] = []
        for letter in axes:
            if letter == "T":
                index.append(t)
            elif letter == "C":
                index.append(c)
            elif letter == "Z":
                index.append(list(planes))
                kept.append("Z")
            elif letter in "YX":
                index.append(rows if letter == "Y" else cols)
                kept.append(letter)
            else:
                index.append(0)
        block = np.asarray(self.array.oindex[tuple(index)])
        if "Z" not in kept:
            block, kept = np.repeat(block[None], len(planes), axis=0), ["Z"] + kept
        return np.transpose(block, [kept.index(a) for a in "ZYX"])

    def overview(self, max_side: int = 256, channels: Sequence[int] | None = None) -> np.ndarray:
        """The coarsest pyramid level that is at least ``max_side / 2`` on its longer side, strided to
        ``max_side``: a pyramid makes foreground thresholds cheap on large fields."""
        info = self.info()
        if info.format != "ome-zarr" or info.levels == 1 or self.level != 0:
            return super().overview(max_side, channels)
        best = self
        for level in range(1, info.levels):
            candidate = ZarrField(self.ref, level, self.max_pixels)
            if max(candidate.info().height, candidate.info().width) < max_side // 2:
                break
            best = candidate
        return FieldReader.overview(best, max_side, channels)
