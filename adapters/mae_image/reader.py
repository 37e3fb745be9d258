"""Read PNG/JPEG/TIFF files into float32 ``(C, H, W)`` arrays in [0, 1] (8/16-bit, gray or colour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from mae_domains.data.sample import BadSampleError

TIFF_SUFFIXES = {".tif", ".tiff"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"} | TIFF_SUFFIXES


def scale_to_unit(array: np.ndarray, source: str) -> np.ndarray:
    """Integers are divided by their type's maximum; floats are kept as they are."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise BadSampleError(source, f"unsupported pixel type {array.dtype}")


def _read_pil(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        if img.mode in ("P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "HSV"):
            img = img.convert("RGB")
        if img.mode == "1":
            img = img.convert("L")
        array = np.asarray(img)
        if img.mode in ("I;16", "I;16B", "I;16L"):
            array = array.astype(np.uint16)
        elif img.mode == "I":  # 16-bit PNGs often arrive as 32-bit ints holding 0..65535
            array = array.astype(np.uint16) if array.max(initial=0) <= 65535 and array.min(initial=0) >= 0 else array.astype(np.float32)
    return array


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """``(channels, H, W)`` float32 in [0, 1]; colour becomes gray (luma) for 1 channel, gray is
    repeated for 3. Raises :class:`BadSampleError` naming the file."""
    path = Path(path)
    source = str(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = tifffile.imread(path)
            if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
                array = np.moveaxis(array, 0, -1)
        else:
            array = _read_pil(path)
    except (UnidentifiedImageError, OSError, ValueError, tifffile.TiffFileError) as err:
        raise BadSampleError(source, f"cannot decode image ({type(err).__name__}: {err})") from None
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise BadSampleError(source, f"expected a gray or RGB image, got array of shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise BadSampleError(source, f"image is too small ({array.shape[0]}x{array.shape[1]})")
    image = scale_to_unit(array[..., :3], source)
    if channels == 1 and image.shape[-1] == 3:
        image = image @ np.array([0.299, 0.587, 0.114], np.float32)
        image = image[..., None]
    elif channels == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] != channels:
        raise BadSampleError(source, f"has {image.shape[-1]} channels; the model expects {channels}")
    return np.ascontiguousarray(np.moveaxis(image, -1, 0))
