"""Read PNG/JPEG/TIFF files into float32 ``(C, H, W)`` arrays in [0, 1] (8/16-bit, gray or colour).

Before decoding, the header's pixel count is checked against ``max_pixels`` (``data.max_pixels``), and
files of another kind (DICOM, NIfTI) or single bands of a georeferenced satellite scene are refused with
the adapter that fits. Nodata (a GeoTIFF's declared value, or a detected float fill such as -3.4e38 or a
large block of -9999) is replaced by the median of the valid pixels, so it cannot poison statistics.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from mae_domains.data.file_kinds import sniff_file_kind
from mae_domains.data.fill_values import declared_invalid, fill_invalid
from mae_domains.data.pixel_limit import DEFAULT_MAX_PIXELS, check_pixel_count
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


STACK_HINT = ("a stack of channels is read by microscopy.channel_agnostic (named channels) or "
              "remote_sensing.multispectral (bands)")


def drop_opaque_alpha(array: np.ndarray, source: str) -> np.ndarray:
    """``(H, W, 2 or 4)`` gray/colour + alpha -> without alpha, when the alpha is fully opaque (it then
    carries nothing); a real transparency or a 4th data plane is never dropped silently."""
    alpha = array[..., -1]
    opaque = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    if not np.all(alpha == opaque):
        share = float(np.mean(alpha != opaque))
        raise BadSampleError(source, f"its {array.shape[-1]}th channel (alpha or a 4th plane) is not uniformly opaque "
                                     f"({share:.0%} of pixels differ): image reads gray or RGB only; {STACK_HINT}")
    return array[..., :-1]


# a band of a satellite product: T33UUP_..._B04_10m, LC08_..._SR_B5, ..._QA_PIXEL, ..._SCL_20m, tile_band3
BAND_FILE_NAME = re.compile(r"(?:^|[_.-])(?:(?:SR|ST|TOA)_)?(?:B\d{1,2}A?|BAND\d{1,2}|SCL|BQA|QA(?:_[A-Z]+)*|QA\d+)"
                            r"(?:[_.-]\d+M)?$", re.IGNORECASE)
GEO_TAGS = (33550, 33922, 34264, 34735)  # ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory
SUFFIX_NAMES = "PNG/JPEG/TIFF/BMP"


def looks_like_band_file(path: Path) -> bool:
    """True for names of one band of a satellite scene (``..._B04_10m.tif``, ``LC08_..._SR_B5.TIF``,
    ``..._QA_PIXEL.TIF``)."""
    return bool(BAND_FILE_NAME.search(path.stem))


def _tiff_nodata(page) -> float | None:
    """The GeoTIFF's declared nodata value (GDAL_NODATA tag), if any."""
    tag = page.tags.get(42113)
    if tag is None:
        return None
    try:
        return float(str(tag.value).strip().strip("\x00"))
    except ValueError:
        return None


