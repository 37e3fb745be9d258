"""Each NGFF version the OME-Zarr reader supports, written with zarr as its spec lays it out, reads with
the right pixels, channel names, axes and pixel size; a version it does not support is refused by name."""

import numpy as np
import pytest
import zarr

from mae_domains.data.sample import BadSampleError
from mae_domains.data.windows import PixelWindow
from mae_microscopy.zarr_reader import SUPPORTED_NGFF_VERSIONS, ZarrField, ZarrImageRef

from .files import ramp, write_ome_zarr


def write_early_ngff(path, data, version):
    """0.1/0.2: a 5D TCZYX pyramid without axes or transforms; 0.3: axes as a list of names."""
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("0", data=data, chunks=(1,) * (data.ndim - 2) + (16, 16))
    multiscale = {"version": version, "datasets": [{"path": "0"}]}
    if version == "0.3":
        multiscale["axes"] = ["c", "y", "x"]
    root.attrs["multiscales"] = [multiscale]
    root.attrs["omero"] = {"channels": [{"label": "DNA"}, {"label": "RNA"}]}
    return path


def test_every_supported_version_is_tested():
    assert SUPPORTED_NGFF_VERSIONS == ("0.1", "0.2", "0.3", "0.4", "0.5")


@pytest.mark.parametrize("version", ["0.1", "0.2"])
def test_implicit_tczyx_axes(tmp_path, version):
    data = ramp((1, 2, 3, 32, 32))  # T, C, Z, Y, X
    field = ZarrField(ZarrImageRef(str(write_early_ngff(tmp_path / "img.zarr", data, version))))
    info = field.info()
    assert info.sizes == (1, 2, 3, 32, 32) and info.channel_names == ("DNA", "RNA")
    assert info.pixel_size is None and info.z_step is None  # no scale before 0.4: unknown, never 1 um
    np.testing.assert_array_equal(field.read(0, [1], [2], PixelWindow(4, 8, 16, 16))[0, 0], data[0, 1, 2, 4:20, 8:24])


def test_axes_as_names(tmp_path):
    data = ramp((2, 32, 40))
    field = ZarrField(ZarrImageRef(str(write_early_ngff(tmp_path / "img.zarr", data, "0.3"))))
    assert field.info().sizes == (1, 2, 1, 32, 40) and field.info().channel_names == ("DNA", "RNA")
    assert field.info().pixel_size is None
    np.testing.assert_array_equal(field.read(0, [0], None, PixelWindow(0, 0, 32, 40))[0, 0], data[0])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_typed_axes_and_scale(tmp_path, version):
    data = ramp((2, 32, 48))
    field = ZarrField(ZarrImageRef(str(write_ome_zarr(tmp_path / "img.zarr", data, ["DNA", "ER"], 0.325, version))))
    assert field.info().pixel_size == pytest.approx((0.325, 0.325)) and field.info().channel_names == ("DNA", "ER")
    np.testing.assert_array_equal(field.read(0, [1], None, PixelWindow(2, 3, 8, 8))[0, 0], data[1, 2:10, 3:11])


def test_unsupported_version_is_refused_by_name(tmp_path):
    path = write_ome_zarr(tmp_path / "next.zarr", ramp((2, 32, 32)), ["DNA", "ER"], 0.5, "0.5")
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["ome"] = {**group.attrs["ome"], "version": "0.6"}
    with pytest.raises(BadSampleError, match=r"next.zarr: OME-Zarr \(NGFF\) version 0.6 is not supported"):
        ZarrField(ZarrImageRef(str(path))).info()
