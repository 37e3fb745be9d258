"""A window read never decodes more than data.max_pixels: a single-strip plane is refused before decoding,
the same image stored in tiles is read window by window."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from mae_domains.config import load_config
from mae_domains.data.sample import BadSampleError
from mae_domains.registry import get_adapter


def adapter_with_limit(limit: int):
    adapter = get_adapter("microscopy.channel_agnostic")
    return adapter.bind(load_config(None, ["adapter=microscopy.channel_agnostic", "model.img_size=32",
                                           f"data.max_pixels={limit}"]))


def test_single_strip_plane_is_refused_tiled_plane_is_read(tmp_path):
    planes = np.random.default_rng(0).integers(1, 4000, (2, 512, 512), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "strip.tif", planes, photometric="minisblack", rowsperstrip=512)
    tifffile.imwrite(tmp_path / "tiled.tif", planes, photometric="minisblack", tile=(64, 64))
    adapter = adapter_with_limit(20_000)  # 2 channels x one 64x64 tile = 8192; the whole strip is 524,288
    strip = next(r for r in adapter.discover([tmp_path / "strip.tif"]))
    with pytest.raises(BadSampleError, match="strip.tif: reading this window .* data.max_pixels=20,000"):
        adapter.read(strip)
    tiled = next(r for r in adapter.discover([tmp_path / "tiled.tif"]))
    sample = adapter.read(tiled)
    assert sample.image.shape[-2:] == (32, 32) and sample.image.shape[0] == 2


def sparse_ome_zarr(path, shape=(3, 2**20, 2**20)):
    """An OME-Zarr that declares ``shape`` (and a half-size level) and stores one chunk."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    full = root.create_array("0", shape=shape, chunks=(1, 1024, 1024), dtype="uint16", fill_value=0)
    full[0, :1024, :1024] = 7
    root.create_array("1", shape=(shape[0], shape[1] // 2, shape[2] // 2), chunks=(1, 1024, 1024), dtype="uint16",
                      fill_value=0)
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1, 2**k, 2**k]}]} for k in (0, 1)]}]
    return path


@pytest.mark.slow  # a fresh CLI process (about 20 s to import), with a deadline
def test_a_zarr_declaring_3_x_2e20_x_2e20_is_refused_from_its_metadata_within_a_deadline(tmp_path):
    """It used to make millions of crops and read every chunk for the overview (3.4 GB, killed at 180 s)."""
    import os
    import subprocess
    import sys

    store = sparse_ome_zarr(tmp_path / "huge.zarr")
    done = subprocess.run([sys.executable, "-m", "mae_domains.cli", "inspect", "--adapter", "microscopy.channel_agnostic",
                           "--out", str(tmp_path / "out"), str(store)], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert last.startswith("error: none of the 1 field(s) can be used (huge.zarr: ")
    assert ("pyramid level 0 (declared shape) would produce 3,298,534,883,328 values (3 x 1048576 x 1048576), more "
            "than data.max_pixels=268,435,456") in last


def test_every_pyramid_level_and_plain_arrays_are_checked(tmp_path):
    import zarr

    from mae_microscopy.zarr_reader import ZarrField, ZarrImageRef

    store = sparse_ome_zarr(tmp_path / "small.zarr", shape=(2, 64, 64))
    ref = ZarrImageRef(str(store))
    assert ZarrField(ref, 0, max_pixels=2 * 64 * 64).info().height == 64
    with pytest.raises(BadSampleError, match="level 0 .*8,192 values"):
        ZarrField(ref, 1, max_pixels=2 * 64 * 64 - 1).info()  # reading level 1 still checks level 0
    plain = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(2, 64, 64), chunks=(1, 32, 32),
                            dtype="uint8", zarr_format=2)
    with pytest.raises(BadSampleError, match="plain.zarr: the array \\(declared shape\\) would produce 8,192 values"):
        ZarrField(ZarrImageRef(str(tmp_path / "plain.zarr")), 0, max_pixels=8000).info()
    assert plain.shape == (2, 64, 64)
    adapter = adapter_with_limit(2 * 64 * 64 - 1)
    with pytest.raises(ValueError, match="small.zarr: .*level 0 .*more than data.max_pixels=8,191"):
        adapter.discover([store])
    assert adapter_with_limit(2 * 64 * 64).discover([store])