def _read_tiff(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, float | None]:
    """``(H, W, S)`` from the first series and its declared nodata; RGB(A) pixels as they are, a single gray
    plane as ``S = 1``; a stack of several gray planes, a volume, or one band of a georeferenced satellite
    scene is refused (it is not a photograph)."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = tif.pages[0]
        check_pixel_count(str(path), series.shape, max_pixels)
        georeferenced = any(code in page.tags for code in GEO_TAGS)
        planes = int(np.prod(series.shape)) // max(1, int(page.imagelength) * int(page.imagewidth))
        if georeferenced and planes == 1 and looks_like_band_file(path):
            raise BadSampleError(str(path), "is a single band of a georeferenced satellite scene (its name looks "
                                            "like a band file): image would train every band as an unrelated "
                                            "gray picture; read band files with adapter "
                                            "remote_sensing.multispectral (or remote_sensing.temporal)")
        nodata = _tiff_nodata(page)
        array = series.asarray()
        axes = series.axes
        photometric = int(page.photometric)
    if photometric == 2 and array.ndim == 3:  # RGB, interleaved (YXS) or planar (SYX)
        return (array if axes.endswith("S") else np.moveaxis(array, 0, -1)), nodata
    squeezed = np.squeeze(array)
    if squeezed.ndim == 2:
        return squeezed[..., None], nodata
    raise BadSampleError(str(path), f"holds {int(np.prod(squeezed.shape[:-2]))} gray planes (axes {axes}, shape "
                                    f"{tuple(array.shape)}), not one image; {STACK_HINT}")


def _read_pil(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    with Image.open(path) as img:
        check_pixel_count(str(path), (img.height, img.width, len(img.getbands())), max_pixels)
        img.load()
        if img.mode in ("RGBA", "LA", "PA"):
            rgba = np.asarray(img.convert("RGBA" if img.mode != "LA" else "LA"))
            return drop_opaque_alpha(rgba, str(path))
        if img.mode in ("P", "CMYK", "YCbCr", "HSV"):
            img = img.convert("RGB")
        if img.mode == "1":
            img = img.convert("L")
        array = np.asarray(img)
        if img.mode in ("I;16", "I;16B", "I;16L"):
            array = array.astype(np.uint16)
        elif img.mode == "I":  # 16-bit PNGs often arrive as 32-bit ints holding 0..65535
            array = array.astype(np.uint16) if array.max(initial=0) <= 65535 and array.min(initial=0) >= 0 else array.astype(np.float32)
    return array


def refuse_other_kind(path: Path) -> None:
    """Raise :class:`BadSampleError` when ``path`` is a DICOM or NIfTI file (by name or first bytes)."""
    kind = sniff_file_kind(path)
    if kind is not None:
        raise BadSampleError(str(path), f"is a {kind} file, not a {SUFFIX_NAMES} image; adapter image does not "
                                        f"read {kind} (see `mae-domains adapters`)")


def replace_nodata(array: np.ndarray, nodata: float | None, source: str) -> np.ndarray:
    """``(H, W, S)`` with declared nodata and detected fill values (see :mod:`mae_domains.data.fill_values`)
    replaced by each channel's median over the valid pixels; a file with no valid pixel is refused."""
    planes = np.moveaxis(array, -1, 0)
    invalid = declared_invalid(planes, nodata) | fill_invalid(planes)
    if not invalid.any():
        return array
    if invalid.all():
        raise BadSampleError(source, "holds only nodata / fill values" +
                             (f" (declared nodata {nodata:g})" if nodata is not None else ""))
    out = array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array.copy()
    for c in range(out.shape[-1]):
        plane = out[..., c]
        plane[invalid] = np.median(plane[~invalid]).astype(out.dtype)
    return out


def read_image(path: str | Path, channels: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``(channels, H, W)`` float32 in [0, 1]; colour becomes gray (luma) for 1 channel, gray is
    repeated for 3. Files whose header announces more than ``max_pixels`` values are refused before
    decoding. Raises :class:`BadSampleError` naming the file."""
    path = Path(path)
    source = str(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:  # an image suffix is trusted; else look at the first bytes
        refuse_other_kind(path)
    nodata = None
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array, nodata = _read_tiff(path, max_pixels)
        else:
            array = _read_pil(path, max_pixels)
    except BadSampleError:
        raise
    except Image.DecompressionBombError as err:
        raise BadSampleError(source, f"too many pixels for PIL's decompression-bomb guard ({err})") from None
    except (UnidentifiedImageError, OSError, ValueError, tifffile.TiffFileError) as err:
        refuse_other_kind(path)
        raise BadSampleError(source, f"cannot decode image ({type(err).__name__}: {err})") from None
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = drop_opaque_alpha(array, source)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise BadSampleError(source, f"expected a gray or RGB image, got array of shape {array.shape}; {STACK_HINT}")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise BadSampleError(source, f"image is too small ({array.shape[0]}x{array.shape[1]})")
    array = replace_nodata(array, nodata, source)
    image = scale_to_unit(array, source)
    if channels == 1 and image.shape[-1] == 3:
        image = image @ np.array([0.299, 0.587, 0.114], np.float32)
        image = image[..., None]
    elif channels == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] != channels:
        raise BadSampleError(source, f"has {image.shape[-1]} channels; the model expects {channels}")
    return np.ascontiguousarray(np.moveaxis(image, -1, 0))
