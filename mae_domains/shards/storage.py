"""How ``mae-domains prepare`` stores a sample's pixels: their dtype and, for adapters whose transform
resizes the whole image, a smaller resolution.

``dtype``:
- ``as-read``: what ``read`` returned, bit for bit (whole-number floats narrowed to an integer type).
- ``float16``: half of float32's bytes; relative error up to 2^-11; values beyond float16's range are an error.
- ``uint8`` / ``uint16``: pixels in [0, 1] stored as ``round(x * 255)`` (``65535``) and read back as that
  divided by 255 (65535) in float32, so an 8-bit (16-bit) source that the adapter divided by its maximum
  comes back bit for bit; whole-number pixels within the type's range (counts) are stored as they are.
  Any other value is an error: the dtype does not fit the adapter's values.

``resolution``: a 2D sample whose shorter side exceeds it is shrunk (area average; validity by nearest
neighbour) so that its shorter side is ``resolution``; ``spacing`` and ``pixel_size`` in its metadata grow
by the same factor, ``decoded_scale`` shrinks by it, and ``prepared_resolution`` records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mae_domains.data.sample import Sample

STORED_DTYPES = ("as-read", "float16", "uint16", "uint8")
SPACING_KEYS = ("spacing", "pixel_size")  # physical size of a pixel, [row, column]
NARROW_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32)


def narrowest_exact(image: np.ndarray) -> np.ndarray:
    """``image`` in the narrowest integer dtype that holds every value exactly, else unchanged."""
    if image.dtype.kind != "f" or image.size == 0 or not np.isfinite(image).all():
        return image
    low, high = float(image.min()), float(image.max())
    if not np.array_equal(image, np.round(image)):
        return image
    for dtype in NARROW_DTYPES:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max and np.dtype(dtype).itemsize < image.dtype.itemsize:
            return image.astype(dtype)
    return image


@dataclass(frozen=True)
class Storage:
    dtype: str = "as-read"
    resolution: int | None = None

    def check(self, adapter: Any) -> None:
        """One-line errors for a dtype or resolution this adapter's samples cannot be stored at."""
        if self.dtype not in STORED_DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: choose one of {', '.join(STORED_DTYPES)}")
        if self.resolution is None:
            return
        if self.resolution < 1:
            raise ValueError(f"resolution {self.resolution}: give the shorter side in pixels (> 0)")
        if not getattr(adapter, "resizes_whole_image", False):
            raise ValueError(f"resolution: adapter {adapter.name} reads windows at the model's size, not whole images "
                             "that its transform resizes; prepare it without --resolution")
        size = getattr(getattr(getattr(adapter, "config", None), "model", None), "img_size", None)
        if size is not None and self.resolution < int(size):
            raise ValueError(f"resolution {self.resolution} is below model.img_size {size}: training would enlarge "
                             "what was shrunk; choose at least the image size")


def stored_pixels(image: np.ndarray, dtype: str, source: str) -> tuple[np.ndarray, float | None]:
    """The array to store for ``image`` and the divisor that restores it (None: a cast back is enough)."""
    if dtype == "as-read":
        return narrowest_exact(image), None
    if dtype == "float16":
        with np.errstate(over="ignore"):
            stored = image.astype(np.float16)
        if not np.isfinite(stored).all():
            raise ValueError(f"{source}: values up to {float(np.abs(image).max()):g} exceed float16's range "
                             "(65504); prepare with --dtype as-read")
        return stored, None
    top = np.iinfo(dtype).max
    low, high = float(image.min()), float(image.max())
    if np.dtype(narrowest_exact(image).dtype).kind in "iu" or image.dtype.kind in "iu":
        if 0 <= low and high <= top:
            return image.astype(dtype), None
    elif 0 <= low and high <= 1:
        return np.round(image * top).astype(dtype), float(top)
    raise ValueError(f"{source}: values {low:g} to {high:g} are neither in [0, 1] nor whole numbers within {dtype}; "
                     "prepare with --dtype as-read or float16")


def restored_pixels(stored: np.ndarray, dtype: str, divisor: float | None) -> np.ndarray:
    """The float array ``read`` gave (exactly, or as close as the stored dtype allows); a writable copy."""
    image = np.array(stored, dtype=np.dtype(dtype))
    if divisor is not None:
        np.divide(image, image.dtype.type(divisor), out=image)
    return image


def at_resolution(sample: Sample, resolution: int) -> Sample:
    """``sample`` with the shorter side of its ``(C, H, W)`` image shrunk to ``resolution`` (unchanged when it
    is no longer), validity and pixel-size metadata to match."""
    import cv2

    image = sample.image
    height, width = image.shape[-2:]
    if image.ndim != 3 or min(height, width) <= resolution:
        return sample
    factor = resolution / min(height, width)
    size = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))  # cv2: (width, height)
    work = image.astype(np.float32, copy=False) if image.dtype.kind != "f" else image
    shrunk = np.stack([cv2.resize(np.ascontiguousarray(channel), size, interpolation=cv2.INTER_AREA)
                       for channel in work]).astype(image.dtype, copy=False)
    valid = None
    if sample.valid is not None:
        valid = cv2.resize(np.ascontiguousarray(sample.valid, dtype=np.uint8), size,
                           interpolation=cv2.INTER_NEAREST).astype(bool)
    scale_rows, scale_cols = height / size[1], width / size[0]
    meta = dict(sample.meta)
    for key in SPACING_KEYS:
        if isinstance(meta.get(key), (list, tuple)) and len(meta[key]) == 2:
            meta[key] = type(meta[key])([float(meta[key][0]) * scale_rows, float(meta[key][1]) * scale_cols])
    meta["decoded_scale"] = float(meta.get("decoded_scale", 1.0)) * size[1] / height
    meta["prepared_resolution"] = resolution
    return Sample(shrunk, meta, valid, sample.label)
