"""PNG, JPEG and TIFF exports (many public X-ray and ultrasound sets ship so) as grayscale in [0, 1].

8- and 16-bit integers are divided by their type's maximum (what an image viewer shows); float TIFFs are
stretched from their minimum to their maximum; colour becomes luma (0.299 R + 0.587 G + 0.114 B), an
alpha channel is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from mae_domains.data.sample import BadSampleError

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"}) | TIFF_SUFFIXES
LUMA = np.array([0.299, 0.587, 0.114], np.float64)


def is_raster_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def _read_pil(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        if img.mode in ("P", "PA", "CMYK", "YCbCr", "HSV", "LA", "RGBA", "1"):
            img = img.convert("RGB" if img.mode not in ("LA", "1") else "L")
        array = np.asarray(img)
        if img.mode.startswith("I;16"):
            array = array.astype(np.uint16)
        elif img.mode == "I":  # 16-bit PNGs may open as 32-bit ints holding 0..65535
            if array.size and array.min() >= 0 and array.max() <= 65535:
                array = array.astype(np.uint16)
    return array


def _read_tiff(path: Path) -> np.ndarray:
    array = tifffile.imread(path, key=0)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar RGB
    return array


def to_unit_gray(array: np.ndarray, source: str) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 1|3|4)`` -> ``(H, W)`` float32 in [0, 1] (module docstring)."""
    if array.ndim == 3:
        if array.shape[-1] == 1:
            array = array[..., 0]
        elif array.shape[-1] in (3, 4):
            pass
        else:
            raise BadSampleError(source, f"expected a gray or RGB image, got an array of shape {array.shape}")
    elif array.ndim != 2:
        raise BadSampleError(source, f"expected a 2D image, got an array of shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        unit = (array.astype(np.float64) - min(info.min, 0)) / float(info.max - min(info.min, 0))
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise BadSampleError(source, "image holds no finite values")
        low, high = float(finite.min()), float(finite.max())
        unit = (values - low) / max(high - low, 1e-12)
    elif array.dtype == bool:
        unit = array.astype(np.float64)
    else:
        raise BadSampleError(source, f"unsupported pixel type {array.dtype}")
    if unit.ndim == 3:
        unit = unit[..., :3] @ LUMA
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def read_raster(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """``(H, W)`` float32 in [0, 1] and metadata (source, sample id, format, bit depth)."""
    path = Path(path)
    source = str(path)
    try:
        array = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else _read_pil(path)
    except FileNotFoundError:
        raise BadSampleError(source, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, tifffile.TiffFileError) as err:
        raise BadSampleError(source, f"cannot decode image ({type(err).__name__}: {err})") from None
    if min(array.shape[:2]) < 2:
        raise BadSampleError(source, f"image is too small ({array.shape[0]} x {array.shape[1]})")
    bits = int(array.dtype.itemsize * 8) if np.issubdtype(array.dtype, np.integer) else None
    meta = {"source": source, "sample_id": path.name, "format": path.suffix.lower().lstrip("."), "bits": bits,
            "frame": 0, "frames": 1}
    return to_unit_gray(array, source), meta
