"""A limit on how many pixels a reader may decode, checked from the file's header before decoding.

A small compressed file can declare an enormous image (a 313 KB TIFF decodes to 3.3 GiB). Every reader
asks :func:`check_pixel_count` with the shape the header announces (tifffile's series shape, PIL's size
times its bands, the blocks a rasterio window read touches) before it decodes anything; a file over the
limit is a bad sample with a reason, skipped like any other. The limit is ``data.max_pixels``.
"""

from __future__ import annotations

import math
from typing import Sequence

from mae_domains.data.sample import BadSampleError

DEFAULT_MAX_PIXELS = 2**28  # the default of data.max_pixels: 268 M values (1 GiB as float32)


def pixel_count(shape: Sequence[int]) -> int:
    """Number of values an array of ``shape`` holds (pixels x planes x samples)."""
    return int(math.prod(int(s) for s in shape))


def check_pixel_count(source: str, shape: Sequence[int], max_pixels: int | None = DEFAULT_MAX_PIXELS,
                      what: str = "decoding it") -> None:
    """Raise :class:`BadSampleError` when ``shape`` (from the header) holds more than ``max_pixels``
    values; ``None`` or 0 disables the check."""
    if not max_pixels:
        return
    count = pixel_count(shape)
    if count > int(max_pixels):
        dims = " x ".join(str(int(s)) for s in shape)
        raise BadSampleError(str(source), f"{what} would produce {count:,} values ({dims}), more than "
                                          f"data.max_pixels={int(max_pixels):,}; skipped before decoding "
                                          f"(raise data.max_pixels if the file is genuine)")


def image_file_shape(path: str) -> tuple[int, ...]:
    """The array shape a TIFF (first series) or a PIL-readable image (height, width, bands) announces in
    its header, read without decoding pixels."""
    from pathlib import Path

    if Path(path).suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tuple(int(s) for s in tif.series[0].shape)
    from PIL import Image

    with Image.open(path) as img:
        return (img.height, img.width, len(img.getbands()))
