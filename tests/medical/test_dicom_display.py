"""DICOM read as a viewer displays it: every variant is compared against pixel values computed from the
stored values with the formulas of PS3.3 C.11 (Modality LUT, VOI LUT / window, MONOCHROME1)."""

from __future__ import annotations

import cv2
import imagecodecs
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import JPEG2000Lossless

from mae_domains.data.sample import BadSampleError
from mae_medical import DisplaySettings, read_dicom_frame
from mae_medical.dicom_display import window_to_unit
from mae_medical.jpeg2000_reduced import codestream_precision
from tests.medical import dicom_files as F

LUMA = np.array([0.299, 0.587, 0.114])


def linear_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, output range [0, 1]."""
    x = x.astype(np.float64)
    out = (x - (c - 0.5)) / (w - 1) + 0.5
    out[x <= c - 0.5 - (w - 1) / 2] = 0.0
    out[x > c - 0.5 + (w - 1) / 2] = 1.0
    return out


def test_monochrome1_with_voi_lut_sequence_is_inverted_after_the_lut(tmp_path):
    path, stored, first, table = F.monochrome1_voi_lut(tmp_path / "m1.dcm")
    frame = read_dicom_frame(path)
    expected = 1.0 - table[np.clip(stored - first, 0, len(table) - 1)] / 4095.0
    np.testing.assert_allclose(frame.image, expected, atol=1e-6)
    assert frame.image[0, 0] == pytest.approx(1.0)  # stored 0 -> below the LUT -> entry 0 -> white in MONOCHROME1
    assert frame.image[-1, -1] == pytest.approx(0.0)  # the densest value is black
    assert frame.meta["voi"] == "VOI LUT" and frame.meta["photometric"] == "MONOCHROME1"


def test_window_wins_over_lut_when_configured(tmp_path):
    path, stored, _, _ = F.monochrome1_voi_lut(tmp_path / "m1.dcm")
    frame = read_dicom_frame(path, settings=DisplaySettings(prefer_lut=False))
    np.testing.assert_allclose(frame.image, 1.0 - linear_window(stored, 2048, 4096), atol=1e-6)


def test_rescale_slope_intercept_then_first_window(tmp_path):
    path, stored = F.slope_intercept(tmp_path / "si.dcm")
    hu = stored * 2.0 - 1024.0
    first = read_dicom_frame(path)
    np.testing.assert_allclose(first.image, linear_window(hu, 0, 400), atol=1e-6)
    assert first.meta["voi"] == "window 0/400 (1 of 2)"
    for choice in (1, "wide", "WIDE"):
        second = read_dicom_frame(path, settings=DisplaySettings(window=choice))
        np.testing.assert_allclose(second.image, linear_window(hu, 500, 1500), atol=1e-6)
    missing = read_dicom_frame(path, settings=DisplaySettings(window=7))  # out of range: the first
    np.testing.assert_allclose(missing.image, first.image)
    override = read_dicom_frame(path, settings=DisplaySettings(override=(-500.0, 1000.0)))
    np.testing.assert_allclose(override.image, linear_window(hu, -500, 1000), atol=1e-6)


def test_twelve_bits_in_sixteen_masks_the_high_bits(tmp_path):
    path, stored = F.twelve_bits_in_sixteen(tmp_path / "b12.dcm")
    frame = read_dicom_frame(path)
    np.testing.assert_allclose(frame.image, (stored - 100) / 2900.0, atol=1e-6)
    assert frame.meta["voi"] == "min-max 100..3000"


def test_signed_pixels(tmp_path):
    path, stored = F.signed_pixels(tmp_path / "signed.dcm")
    frame = read_dicom_frame(path)
    np.testing.assert_allclose(frame.image, linear_window(stored, 0, 2000), atol=1e-6)
    assert frame.image[0, 0] == 0.0 and frame.image[-1, -1] == 1.0


def test_big_endian_file_with_ow_lookup_table(tmp_path):
    path, stored, table = F.big_endian(tmp_path / "be.dcm")
    frame = read_dicom_frame(path)
    np.testing.assert_allclose(frame.image, table[stored] / 1023.0, atol=1e-6)


def test_modality_lut_sequence_with_a_signed_first_value_encoded_as_us(tmp_path):
    # pydicom reads the descriptor's second value as written (US 64512); the standard makes it signed here.
    path, stored, first, table = F.signed_modality_lut(tmp_path / "mlut.dcm")
    frame = read_dicom_frame(path)
    values = table[np.clip(stored - first, 0, len(table) - 1)]  # below -1024: entry 0; past 3071: the last
    np.testing.assert_allclose(frame.image, linear_window(values, 1024, 2048), atol=1e-6)
    assert frame.image[0, 0] == 0.0 and frame.image[-1, -1] == pytest.approx(1.0)


def test_voi_lut_of_packed_eight_bit_entries(tmp_path):
    path, stored, table = F.packed_eight_bit_voi_lut(tmp_path / "packed.dcm")
    frame = read_dicom_frame(path)
    np.testing.assert_allclose(frame.image, table[stored] / 255.0, atol=1e-6)
    assert frame.meta["voi"] == "VOI LUT"


def test_a_linear_window_narrower_than_one_is_refused_naming_the_file(tmp_path):
    path, _ = F.signed_pixels(tmp_path / "narrow.dcm")
    ds = dcmread(path)
    ds.WindowWidth = 0.5  # PS3.3 C.11.2.1.2.1: LINEAR needs a width of at least 1
    ds.save_as(path)
    with pytest.raises(BadSampleError, match=r"narrow.dcm: cannot apply the display transforms .*Window Width"):
        read_dicom_frame(path)


def test_palette_colour_becomes_luma(tmp_path):
    path, indices, palette = F.palette_colour(tmp_path / "palette.dcm")
    frame = read_dicom_frame(path)
    np.testing.assert_allclose(frame.image, palette[indices] @ LUMA / 65535.0, atol=1e-6)


def test_ybr_full_becomes_luma(tmp_path):
    path, rgb = F.ybr_full(tmp_path / "ybr.dcm")
    frame = read_dicom_frame(path)
    np.testing.assert_allclose(frame.image, rgb @ LUMA / 255.0, atol=1.5 / 255)


def test_jpeg_baseline_ybr_full_422(tmp_path):
    path, rgb = F.jpeg_baseline_ybr422(tmp_path / "jpeg422.dcm")
    frame = read_dicom_frame(path)
    error = np.abs(frame.image - rgb @ LUMA / 255.0)
    assert error.mean() < 0.01 and error.max() < 0.06
    assert frame.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.50"


def test_jpeg2000_lossless_is_exact_and_lossy_is_close(tmp_path):
    path, stored = F.jpeg2000(tmp_path / "j2k.dcm")
    np.testing.assert_allclose(read_dicom_frame(path).image, linear_window(stored, 2048, 4096), atol=1e-6)
    lossy, stored = F.jpeg2000(tmp_path / "j2k_lossy.dcm", lossless=False)
    error = read_dicom_frame(lossy).image - linear_window(stored, 2048, 4096)
    assert 0 < np.abs(error).max() and np.sqrt(np.mean(error**2)) < 0.02  # lossy, but close


def test_jpeg_extended_12_bit(tmp_path):
    path, stored = F.jpeg_extended_12bit(tmp_path / "jpeg12.dcm")
    error = read_dicom_frame(path).image - linear_window(stored, 2048, 4096)
    assert np.abs(error).max() < 0.01  # lossy at quality 95


@pytest.mark.parametrize("writer", [F.jpeg_ls, F.jpeg_lossless_sv1], ids=["jpeg-ls", "jpeg-lossless-sv1"])
def test_lossless_jpeg_family_is_exact(tmp_path, writer):
    path, stored = writer(tmp_path / "lossless.dcm")
    low, high = stored.min(), stored.max()
    np.testing.assert_allclose(read_dicom_frame(path).image, (stored - low) / (high - low), atol=1e-6)


def test_multiframe_rle_one_frame_at_a_time(tmp_path):
    path, stack = F.rle_cine(tmp_path / "cine.dcm", frames=5)
    for k in (0, 3, 4):
        frame = read_dicom_frame(path, k)
        np.testing.assert_allclose(frame.image, stack[k] / 255.0, atol=1e-6)
        assert (frame.meta["frame"], frame.meta["frames"]) == (k, 5)
        assert frame.meta["sample_id"] == f"cine.dcm#frame={k}"


def test_a_300_frame_cine_is_not_decoded_whole(tmp_path):
    """Every frame but 123 holds bytes no RLE decoder accepts: reading frame 123 works only if it is
    decoded alone."""
    path, stack = F.rle_cine(tmp_path / "long.dcm", frames=300, poison_except=123)
    np.testing.assert_allclose(read_dicom_frame(path, 123).image, stack[123] / 255.0, atol=1e-6)
    with pytest.raises(Exception, match="long.dcm: cannot decode frame 123 of 300"):
        read_dicom_frame(path, 122)


def test_enhanced_multiframe_takes_each_frames_window_from_its_functional_group(tmp_path):
    stored = np.stack([F.ramp(4, 4, 0, 1000), F.ramp(4, 4, 0, 1000)])
    ds = F.base_dataset(4, 4, frames=2)
    shared = Dataset()
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, -100, "US"
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for centre in (200, 600):
        group, voi = Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = centre, 300
        group.FrameVOILUTSequence = DicomSequence([voi])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = stored.astype("<u2").tobytes()
    path = F.write(ds, tmp_path / "enhanced.dcm")
    for k, centre in enumerate((200, 600)):
        np.testing.assert_allclose(read_dicom_frame(path, k).image, linear_window(stored[k] - 100.0, centre, 300),
                                   atol=1e-6)


def test_voi_lut_functions():
    x = np.array([-10.0, 0.0, 10.0])
    np.testing.assert_allclose(window_to_unit(x, 0, 20, "LINEAR_EXACT"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(window_to_unit(x, 0, 20, "SIGMOID"), 1 / (1 + np.exp(-4 * x / 20)), atol=1e-6)
    step = window_to_unit(np.array([-10.0, 0.0, 0.5, 10.0]), 0.5, 1, "LINEAR")  # width 1: a threshold above c - 0.5
    np.testing.assert_allclose(step, [0.0, 0.0, 1.0, 1.0])


def test_file_without_preamble_is_read(tmp_path):
    path, stored = F.twelve_bits_in_sixteen(tmp_path / "with_preamble.dcm")
    raw = path.read_bytes()
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(raw[132:])  # drop the 128-byte preamble and "DICM"
    np.testing.assert_allclose(read_dicom_frame(bare).image, (stored - 100) / 2900.0, atol=1e-6)


def test_large_jpeg2000_is_decoded_at_reduced_resolution(tmp_path):
    stored = (F.ramp(128, 128, 0, 4095) + 300 * np.sin(np.arange(128) / 9.0)[None, :]).clip(0, 4095).astype(np.uint16)
    data = imagecodecs.jpeg2k_encode(stored, level=0, bitspersample=12, reversible=True,
                                     codecformat=imagecodecs.JPEG2K.CODEC.J2K)
    ds = F.base_dataset(128, 128, syntax=JPEG2000Lossless)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelSpacing = [0.2, 0.2]
    path = F._encapsulated(ds, [data], tmp_path / "big.dcm")
    full = read_dicom_frame(path)
    np.testing.assert_allclose(full.image, linear_window(stored, 2048, 4096), atol=1e-6)
    half = read_dicom_frame(path, min_size=64)  # one level down still keeps 64 px
    assert half.image.shape == (64, 64) and half.meta["decoded_scale"] == 0.5 and half.meta["spacing"] == [0.4, 0.4]
    area = cv2.resize(full.image, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(half.image - area).mean() < 0.01
    assert read_dicom_frame(path, min_size=40).image.shape == (64, 64)  # 32 px would be too small
    assert read_dicom_frame(path, min_size=32).image.shape == (32, 32)
    assert read_dicom_frame(path, min_size=200).image.shape == (128, 128)
    wrapped = imagecodecs.jpeg2k_encode(stored, level=0, bitspersample=12, reversible=True)  # a JP2 file
    assert wrapped[:4] != data[:4] and codestream_precision(wrapped) == codestream_precision(data) == 12
