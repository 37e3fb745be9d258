"""TIFF fields: OME-TIFF, ImageJ hyperstacks, plain multi-page TIFF and RGB (brightfield, H&E).

Axes come from tifffile's series (``TCZYX`` for OME-TIFF, ``TZCYX`` for ImageJ, ``YXS`` for RGB):
samples (``S``) count as channels; a file of equal single-plane pages (each page a series, as written
page by page) stacks its pages along ``pages_axis`` (``C``, ``Z`` or ``T``), as does a generic
image-sequence axis (``I``/``Q``). ``pages_axis="auto"`` decides from the file: pages named by ``PageName``
tags are channels, and so are up to :data:`MAX_UNNAMED_PAGE_CHANNELS` unnamed pages; more unnamed
same-shaped gray pages are most likely a Z-stack, so such a file is refused, naming the option, rather
than read as dozens of channels. Files whose ImageJ or OME metadata name their axes are read by them.
Channel names come from the OME-XML ``Channel/@Name``, ImageJ ``Labels``, ``PageName`` tags, or
``rgb_names`` for RGB; pixel size from OME ``PhysicalSizeX/Y/Z`` (with units),
ImageJ resolution + ``unit`` + ``spacing``, or a TIFF resolution in centimetres. Pixels are read through
tifffile's Zarr view, so only the strips or tiles under a window are decoded; the pyramid ``level`` of an
OME-TIFF with sub-resolutions can be chosen.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import tifffile
import zarr

from mae_domains.data.sample import BadSampleError
from mae_microscopy.image_info import (
    FieldReader, HandleCache, ImageInfo, default_channel_names, length_in_um,
)

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
SEQUENCE_AXES = "IQ"  # tifffile's generic image-sequence axes
MAX_UNNAMED_PAGE_CHANNELS = 5  # more unnamed gray pages without axis metadata: most likely Z, not channels


@dataclass
class OpenTiff:
    """An open file and the Zarr views of its series/levels, built on first use."""

    tif: tifffile.TiffFile
    arrays: dict[tuple[int, int], Any] = field(default_factory=dict)

    def array(self, series: int, level: int) -> Any:
        key = (series, level)
        if key not in self.arrays:
            store = self.tif.series[series].aszarr(level=level)
            self.arrays[key] = zarr.open(store, mode="r")
        return self.arrays[key]

    def close(self) -> None:
        self.tif.close()


def _open_tiff(path: str) -> OpenTiff:
    try:
        return OpenTiff(tifffile.TiffFile(path))
    except Exception as err:
        raise BadSampleError(path, f"cannot open as TIFF: corrupt or not a TIFF file ({type(err).__name__}: {err})") from None


TIFF_FILES = HandleCache(_open_tiff)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def ome_image_metadata(xml: str, image: int = 0) -> dict[str, Any]:
    """Channel names, samples per channel, pixel size and z step (micrometres) of OME-XML ``Image`` number
    ``image``; missing values are None."""
    root = ET.fromstring(xml)
    images = [el for el in root if _local(el.tag) == "Image"]
    if not images:
        return {}
    pixels = next((el for el in images[min(image, len(images) - 1)] if _local(el.tag) == "Pixels"), None)
    if pixels is None:
        return {}
    channels = [el for el in pixels if _local(el.tag) == "Channel"]
    a = pixels.attrib
    return {
        "names": [ch.attrib.get("Name") for ch in channels],
        "samples": [int(ch.attrib.get("SamplesPerPixel", 1)) for ch in channels],
        "pixel_size_x": length_in_um(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit")),
        "pixel_size_y": length_in_um(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit")),
        "z_step": length_in_um(a.get("PhysicalSizeZ"), a.get("PhysicalSizeZUnit")),
    }


def tag_resolution_um(page: tifffile.TiffPage, unit: str | None) -> tuple[float, float] | None:
    """``(y, x)`` pixel size from the X/YResolution tags: pixels per ``unit`` (ImageJ) or per centimetre
    (TIFF ResolutionUnit 3); None otherwise (a dpi value says nothing about a microscope)."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    if unit is None:
        res_unit = tags.get("ResolutionUnit")
        if res_unit is None or int(res_unit.value) != 3:
            return None
        unit = "cm"
    sizes = []
    for name in ("YResolution", "XResolution"):
        num, den = tags[name].value
        if not num or not den:
            return None
        size = length_in_um(den / num, unit)
        if size is None:
            return None
        sizes.append(size)
    return (sizes[0], sizes[1])


