"""remote_sensing.scale: GSD from georeferencing (metre and degree CRS), effective GSD of resized crops,
COG overviews on coarser reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from mae_remote_sensing.gsd import draw_gsd_factor, effective_gsd, file_gsd_metres, gsd_ratio, overview_level
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import write_raster

RGB = ["B4", "B3", "B2"]


def wgs84_metres_per_degree(lat_deg: float) -> tuple[float, float]:
    """Closed form on the WGS84 ellipsoid: pi/180 x (N cos(phi), M) with the prime-vertical and meridional
    radii of curvature N and M (independent of the series the reader uses)."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    phi = math.radians(lat_deg)
    w = 1 - e2 * math.sin(phi) ** 2
    n, m = a / math.sqrt(w), a * (1 - e2) / w ** 1.5
    return math.pi / 180 * n * math.cos(phi), math.pi / 180 * m


def test_gsd_from_a_metre_crs(tmp_path):
    path = write_raster(tmp_path / "utm.tif", np.ones((3, 40, 40), np.float32), res=(10.0, 20.0),
                        descriptions=RGB)
    assert file_gsd_metres(str(path)) == pytest.approx((10.0, 20.0))
    adapter = make_adapter("scale", img_size=32, multiscale=False, bands=RGB, sampling="grid")
    sample = adapter.read(adapter.discover([path])[0])
    assert sample.meta["gsd"] == pytest.approx([10.0, 20.0])


def test_gsd_from_a_feet_crs_uses_the_unit_factor(tmp_path):
    path = write_raster(tmp_path / "ft.tif", np.ones((3, 16, 16), np.float32), res=30.0, crs="EPSG:2263",
                        origin=(980000.0, 200000.0), descriptions=RGB)  # NY Long Island, US survey feet
    assert file_gsd_metres(str(path))[0] == pytest.approx(30.0 * 1200 / 3937, rel=1e-9)


@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0])
def test_gsd_from_a_degree_crs(tmp_path, lat):
    deg = 1e-4
    h = w = 40
    path = write_raster(tmp_path / "geo.tif", np.ones((3, h, w), np.float32), res=deg, crs="EPSG:4326",
                        origin=(10.0, lat + h * deg / 2), descriptions=RGB)  # centred on ``lat``
    lon_m, lat_m = wgs84_metres_per_degree(lat)
    gx, gy = file_gsd_metres(str(path))
    assert gx == pytest.approx(deg * lon_m, rel=1e-5) and gy == pytest.approx(deg * lat_m, rel=1e-5)
    adapter = make_adapter("scale", img_size=32, multiscale=False, bands=RGB, sampling="grid")
    sample = adapter.read(adapter.discover([path])[0])
    assert sample.meta["gsd"] == pytest.approx([deg * lon_m, deg * lat_m], rel=1e-5)


def test_effective_gsd_of_resized_crops():
    # a crop of 0.2 of the side resized to the full input: 5x finer; the full input shrunk to 0.2: 5x coarser
    assert effective_gsd(10.0, crop_side_px=0.2 * 224, out_side_px=224) == pytest.approx(2.0)
    assert effective_gsd(10.0, crop_side_px=224, out_side_px=0.2 * 224) == pytest.approx(50.0)
    assert gsd_ratio([20.0, 5.0], 10.0) == pytest.approx([2.0, 0.5])
    rng = np.random.default_rng(0)
    factors = [draw_gsd_factor(rng, (0.2, 1.0), 2.0) for _ in range(200)]
    assert 2 * math.sqrt(0.2) <= min(factors) and max(factors) <= 2.0
    assert overview_level([2, 4, 8], 1.0) is None and overview_level([2, 4, 8], 3.0) == 0
    assert overview_level([2, 4, 8], 9.0) == 2


def test_multiscale_training_reads_record_the_effective_gsd(tmp_path):
    data = np.random.default_rng(0).uniform(0, 1, (3, 256, 256)).astype(np.float32)
    path = write_raster(tmp_path / "scene.tif", data, res=10.0, descriptions=RGB, tiled=True)
    adapter = make_adapter("scale", img_size=32, bands=RGB, chips_per_scene=1)
    ref = adapter.discover([path])[0]
    seen = set()
    for seed in range(6):
        sample = adapter.read_training(ref, seed)
        factor = sample.meta["gsd_factor"]
        seen.add(round(factor, 3))
        assert 2 * math.sqrt(0.2) - 1e-9 <= factor <= 2.0
        assert sample.meta["gsd"] == pytest.approx([10.0 * factor] * 2, rel=1e-6)
        assert sample.image.shape[-2:] == (32, 32)
        left, bottom, right, top = sample.meta["bounds"]
        assert right - left == pytest.approx(32 * 10.0 * factor, rel=1e-6)  # chip covers factor x the ground
    assert len(seen) > 1
    assert adapter.read(ref).meta["gsd"] == pytest.approx([10.0, 10.0])  # evaluation reads stay native


def test_coarser_reads_use_the_overviews(tmp_path):
    """A checkerboard whose overviews were built with nearest resampling: a decimated read that used the
    full resolution would average to 0.5, one that used the overview returns its 0/1 values."""
    size = 128
    yy, xx = np.mgrid[0:size, 0:size]
    board = ((yy + xx) % 2).astype(np.float32)
    path = tmp_path / "cog.tif"
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="float32", crs="EPSG:32633",
                   transform=from_origin(500000.0, 5800000.0, 10.0, 10.0), tiled=True, blockxsize=32, blockysize=32)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack([board] * 3))
        for i, name in enumerate(RGB, start=1):
            dst.set_band_description(i, name)
        dst.build_overviews([2, 4], Resampling.nearest)
    adapter = make_adapter("scale", img_size=32, bands=RGB, chips_per_scene=1)
    ref = adapter.discover([path])[0]
    coarse = adapter.read_chip(ref, 0, gsd_factor=2.0)
    assert coarse.meta["gsd"] == pytest.approx([20.0, 20.0])
    assert set(np.unique(coarse.image).tolist()) <= {0.0, 1.0}  # overview pixels, not averages
    native = adapter.read_chip(ref, 0, gsd_factor=1.0)
    assert set(np.unique(native.image).tolist()) == {0.0, 1.0}
    # what averaging the full resolution would have given instead
    assert np.allclose(board.reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3)), 0.5)
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4]
