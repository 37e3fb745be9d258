"""A function of each stored value on its own, computed once per possible value and looked up per pixel.

Every step of the DICOM grayscale chain (Modality LUT or rescale, VOI LUT or window, MONOCHROME1
inversion) maps each stored value on its own. For integer pixels of at most 16 bits, running the chain
on every value the pixels' dtype can hold (256 or 65536 values) and indexing the result with the frame
gives the chain's own numbers for every pixel, with one gather over the frame instead of several float64
passes. The whole dtype is covered, not only the Bits Stored range, so a value with stray high bits is
looked up too, never out of range. Wider or float pixels have no table: the chain runs on the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LARGEST_TABLE_BYTES = 2  # pixels of at most 16 bits: a table of at most 65536 entries
CHUNK = 1 << 15  # pixels gathered per step: their 256 KiB index buffer stays in the CPU cache


@dataclass(frozen=True)
class StoredValueTable:
    """``inputs``: every value of the pixels' dtype, in the order of its unsigned bit pattern, so that
    the pixels viewed as unsigned integers index a result computed on ``inputs`` directly."""

    inputs: np.ndarray
    index_dtype: np.dtype

    def look_up(self, results: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """``results[i]`` is the function of ``inputs[i]``; returns it for every pixel. Gathered a chunk
        at a time through one small index buffer: a third of the time of ``results[pixels]``, which
        converts the whole frame to a 64-bit index first."""
        flat = pixels.reshape(-1).view(self.index_dtype)
        out = np.empty(flat.shape, results.dtype)
        index = np.empty(min(CHUNK, flat.size), np.intp)
        for start in range(0, flat.size, CHUNK):
            part = index[: min(CHUNK, flat.size - start)]
            part[...] = flat[start:start + CHUNK]
            # every index is in range (the table holds every value of the dtype); "clip" is the cheaper check
            results.take(part, out=out[start:start + CHUNK], mode="clip")
        return out.reshape(pixels.shape)


def stored_value_table(pixels: np.ndarray) -> StoredValueTable | None:
    """The table for integer ``pixels`` of at most 16 bits; None for anything else (float, 32-bit)."""
    dtype = pixels.dtype
    if dtype.kind not in "iu" or dtype.itemsize > LARGEST_TABLE_BYTES:
        return None
    index_dtype = np.dtype(dtype.str.replace("i", "u"))  # same width and byte order, unsigned
    inputs = np.arange(1 << (8 * dtype.itemsize)).astype(index_dtype).view(dtype)
    return StoredValueTable(inputs, index_dtype)
