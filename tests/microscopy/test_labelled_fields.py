"""``read_labelled`` of the microscopy adapter: an OME-TIFF tile and its instance-mask TIFF, prepared as the
adapter prepares a crop for the encoder (channel names, per-channel percentile normalization)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from mae_domains.data.sample import BadSampleError, NormStats
from tests.microscopy.conftest import make_adapter
from tests.microscopy.files import ramp, write_ome_tiff


def write_tile(tmp_path, shape=(2, 40, 48)):
    data = ramp(shape, "uint16", offset=100)
    write_ome_tiff(tmp_path / "tile.ome.tif", data, ["DNA", "RNA"])
    mask = np.zeros(shape[1:], np.uint16)
    mask[5:15, 4:12], mask[20:30, 30:44] = 3, 12  # two nuclei, instance ids 3 and 12
    tifffile.imwrite(tmp_path / "tile_mask.tif", mask)
    return data, mask


def test_a_tile_comes_out_named_and_normalized_as_a_crop_and_its_mask_as_stored(tmp_path):
    data, mask = write_tile(tmp_path)
    adapter = make_adapter(32, normalize="percentile", percentiles=[1.0, 99.0])
    sample, labels = adapter.read_labelled(tmp_path / "tile.ome.tif", tmp_path / "tile_mask.tif")
    assert sample.image.shape == (2, 40, 48) and sample.meta["channel_names"] == ["DNA", "RNA"]
    for c in range(2):
        low, high = np.percentile(data[c].astype(np.float64), [1.0, 99.0])
        np.testing.assert_allclose(sample.image[c], (data[c] - low) / (high - low), atol=1e-5)
    np.testing.assert_array_equal(labels, mask.astype(np.int64))
    assert sample.meta["label_source"].endswith("tile_mask.tif") and sample.valid.all()


def test_archive_normalization_uses_the_checkpoints_statistics_by_channel_name(tmp_path):
    data, _ = write_tile(tmp_path)
    adapter = make_adapter(32, normalize="archive")
    stats = NormStats([1000.0, 2000.0], [10.0, 20.0], 8, ["RNA", "DNA"])
    sample, _ = adapter.read_labelled(tmp_path / "tile.ome.tif", tmp_path / "tile_mask.tif", stats=stats)
    np.testing.assert_allclose(sample.image[0], (data[0] - 2000.0) / 20.0, rtol=1e-6)  # DNA
    np.testing.assert_allclose(sample.image[1], (data[1] - 1000.0) / 10.0, rtol=1e-6)  # RNA


def test_a_png_mask_on_another_grid_or_a_time_series_is_a_bad_pair(tmp_path):
    write_tile(tmp_path)
    Image.fromarray(np.zeros((40, 47), np.uint8)).save(tmp_path / "short.png")
    adapter = make_adapter(32)
    with pytest.raises(BadSampleError, match=r"short\.png: label grid \(40, 47\) differs from the image grid \(40, 48\) "
                                             r"of .*tile\.ome\.tif"):
        adapter.read_labelled(tmp_path / "tile.ome.tif", tmp_path / "short.png")
    write_ome_tiff(tmp_path / "movie.ome.tif", ramp((3, 1, 40, 48)), ["DNA"], axes="TCYX")
    with pytest.raises(BadSampleError, match=r"movie\.ome\.tif: 2D segmentation reads one plane per channel; this "
                                             r"field has 3 time points"):
        adapter.read_labelled(tmp_path / "movie.ome.tif", tmp_path / "tile_mask.tif")