class TiffField(FieldReader):
    """One TIFF file as a field. ``pages_axis`` says where equal single-plane pages go (``C``, ``Z`` or
    ``T``); ``rgb_names`` name the samples of an RGB image; ``level`` picks an OME-TIFF pyramid level."""

    def __init__(self, path: str, pages_axis: str = "C", rgb_names: Sequence[str] = ("red", "green", "blue"),
                 level: int = 0) -> None:
        if pages_axis not in ("C", "Z", "T", "auto"):
            raise ValueError(f"pages_axis must be C, Z, T or auto, got {pages_axis!r}")
        self.source = str(path)
        self.path = str(path)
        self.pages_axis_option = pages_axis
        self.pages_axis = "C" if pages_axis == "auto" else pages_axis  # decided per file by layout()
        self.rgb_names = tuple(rgb_names)
        self.level = int(level)
        self._info: ImageInfo | None = None
        self._layout: tuple[list[int], str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_info": None, "_layout": None}

    @property
    def handle(self) -> OpenTiff:
        return TIFF_FILES.get(self.path)

    # ----- layout ----------------------------------------------------------------------------------
    def layout(self) -> tuple[list[int], str]:
        """(series used, axes of each series); several series only for a stack of single-plane pages."""
        if self._layout is None:
            tif = self.handle.tif
            series = tif.series
            if not series:
                raise BadSampleError(self.source, "holds no image series")
            first = series[0]
            shapes = {tuple(s.shape) for s in series}
            if len(series) > 1 and first.axes in ("YX", "YXS") and len(shapes) == 1 and not tif.is_ome:
                layout = (list(range(len(series))), first.axes)
            else:
                layout = ([0], first.axes)
            if self.pages_axis_option == "auto":
                self.pages_axis = self._auto_pages_axis(*layout)
            self._layout = layout
        return self._layout

    def _auto_pages_axis(self, series_ids: list[int], axes: str) -> str:
        """Where unlabelled pages go when ``pages_axis`` is ``auto`` (module docstring)."""
        tif = self.handle.tif
        if len(series_ids) > 1:
            pages = len(series_ids)
            named = all(tif.series[i].pages[0].tags.get("PageName") is not None for i in series_ids)
        else:
            sequence = [k for k, letter in enumerate(axes) if letter in SEQUENCE_AXES]
            if not sequence:
                return "C"  # the axes are named: no pages to place
            pages = int(tif.series[0].shape[sequence[0]])
            named = False
        if named or pages <= MAX_UNNAMED_PAGE_CHANNELS:
            return "C"
        raise BadSampleError(self.source, f"holds {pages} same-shaped gray pages without axis metadata (ImageJ or "
                                          "OME): most likely a Z-stack, not channels; set data.options.pages_axis "
                                          "to z (planes; maximum projection by default), channel or time")

    def _sizes_and_roles(self) -> tuple[dict[str, int], str]:
        """Sizes of T, C, Z, Y, X and the role of every axis of the series array (one letter each)."""
        series_ids, axes = self.layout()
        series = self.handle.tif.series[series_ids[0]]
        levels = series.levels
        if not 0 <= self.level < len(levels):
            raise BadSampleError(self.source, f"has {len(levels)} resolution level(s); data.options.level="
                                              f"{self.level} asks for another")
        shape = tuple(levels[self.level].shape)
        sizes = {"T": 1, "C": 1, "Z": 1, "Y": 1, "X": 1}
        roles = []
        for letter, size in zip(axes, shape):
            role = self.pages_axis if letter in SEQUENCE_AXES else letter
            if role not in "TCZYXS":
                if size != 1:
                    raise BadSampleError(self.source, f"has axis {letter!r} of size {size} (axes {axes}); only "
                                                      "T, C, Z, Y, X, samples and one page axis are supported")
                role = "-"
            roles.append(role)
            if role in sizes:
                sizes[role] = size
        if "S" in roles:  # samples (RGB, planar channels) are channels, after any C axis
            sizes["C"] *= shape[roles.index("S")]
        if len(series_ids) > 1:
            sizes[self.pages_axis] = len(series_ids)
        return sizes, "".join(roles)

    def info(self) -> ImageInfo:
        if self._info is None:
            self._info = self._read_info()
        return self._info

    def _read_info(self) -> ImageInfo:
        tif = self.handle.tif
        sizes, roles = self._sizes_and_roles()
        series_ids, axes = self.layout()
        page = tif.series[series_ids[0]].pages[0]
        channels = sizes["C"]
        names: list[str | None] = [None] * channels
        pixel_size = None
        z_step = None
        fmt = "tiff"
        rgb = "S" in roles and channels == 3 and getattr(page, "photometric", None) == tifffile.PHOTOMETRIC.RGB
        if tif.is_ome and tif.ome_metadata:
            fmt = "ome-tiff"
            meta = ome_image_metadata(tif.ome_metadata, series_ids[0])
            given = meta.get("names") or []
            if len(given) == channels:
                names = list(given)
            if meta.get("pixel_size_x") and meta.get("pixel_size_y"):
                pixel_size = (meta["pixel_size_y"], meta["pixel_size_x"])
            z_step = meta.get("z_step")
        elif tif.is_imagej and tif.imagej_metadata:
            fmt = "imagej"
            ij = tif.imagej_metadata
            labels = ij.get("Labels") or []
            if len(labels) == sizes["T"] * sizes["Z"] * channels:  # planes are ordered C fastest, then Z, T
                names = [str(label).strip() or None for label in labels[:channels]]
            unit = str(ij.get("unit") or "") or None
            pixel_size = tag_resolution_um(page, unit) if unit else None
            z_step = length_in_um(ij.get("spacing"), unit) if unit else None
        else:
            pixel_size = tag_resolution_um(page, None)
            if len(series_ids) > 1 and self.pages_axis == "C":
                page_names = [tif.series[i].pages[0].tags.get("PageName") for i in series_ids]
                names = [str(t.value).strip() if t is not None else None for t in page_names]
        if rgb and not any(names):
            names = list(self.rgb_names)
            fmt += "-rgb"
        if self.level:
            full = tif.series[series_ids[0]].levels[0].shape
            here = tif.series[series_ids[0]].levels[self.level].shape
            ys, xs = axes.index("Y"), axes.index("X")
            if pixel_size is not None:
                pixel_size = (pixel_size[0] * full[ys] / here[ys], pixel_size[1] * full[xs] / here[xs])
        fallback = default_channel_names(channels)
        names = [n if n else fallback[i] for i, n in enumerate(names)]
        return ImageInfo((sizes["T"], channels, sizes["Z"], sizes["Y"], sizes["X"]), tuple(names), pixel_size, z_step,
                         str(page.dtype), len(tif.series[series_ids[0]].levels), fmt)

    # ----- pixels ----------------------------------------------------------------------------------
    def chunk_yx(self) -> tuple[int, int] | None:
        """A tile (tiled TIFF) or a strip of ``RowsPerStrip`` full rows (striped TIFF) of the level read."""
        series_ids, _ = self.layout()
        page = self.handle.tif.series[series_ids[0]].levels[self.level].pages[0]
        page = getattr(page, "keyframe", page)  # a TiffFrame describes itself through its key page
        if page is None:
            return None
        if page.is_tiled:
            return int(page.tilelength), int(page.tilewidth)
        rows = int(page.rowsperstrip) if page.rowsperstrip else int(page.imagelength)
        return min(rows, int(page.imagelength)), int(page.imagewidth)

    def read_channel(self, t: int, c: int, planes: Sequence[int], rows: slice, cols: slice) -> np.ndarray:
        sizes, roles = self._sizes_and_roles()
        series_ids, _ = self.layout()
        planes = list(planes)
        if len(series_ids) > 1:  # one single-plane series per page
            page_of = {"C": lambda z: c, "Z": lambda z: z, "T": lambda z: t}[self.pages_axis]
            blocks = []
            for z in planes:
                array = self.handle.array(series_ids[page_of(z)], self.level)
                index = tuple(rows if r == "Y" else cols if r == "X" else (c if r == "S" else 0) for r in roles)
                blocks.append(np.asarray(array.oindex[index]))
            return np.stack(blocks)
        array = self.handle.array(series_ids[0], self.level)
        samples = array.shape[roles.index("S")] if "S" in roles else 1
        index: list[Any] = []
        kept: list[str] = []
        for role in roles:
            if role == "T":
                index.append(t)
            elif role == "C":
                index.append(c // samples)
            elif role == "S":
                index.append(c % samples)
            elif role == "Z":
                index.append(planes)
                kept.append("Z")
            elif role in "YX":
                index.append(rows if role == "Y" else cols)
                kept.append(role)
            else:
                index.append(0)
        block = np.asarray(array.oindex[tuple(index)])
        if "Z" not in kept:
            block, kept = block[None], ["Z"] + kept
            if len(planes) != 1 or planes[0] != 0:
                block = np.repeat(block, len(planes), axis=0)
        return np.transpose(block, [kept.index(a) for a in "ZYX"])
