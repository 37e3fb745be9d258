"""What every microscopy reader shares: the five axes of a field, its metadata, windows and open handles.

A *field* is one imaged position (a well site, a tile of a slide) with up to five axes ``(T, C, Z, Y, X)``;
a reader (:class:`FieldReader`) reports them in an :class:`ImageInfo` without reading pixels and reads
``(C, Z, h, w)`` blocks of one time point through a :class:`PixelWindow`, so a whole plate (or a whole slide)
is never in memory. Physical sizes are kept in micrometres.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mae_domains.data.sample import BadSampleError
from mae_domains.data.handle_cache import HandleCache
from mae_domains.data.pixel_limit import check_pixel_count
from mae_domains.data.windows import PixelWindow

AXES = "TCZYX"

# Length units of OME-XML, OME-NGFF and ImageJ, in micrometres.
UNIT_IN_UM: dict[str, float] = {
    "pm": 1e-6, "picometer": 1e-6, "nm": 1e-3, "nanometer": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0,
    "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "mm": 1e3,
    "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6, "in": 25400.0, "inch": 25400.0,
}


def length_in_um(value: float | None, unit: str | None, default_unit: str = "µm") -> float | None:
    """``value`` in ``unit`` (OME/NGFF/ImageJ spelling; None = ``default_unit``) as micrometres; None when
    the value is missing, not positive or the unit is unknown (e.g. ImageJ's ``pixel``)."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    text = str(unit if unit else default_unit).strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    factor = UNIT_IN_UM.get(text.lower().replace("μ", "µ"))
    if factor is None or not value > 0:
        return None
    return value * factor


@dataclass(frozen=True)
class ImageInfo:
    """Sizes of the five axes, channel names as the file stores them, pixel size ``(y, x)`` and z step
    in micrometres (None when the file does not say), the stored dtype and the number of pyramid levels."""

    sizes: tuple[int, int, int, int, int]  # T, C, Z, Y, X
    channel_names: tuple[str, ...]
    pixel_size: tuple[float, float] | None = None
    z_step: float | None = None
    dtype: str = "uint16"
    levels: int = 1
    format: str = ""

    def __post_init__(self) -> None:
        if len(self.channel_names) != self.sizes[1]:
            raise ValueError(f"{len(self.channel_names)} channel names for {self.sizes[1]} channels")

    @property
    def frames(self) -> int:
        return self.sizes[0]

    @property
    def channels(self) -> int:
        return self.sizes[1]

    @property
    def planes(self) -> int:
        return self.sizes[2]

    @property
    def height(self) -> int:
        return self.sizes[3]

    @property
    def width(self) -> int:
        return self.sizes[4]


def default_channel_names(count: int) -> tuple[str, ...]:
    """Names for channels a file does not name: ``channel_0``, ``channel_1`` ... (fallback code)."""
    return tuple(f"channel_{i}" for i in range(count))


def as_float_block(block: np.ndarray) -> np.ndarray:
    """Pixels as float32 (uint16 never passes through float16; float64 is narrowed)."""
    return np.asarray(block).astype(np.float32, copy=False)


def pad_block(block: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Zero padding of the last two axes by ``(top, bottom, left, right)``."""
    if not any(pad):
        return block
    widths = [(0, 0)] * (block.ndim - 2) + [(pad[0], pad[1]), (pad[2], pad[3])]
    return np.pad(block, widths)


class FieldReader(ABC):
    """One field of an archive: metadata without pixels, then windows of pixels. ``max_pixels`` (the run's
    ``data.max_pixels``) bounds what one window read may decode, checked before decoding."""

    source: str
    max_pixels: int | None = None

    def chunk_yx(self) -> tuple[int, int] | None:
        """Rows and columns of the storage unit a read decodes whole (a TIFF strip or tile, a Zarr chunk);
        None when unknown (then the window itself is counted)."""
        return None

    def decoded_area(self, rows: slice, cols: slice) -> int:
        """Pixels per plane that reading ``rows`` x ``cols`` decodes: the storage units it touches."""
        height, width = rows.stop - rows.start, cols.stop - cols.start
        chunk = self.chunk_yx()
        if chunk is None:
            return height * width
        ch, cw = max(1, chunk[0]), max(1, chunk[1])
        units_y = (rows.stop - 1) // ch - rows.start // ch + 1 if height > 0 else 0
        units_x = (cols.stop - 1) // cw - cols.start // cw + 1 if width > 0 else 0
        return units_y * ch * units_x * cw

    @abstractmethod
    def info(self) -> ImageInfo:
        """Axis sizes, channel names, pixel size; reads headers only."""

    @abstractmethod
    def read_channel(self, t: int, c: int, planes: Sequence[int], rows: slice, cols: slice) -> np.ndarray:
        """Stored pixels ``(Z, h, w)`` of channel ``c`` at time ``t`` for ``planes``."""

    def read_planes(self, t: int, c: int, planes: Sequence[int], rows: slice, cols: slice) -> np.ndarray:
        """:meth:`read_channel` as float32, any failure raised as :class:`BadSampleError` naming the channel."""
        try:
            return as_float_block(self.read_channel(t, c, planes, rows, cols))
        except BadSampleError:
            raise
        except Exception as err:
            name = self.info().channel_names[c]
            raise BadSampleError(self.source, f"cannot read channel {name!r} (index {c}) at t={t}, z={list(planes)}: "
                                              f"unreadable page or chunk ({type(err).__name__}: {err})") from None

    def read(self, t: int, channels: Sequence[int], planes: Sequence[int] | None, window: PixelWindow) -> np.ndarray:
        """Float32 ``(C, Z, height, width)`` of ``window`` (areas outside the field are zero); every channel
        is read on its own so a broken page or file is named in the error."""
        info = self.info()
        planes = list(range(info.planes)) if planes is None else list(planes)
        if not 0 <= t < info.frames:
            raise BadSampleError(self.source, f"time point {t} outside 0..{info.frames - 1}")
        try:
            rows, cols, pad = window.clipped(info.height, info.width)
        except ValueError as err:
            raise BadSampleError(self.source, str(err)) from None
        area = self.decoded_area(rows, cols)
        check_pixel_count(self.source, (len(channels), len(planes), area), self.max_pixels,
                          "reading this window (channels x planes x decoded pixels)")
        return np.stack([pad_block(self.read_planes(t, c, planes, rows, cols), pad) for c in channels])

    def overview(self, max_side: int = 256, channels: Sequence[int] | None = None) -> np.ndarray:
        """A coarse ``(C, h, w)`` view of ``channels`` (default all) at time 0 (maximum over z; rows and columns strided so the longer
        side is at most ``max_side``) for foreground thresholds. Readers with pyramids override it."""
        info = self.info()
        step = max(1, int(np.ceil(max(info.height, info.width) / max_side)))
        planes = list(range(info.planes))
        rows, cols = slice(0, info.height, step), slice(0, info.width, step)
        channels = range(info.channels) if channels is None else channels
        return np.stack([self.read_planes(0, c, planes, rows, cols).max(axis=0) for c in channels])


