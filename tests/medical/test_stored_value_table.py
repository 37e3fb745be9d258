"""The display chain run once per possible stored value and looked up (the table path) gives what pydicom's
own functions give on the whole frame, for every VOI and Modality LUT variant; wider and float pixels go
through pydicom on the frame (the direct path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence as DicomSequence

from mae_medical import DisplaySettings, read_dicom_frame
from mae_medical.dicom_display import grayscale_to_unit, modality_float32
from mae_medical.dicom_header import frame_attributes, little_endian
from mae_medical.stored_value_table import stored_value_table
from tests.medical import dicom_files as F

SIDE = 64  # 4096 pixels: every 12-bit stored value once


def every_value(low: int, high: int, side: int) -> np.ndarray:
    """Each integer of low..high, shuffled over a ``side`` x ``side`` frame (repeats fill the rest)."""
    values = np.resize(np.arange(low, high + 1), side * side)
    return np.random.default_rng(0).permutation(values).reshape(side, side)


def twelve_bit(photometric: str = "MONOCHROME2") -> tuple[Dataset, np.ndarray]:
    stored = every_value(0, 4095, SIDE)
    ds = F.base_dataset(SIDE, SIDE, photometric=photometric)
    ds.PixelData = stored.astype("<u2").tobytes()
    return ds, stored


def case_dataset(case: str) -> Dataset:
    if case == "signed":  # every int16 value, 16 bits stored
        ds = F.base_dataset(256, 256, signed=True, bits_stored=16)
        ds.PixelData = every_value(-32768, 32767, 256).astype("<i2").tobytes()
        ds.WindowCenter, ds.WindowWidth = -500, 3000
        return ds
    ds, _ = twelve_bit("MONOCHROME1" if case == "MONOCHROME1" else "MONOCHROME2")
    if case in ("linear window", "MONOCHROME1"):
        ds.WindowCenter, ds.WindowWidth = 1800, 1000
    elif case == "LINEAR_EXACT":
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 1500.5, 700.5, "LINEAR_EXACT"
    elif case == "SIGMOID":
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2048, 1200, "SIGMOID"
    elif case == "VOI LUT sequence":
        table = np.round(np.sqrt(np.linspace(0, 1, 3000)) * 65535).astype(np.int64)
        ds.VOILUTSequence = DicomSequence([F.voi_lut_item(500, table, 16)])
    elif case == "modality LUT sequence":
        item = Dataset()
        item.LUTDescriptor = [3500, 100, 16]  # 16-bit entries: pydicom reads no other depth here
        item.add_new(0x00283006, "US", [int(v) for v in np.round(np.linspace(0, 1, 3500) ** 2.2 * 65535)])
        item.ModalityLUTType = "OD"
        ds.ModalityLUTSequence = DicomSequence([item])
        ds.WindowCenter, ds.WindowWidth = 19000, 32000
    elif case == "rescale slope/intercept":
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 0.5, -1024.25, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
    return ds


def pydicom_on_the_frame(ds: Dataset) -> np.ndarray:
    """pydicom's Modality LUT and VOI on the whole frame, scaled from pydicom's output range to [0, 1]."""
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    if ds.get("VOILUTSequence"):
        low, high = 0.0, float(2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    elif ds.get("ModalityLUTSequence"):  # pydicom's window range after a Modality LUT: its entries
        low, high = 0.0, float(2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1)
    else:
        bits = int(ds.BitsStored)
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.PixelRepresentation else (0, 2**bits - 1)
        if "RescaleSlope" in ds:
            low, high = (v * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for v in (low, high))
    unit = (values - low) / (high - low)
    return 1.0 - unit if ds.PhotometricInterpretation == "MONOCHROME1" else unit


CASES = ["linear window", "LINEAR_EXACT", "SIGMOID", "VOI LUT sequence", "modality LUT sequence",
         "rescale slope/intercept", "signed", "MONOCHROME1"]


@pytest.mark.parametrize("case", CASES)
def test_table_path_equals_pydicom_on_the_whole_frame(tmp_path, case):
    path = F.write(case_dataset(case), tmp_path / "frame.dcm")
    ds = dcmread(path)
    assert stored_value_table(ds.pixel_array) is not None  # the table path is the one taken
    expected = pydicom_on_the_frame(ds)
    assert 0.05 < expected.mean() < 0.95  # the window or LUT spans the frame's values, not one side of them
    image = read_dicom_frame(path).image
    np.testing.assert_allclose(image, expected, atol=1e-6)
    direct = grayscale_to_unit(ds.pixel_array, frame_attributes(ds, 0), DisplaySettings(), little_endian(ds),
                               use_table=False)
    np.testing.assert_allclose(image, direct.image, atol=1e-6)


def test_table_path_of_a_min_max_frame_takes_the_range_of_its_own_values(tmp_path):
    ds, stored = twelve_bit()
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    stored[stored > 3000] = 3000  # only 0..3000 occur; the table holds every 16-bit value
    ds.PixelData = stored.astype("<u2").tobytes()
    frame = read_dicom_frame(F.write(ds, tmp_path / "minmax.dcm"))
    np.testing.assert_allclose(frame.image, stored / 3000.0, atol=1e-6)
    assert frame.meta["voi"] == "min-max -1000..5000"

    ds, stored = twelve_bit()  # a Modality LUT that is not monotonic, no VOI: the range of the looked-up values
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    lut = np.abs(np.arange(4096) - 3000) * 10  # 0 at 3000; 30000 at 0; 10950 at 4095
    item.add_new(0x00283006, "US", [int(v) for v in lut])
    ds.ModalityLUTSequence = DicomSequence([item])
    stored[(stored < 1000) | (stored > 3500)] = 2000  # present: 1000..3500, LUT values 0..20000
    ds.PixelData = stored.astype("<u2").tobytes()
    frame = read_dicom_frame(F.write(ds, tmp_path / "lut_minmax.dcm"))
    np.testing.assert_allclose(frame.image, lut[stored] / 20000.0, atol=1e-6)
    assert frame.meta["voi"] == "min-max 0..20000"


@pytest.mark.parametrize("dtype", ["u1", "i1", "<u2", "<i2", ">u2", ">i2"])
def test_look_up_gives_the_function_of_each_pixel(dtype):
    info = np.iinfo(np.dtype(dtype))
    pixels = np.random.default_rng(1).integers(info.min, info.max, size=(33, 17), endpoint=True).astype(dtype)
    table = stored_value_table(pixels)
    assert table is not None and len(table.inputs) == 2 ** (8 * np.dtype(dtype).itemsize)
    function = lambda v: np.sin(v.astype(np.float64) / 97.0) * 3 + v  # noqa: E731
    np.testing.assert_array_equal(table.look_up(function(table.inputs), pixels), function(pixels))


def test_float_and_32_bit_pixels_go_through_pydicom_on_the_frame(tmp_path):
    stored = F.ramp(8, 12, 0, 200000)
    ds = F.base_dataset(8, 12, bits_allocated=32, bits_stored=32)
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1000
    ds.WindowCenter, ds.WindowWidth = 40000, 60000
    ds.PixelData = stored.astype("<u4").tobytes()
    path = F.write(ds, tmp_path / "wide.dcm")
    assert stored_value_table(dcmread(path).pixel_array) is None
    values = stored * 0.5 - 1000
    expected = np.clip((values - (40000 - 0.5)) / (60000 - 1) + 0.5, 0, 1)  # PS3.3 C.11.2.1.2.1
    np.testing.assert_allclose(read_dicom_frame(path).image, expected, atol=1e-6)

    measured = (stored / 7.0).astype(np.float32)  # Float Pixel Data (e.g. a parametric map), SIGMOID window
    ds = F.base_dataset(8, 12, bits_allocated=32, bits_stored=32)
    del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.FloatPixelData = measured.astype("<f4").tobytes()
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 14000, 9000, "SIGMOID"
    path = F.write(ds, tmp_path / "float.dcm")
    expected = 1.0 / (1.0 + np.exp(-4.0 * (measured.astype(np.float64) - 14000) / 9000))  # C.11.2.1.3.1
    np.testing.assert_allclose(read_dicom_frame(path).image, expected, atol=1e-6)


def test_modality_float32_equals_pydicom_on_the_frame(tmp_path):
    for case in ("rescale slope/intercept", "modality LUT sequence", "signed"):
        ds = dcmread(F.write(case_dataset(case), tmp_path / "slice.dcm"))
        expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        np.testing.assert_array_equal(modality_float32(ds.pixel_array, ds, little_endian(ds)), expected)
