"""The image reader refuses before decoding what it must not read: pixel bombs, other kinds of file,
single bands of satellite scenes; nodata fills never reach the statistics."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import tifffile
from PIL import Image
from rasterio.transform import from_origin

from mae_domains.config import load_config
from mae_domains.data.read_failures import StatsError
from mae_domains.data.sample import BadSampleError
from mae_image import ImageAdapter, read_image


def dicom_like(path):
    """A file with DICOM's 128-byte preamble and ``DICM`` marker (as extension-less series files have)."""
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00" * 16)
    return path


def geotiff(path, data, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype.name, crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10),
                       nodata=nodata) as dst:
        dst.write(data[None])
    return path


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((200, 300), np.uint8), compression="zlib")
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(tmp_path / "big.png")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although over the limit")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_decoding)
    with pytest.raises(BadSampleError, match=r"big.tif: decoding it would produce 60,000 values.*max_pixels=50,000"):
        read_image(tmp_path / "big.tif", 1, max_pixels=50_000)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(BadSampleError, match=r"big.png: decoding it would produce 180,000 values \(200 x 300 x 3\)"):
        read_image(tmp_path / "big.png", 3, max_pixels=100_000)


def test_the_adapter_takes_the_limit_from_data_max_pixels(tmp_path):
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "scan.png")
    adapter = ImageAdapter().bind(load_config(None, ["adapter=image", "data.max_pixels=1000"]))
    with pytest.raises(BadSampleError, match="data.max_pixels=1,000"):
        adapter.read(tmp_path / "scan.png")
    assert ImageAdapter().read(tmp_path / "scan.png").image.shape[-2:] == (40, 50)


def test_float_fill_values_do_not_poison_statistics(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(3):
        tifffile.imwrite(tmp_path / f"good{k}.tif", rng.random((32, 32), dtype=np.float32))
    filled = rng.random((32, 32), dtype=np.float32)
    filled[:8] = -3.4028235e38  # float GeoTIFF nodata fill, not declared
    tifffile.imwrite(tmp_path / "filled.tif", filled)
    image = read_image(tmp_path / "filled.tif", 1)
    assert np.allclose(image[0, :8], np.median(filled[8:])) and np.array_equal(image[0, 8:], filled[8:])
    adapter = ImageAdapter().bind(load_config(None, ["adapter=image", "model.in_chans=1"]))
    stats = adapter.compute_stats(adapter.discover([tmp_path]))
    assert 0.4 < stats.mean[0] < 0.6 and 0.2 < stats.std[0] < 0.4 and stats.count == 4


def test_declared_geotiff_nodata_is_replaced(tmp_path):
    data = np.full((16, 16), 0.25, np.float32)
    data[0, 0] = -9999.0  # one pixel: declared, so nodata although no large block
    image = read_image(geotiff(tmp_path / "dem.tif", data, nodata=-9999.0), 1)
    assert np.allclose(image, 0.25)


def test_dicom_and_nifti_are_named_not_decoded(tmp_path):
    with pytest.raises(BadSampleError, match=r"IM0001: is a DICOM file, not a PNG/JPEG/TIFF/BMP image"):
        read_image(dicom_like(tmp_path / "IM0001"), 1)
    (tmp_path / "brain.nii.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(BadSampleError, match=r"brain.nii.gz: is a NIfTI file"):
        read_image(tmp_path / "brain.nii.gz", 1)


def test_single_satellite_band_files_point_to_multispectral(tmp_path):
    band = geotiff(tmp_path / "T33UUP_20200601T101031_B04_10m.tif", np.full((16, 16), 500, np.uint16))
    with pytest.raises(BadSampleError, match="single band of a georeferenced satellite scene.*remote_sensing.multispectral"):
        read_image(band, 1)
    landsat = geotiff(tmp_path / "LC08_L2SP_044034_20200606_20200824_02_T1_SR_B5.TIF", np.full((16, 16), 9, np.uint16))
    with pytest.raises(BadSampleError, match="remote_sensing.multispectral"):
        read_image(landsat, 1)
    assert read_image(geotiff(tmp_path / "dem.tif", np.full((16, 16), 500, np.uint16)), 1).shape == (1, 16, 16)
    tifffile.imwrite(tmp_path / "plain_B04.tif", np.full((16, 16), 500, np.uint16))  # not georeferenced: a picture
    assert read_image(tmp_path / "plain_B04.tif", 1).shape == (1, 16, 16)
    adapter = ImageAdapter()
    with pytest.raises(StatsError, match=r"(?s)reasons:\n  2 x is a single band.*remote_sensing.multispectral"):
        adapter.compute_stats([band, landsat])
