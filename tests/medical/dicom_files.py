"""Small DICOM files written with pydicom for the tests, one per variant found in hospital archives.

Each writer returns the path; the tests compute the expected displayed pixels from the stored values
with the formulas of PS3.3 (independently of the code under test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage - For Presentation
US_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")  # Ultrasound Image Storage
US_MULTIFRAME_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")
BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
MPEG4_AVC = UID("1.2.840.10008.1.2.4.102")


def base_dataset(rows: int, cols: int, *, syntax: UID = ExplicitVRLittleEndian, sop_class: UID = DX_STORAGE,
                 modality: str = "DX", photometric: str = "MONOCHROME2", bits_allocated: int = 16,
                 bits_stored: int = 12, signed: bool = False, samples: int = 1, frames: int | None = None) -> Dataset:
    """A minimal image data set with file meta information."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(rows: int, cols: int, low: int, high: int) -> np.ndarray:
    """Integers spread evenly from ``low`` to ``high`` over the image, row-major."""
    return np.round(np.linspace(low, high, rows * cols)).astype(np.int64).reshape(rows, cols)


def voi_lut_item(first: int, table: np.ndarray, bits: int, explanation: str = "", as_ow: bool = False,
                 big_endian: bool = False) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(table) % 65536, first, bits]
    if explanation:
        item.LUTExplanation = explanation
    if as_ow:
        item.add_new(0x00283006, "OW", table.astype(">u2" if big_endian else "<u2").tobytes())
    else:
        item.add_new(0x00283006, "US", [int(v) for v in table])
    return item


def monochrome1_voi_lut(path: Path) -> tuple[Path, np.ndarray, int, np.ndarray]:
    """MONOCHROME1, 12 bits, a VOI LUT sequence (sqrt curve, first mapped 1000, 2048 entries, 12-bit) and
    also a window that must lose to the LUT. Returns ``(path, stored, first, table)``."""
    stored = ramp(8, 10, 0, 4095)
    table = np.round(np.sqrt(np.linspace(0, 1, 2048)) * 4095).astype(np.int64)
    ds = base_dataset(8, 10, photometric="MONOCHROME1")
    ds.VOILUTSequence = DicomSequence([voi_lut_item(1000, table, 12, "SQRT")])
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = stored.astype("<u2").tobytes()
    return write(ds, path), stored, 1000, table


def slope_intercept(path: Path) -> tuple[Path, np.ndarray]:
    """Unsigned 12-bit, RescaleSlope 2, Intercept -1024, two windows (0/400 "SOFT", 500/1500 "WIDE")."""
    stored = ramp(6, 7, 0, 1023)
    ds = base_dataset(6, 7)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, -1024, "US"
    ds.WindowCenter, ds.WindowWidth = [0, 500], [400, 1500]
    ds.WindowCenterWidthExplanation = ["SOFT", "WIDE"]
    ds.PixelData = stored.astype("<u2").tobytes()
    return write(ds, path), stored


def twelve_bits_in_sixteen(path: Path) -> tuple[Path, np.ndarray]:
    """12 of 16 bits used, garbage (overlay) bits set above bit 11, no window: min-max display."""
    stored = ramp(5, 6, 100, 3000)
    ds = base_dataset(5, 6)
    ds.PixelData = (stored.astype(np.uint16) | np.uint16(0xA000)).astype("<u2").tobytes()
    return write(ds, path), stored


def signed_pixels(path: Path) -> tuple[Path, np.ndarray]:
    """Signed 12-bit values (-2048..2047) in 16 bits, window 0/2000."""
    stored = ramp(6, 6, -2048, 2047)
    ds = base_dataset(6, 6, signed=True)
    ds.WindowCenter, ds.WindowWidth = 0, 2000
    ds.PixelData = stored.astype("<i2").tobytes()
    return write(ds, path), stored


