"""``read_labelled`` of the 2D medical adapters: a PNG or DICOM image and its PNG mask at the evaluation path's
working resolution (shorter side to img_size, the whole image kept), normalized with the checkpoint's statistics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from mae_domains.data.sample import BadSampleError, NormStats
from tests.medical import dicom_files
from tests.medical.test_xray_evaluation import bound_xray

STATS = NormStats([0.4], [0.2], 10, ["gray"])


def test_png_pair_is_resized_like_the_evaluation_transform_and_the_mask_by_nearest_neighbour(tmp_path):
    image = ((np.arange(96 * 128).reshape(96, 128) * 13) % 256).astype(np.uint8)
    mask = np.zeros((96, 128), np.uint8)
    mask[30:60, 40:90] = 1
    mask[70:80, 10:20] = 2
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / "img_mask.png")
    adapter = bound_xray()  # img_size 32
    sample, labels = adapter.read_labelled(tmp_path / "img.png", tmp_path / "img_mask.png", stats=STATS)
    assert sample.image.shape == (1, 32, 43) and labels.shape == (32, 43) and labels.dtype == np.int64
    # the encoder sees what evaluation shows it: the centre crop of the whole image is the transform's output
    shown = adapter.transform(adapter.read(tmp_path / "img.png"), 0, False, STATS).image
    np.testing.assert_array_equal(sample.image[:, :, 5:37], shown)
    np.testing.assert_array_equal(labels, cv2.resize(mask, (43, 32), interpolation=cv2.INTER_NEAREST))
    assert labels[15, 20] == 1 and labels[25, 5] == 2 and labels[2, 2] == 0
    assert set(np.unique(labels)) == {0, 1, 2}  # ids are never blended
    assert (labels == 1).sum() == pytest.approx(30 * 50 / 9, rel=0.15)


def test_dicom_frame_as_displayed_with_a_png_mask(tmp_path):
    path, stored, _, _ = dicom_files.monochrome1_voi_lut(tmp_path / "cr.dcm")  # 8 x 10, MONOCHROME1, VOI LUT
    mask = np.zeros(stored.shape, np.uint8)
    mask[2:5, 3:7] = 1
    Image.fromarray(mask).save(tmp_path / "cr_mask.png")
    adapter = bound_xray()
    sample, labels = adapter.read_labelled(path, tmp_path / "cr_mask.png", stats=STATS)
    assert sample.image.shape == (1, 32, 40)  # 4x: the shorter side to img_size
    np.testing.assert_array_equal(labels, np.repeat(np.repeat(mask, 4, axis=0), 4, axis=1))
    shown = adapter.transform(adapter.read(path), 0, False, STATS).image
    np.testing.assert_array_equal(sample.image[:, :, 4:36], shown)
    assert sample.meta["photometric"] == "MONOCHROME1"


def test_a_mask_of_another_size_is_a_bad_pair_naming_both_files(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(tmp_path / "img_mask.png")
    with pytest.raises(BadSampleError, match=r"img_mask\.png: label grid \(30, 20\) differs from the image grid "
                                             r"\(20, 30\) of .*img\.png"):
        bound_xray().read_labelled(tmp_path / "img.png", tmp_path / "img_mask.png")
