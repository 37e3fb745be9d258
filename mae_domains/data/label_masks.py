"""2D label masks of image/label pairs (segmentation): read one mask file, check it lies on its image's grid.

A mask is a single-channel integer image of class ids or instance ids (0 = background): a TIFF read with
tifffile (singleton leading axes such as OME's ``C``/``Z``/``T`` of 1 are dropped), or a PNG / BMP
(any image PIL opens in mode ``L``, ``I;16``, ``I`` or ``P``, whose palette indices are the ids). Colour,
float and negative masks are refused: a colour-coded mask needs its colour-to-class table, which is not
guessed. Every problem is a :class:`~mae_domains.data.sample.BadSampleError` naming the mask file (and the
image where they disagree), so a segmentation run skips and lists a bad pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mae_domains.data.pixel_limit import DEFAULT_MAX_PIXELS, check_pixel_count, image_file_shape
from mae_domains.data.sample import BadSampleError

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
PIL_MODES = frozenset({"L", "P", "I", "I;16", "I;16B", "I;16L", "1"})


def _read_array(path: Path) -> np.ndarray:
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in PIL_MODES:
            raise BadSampleError(str(path), f"a label mask must be one channel of ids, got PIL mode {img.mode} "
                                            "(a colour-coded mask needs its colour-to-class table first)")
        return np.asarray(img)


def read_label_mask(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The ids of a 2D mask file as ``(H, W)`` int64 (module docstring)."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise BadSampleError(source, "label mask not found")
    try:
        check_pixel_count(source, image_file_shape(source), max_pixels)
        array = _read_array(path)
    except BadSampleError:
        raise
    except Exception as err:  # an unreadable file is a bad pair, named, never a traceback
        raise BadSampleError(source, f"cannot read the label mask ({type(err).__name__}: {err})") from None
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise BadSampleError(source, f"a label mask must be 2D (one channel of ids), got an array of shape "
                                     f"{tuple(array.shape)}")
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise BadSampleError(source, f"a label mask must hold integer ids, got {array.dtype}")
    if array.size and array.min() < 0:
        raise BadSampleError(source, f"a label mask must hold ids >= 0, found {int(array.min())}")
    return array.astype(np.int64)


def check_mask_grid(mask: np.ndarray, image_shape: Sequence[int], image: str | Path, label: str | Path) -> None:
    """Raise :class:`BadSampleError` unless the mask's ``(H, W)`` is the image's (no resampling is guessed)."""
    expected = tuple(int(s) for s in image_shape[-2:])
    if tuple(mask.shape) != expected:
        raise BadSampleError(str(label), f"label grid {tuple(mask.shape)} differs from the image grid {expected} "
                                         f"of {image}")