def big_endian(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Explicit VR Big Endian, 16 bits stored, a VOI LUT whose data is OW (byte order matters)."""
    stored = ramp(4, 9, 0, 511)
    table = (np.arange(512) * 3 // 2).astype(np.int64)  # 0..766, 10-bit output
    ds = base_dataset(4, 9, syntax=ExplicitVRBigEndian, bits_stored=16)
    ds.VOILUTSequence = DicomSequence([voi_lut_item(0, table, 10, as_ow=True, big_endian=True)])
    ds.PixelData = stored.astype(">u2").tobytes()
    return write(ds, path), stored, table


def signed_modality_lut(path: Path) -> tuple[Path, np.ndarray, int, np.ndarray]:
    """Signed pixels through a Modality LUT sequence whose descriptor is written as US (first mapped 64512,
    i.e. -1024 for signed input, PS3.3 C.11.1.1.1) with 12-bit entries, then window 1024/2048. Returns
    ``(path, stored, first, table)``."""
    stored = ramp(6, 8, -1500, 3500)
    table = (np.arange(4096) // 2).astype(np.int64)  # 0..2047
    ds = base_dataset(6, 8, signed=True, bits_stored=16)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 64512, 12])  # LUTDescriptor
    item.add_new(0x00283006, "US", [int(v) for v in table])  # LUTData
    item.ModalityLUTType = "US"
    ds.ModalityLUTSequence = DicomSequence([item])
    ds.WindowCenter, ds.WindowWidth = 1024, 2048
    ds.PixelData = stored.astype("<i2").tobytes()
    return write(ds, path), stored, -1024, table


def packed_eight_bit_voi_lut(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """8-bit pixels and a VOI LUT of 8-bit entries packed two per 16-bit word of OW data (CP-522)."""
    stored = ramp(4, 8, 0, 255)
    table = (255 - np.arange(256)) // 2  # 127..0
    ds = base_dataset(4, 8, bits_allocated=8, bits_stored=8)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "OW", table.astype(np.uint8).tobytes())  # 256 bytes: 128 words
    ds.VOILUTSequence = DicomSequence([item])
    ds.PixelData = stored.astype(np.uint8).tobytes()
    return write(ds, path), stored, table


def palette_colour(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """PALETTE COLOR, 8-bit indices, 256-entry 16-bit red/green/blue tables. Returns the indices and the
    ``(256, 3)`` palette."""
    indices = ramp(6, 8, 0, 255)
    k = np.arange(256)
    palette = np.stack([k * 257, (255 - k) * 257, (k * 7 % 256) * 257], axis=1).astype(np.int64)
    ds = base_dataset(6, 8, sop_class=US_STORAGE, modality="US", photometric="PALETTE COLOR", bits_allocated=8,
                      bits_stored=8)
    for colour, column in (("Red", 0), ("Green", 1), ("Blue", 2)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        ds.add_new({"Red": 0x00281201, "Green": 0x00281202, "Blue": 0x00281203}[colour], "OW",
                   palette[:, column].astype("<u2").tobytes())
    ds.PixelData = indices.astype(np.uint8).tobytes()
    return write(ds, path), indices, palette


def rgb_to_ybr_full(rgb: np.ndarray) -> np.ndarray:
    """PS3.3 C.7.6.3.1.2 YBR_FULL from 8-bit RGB (rounded)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return np.clip(np.round(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def colour_test_image(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Smooth 8-bit RGB content (JPEG-friendly)."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    rgb = np.stack([40 + 180 * xx / cols, 30 + 200 * yy / rows, 120 + 60 * np.sin(xx / 5.0 + seed)], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def ybr_full(path: Path) -> tuple[Path, np.ndarray]:
    """Uncompressed YBR_FULL ultrasound frame; returns the RGB it encodes."""
    rgb = colour_test_image(10, 12)
    ds = base_dataset(10, 12, sop_class=US_STORAGE, modality="US", photometric="YBR_FULL", bits_allocated=8,
                      bits_stored=8, samples=3)
    ds.PixelData = rgb_to_ybr_full(rgb).tobytes()
    return write(ds, path), rgb


def jpeg_baseline_ybr422(path: Path) -> tuple[Path, np.ndarray]:
    """JPEG baseline, 4:2:2 chroma subsampling, PhotometricInterpretation YBR_FULL_422."""
    rgb = colour_test_image(32, 48)
    data = imagecodecs.jpeg8_encode(rgb, level=95, subsampling=(2, 1))
    ds = base_dataset(32, 48, syntax=JPEGBaseline8Bit, sop_class=US_STORAGE, modality="US",
                      photometric="YBR_FULL_422", bits_allocated=8, bits_stored=8, samples=3)
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    return write(ds, path), rgb


def _encapsulated(ds: Dataset, frames: Sequence[bytes], path: Path) -> Path:
    ds.PixelData = encapsulate(list(frames), has_bot=True)
    ds["PixelData"].VR = "OB"
    return write(ds, path)


def rle_cine(path: Path, frames: int = 5, poison_except: int | None = None) -> tuple[Path, np.ndarray]:
    """Multi-frame RLE ultrasound cine of 8-bit MONOCHROME2 frames (frame k = k * 40 + ramp). With
    ``poison_except=k`` every other frame holds bytes no RLE decoder accepts, so only a reader that
    decodes frame k alone succeeds."""
    rows, cols = 12, 16
    stack = np.stack([(ramp(rows, cols, 0, 50) + 40 * k) % 256 for k in range(frames)]).astype(np.uint8)
    encoded = [_rle_frame(f) for f in stack]
    if poison_except is not None:
        encoded = [e if k == poison_except else b"\xff" * len(e) for k, e in enumerate(encoded)]
    ds = base_dataset(rows, cols, syntax=RLELossless, sop_class=US_MULTIFRAME_STORAGE, modality="US",
                      bits_allocated=8, bits_stored=8, frames=frames)
    return _encapsulated(ds, encoded, path), stack


def _rle_frame(frame: np.ndarray) -> bytes:
    """One 8-bit frame as DICOM RLE (pydicom's native encoder)."""
    from pydicom.pixels.encoders import RLELosslessEncoder

    return RLELosslessEncoder.encode(frame, rows=frame.shape[0], columns=frame.shape[1], samples_per_pixel=1,
                                     bits_allocated=8, bits_stored=8, pixel_representation=0,
                                     photometric_interpretation="MONOCHROME2", number_of_frames=1)


def jpeg2000(path: Path, lossless: bool = True) -> tuple[Path, np.ndarray]:
    """12-bit MONOCHROME2 radiograph in JPEG 2000 (lossless, or lossy at about 20:1), window 2048/4096."""
    stored = (ramp(32, 32, 0, 4095) + (np.arange(32)[None, :] * 37) % 200).clip(0, 4095).astype(np.uint16)
    if lossless:
        data = imagecodecs.jpeg2k_encode(stored, level=0, bitspersample=12, reversible=True,
                                         codecformat=imagecodecs.JPEG2K.CODEC.J2K)
    else:
        data = imagecodecs.jpeg2k_encode(stored, level=40, bitspersample=12, reversible=False,
                                         codecformat=imagecodecs.JPEG2K.CODEC.J2K)
    ds = base_dataset(32, 32, syntax=JPEG2000Lossless if lossless else JPEG2000)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.LossyImageCompression = "00" if lossless else "01"
    return _encapsulated(ds, [data], path), stored.astype(np.int64)


def jpeg_ls(path: Path) -> tuple[Path, np.ndarray]:
    """12-bit JPEG-LS lossless, no window (min-max display)."""
    stored = ramp(16, 20, 50, 4000).astype(np.uint16)
    data = imagecodecs.jpegls_encode(stored, level=0)
    ds = base_dataset(16, 20, syntax=JPEGLSLossless)
    return _encapsulated(ds, [data], path), stored.astype(np.int64)


def jpeg_lossless_sv1(path: Path) -> tuple[Path, np.ndarray]:
    """12-bit JPEG lossless (process 14, first-order prediction), no window."""
    stored = ramp(16, 16, 0, 4095).astype(np.uint16)
    data = imagecodecs.jpeg8_encode(stored, lossless=True, predictor=1, bitspersample=12)
    ds = base_dataset(16, 16, syntax=JPEGLosslessSV1)
    return _encapsulated(ds, [data], path), stored.astype(np.int64)


def jpeg_extended_12bit(path: Path) -> tuple[Path, np.ndarray]:
    """12-bit lossy JPEG (process 4, JPEG Extended), window 2048/4096."""
    stored = ramp(32, 32, 0, 4095).astype(np.uint16)
    data = imagecodecs.jpeg8_encode(stored, level=95, bitspersample=12)
    ds = base_dataset(32, 32, syntax=JPEGExtended12Bit)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    return _encapsulated(ds, [data], path), stored.astype(np.int64)


def structured_report(path: Path) -> Path:
    """A Basic Text SR: no pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = BASIC_TEXT_SR, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    return write(ds, path)


def video_file(path: Path) -> Path:
    """An MPEG-4 AVC/H.264 ultrasound cine (bytes are not real video: the syntax alone is unsupported)."""
    ds = base_dataset(16, 16, syntax=MPEG4_AVC, sop_class=US_MULTIFRAME_STORAGE, modality="US",
                      photometric="YBR_PARTIAL_420", bits_allocated=8, bits_stored=8, samples=3, frames=30)
    return _encapsulated(ds, [b"\x00\x00\x00\x01" + b"\x00" * 60], path)


def truncated(path: Path) -> Path:
    """A valid 12-bit radiograph cut in the middle of its pixel data."""
    stored = ramp(64, 64, 0, 4095)
    ds = base_dataset(64, 64)
    ds.PixelData = stored.astype("<u2").tobytes()
    write(ds, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    return path


def ultrasound_regions(ds: Dataset, boxes: Sequence[tuple[int, int, int, int, int]]) -> None:
    """Add SequenceOfUltrasoundRegions items ``(x0, y0, x1, y1, spatial_format)`` (inclusive corners)."""
    items = []
    for x0, y0, x1, y1, fmt in boxes:
        item = Dataset()
        item.RegionSpatialFormat = fmt
        item.RegionDataType = 1
        item.RegionFlags = 0
        item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
        items.append(item)
    ds.SequenceOfUltrasoundRegions = DicomSequence(items)


def rgb_ultrasound(path: Path, image: np.ndarray, boxes: Sequence[tuple[int, int, int, int, int]] | None = None,
                   frames: int = 1) -> Path:
    """An RGB ultrasound file of a gray ``(H, W)`` uint8 image (repeated ``frames`` times), with optional
    ultrasound regions."""
    rows, cols = image.shape
    rgb = np.repeat(image[..., None], 3, axis=-1).astype(np.uint8)
    ds = base_dataset(rows, cols, sop_class=US_MULTIFRAME_STORAGE if frames > 1 else US_STORAGE, modality="US",
                      photometric="RGB", bits_allocated=8, bits_stored=8, samples=3,
                      frames=frames if frames > 1 else None)
    if boxes:
        ultrasound_regions(ds, boxes)
    ds.PixelData = np.repeat(rgb[None], frames, axis=0).tobytes()
    return write(ds, path)
