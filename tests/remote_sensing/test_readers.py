"""Reading real GeoTIFF/COG, band-file and Zarr archives: grids, GSD, resampling, nodata, scale/offset."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from mae_domains.data.windows import PixelWindow
from mae_remote_sensing.bands import SENTINEL2_L2A_ORDER
from mae_remote_sensing.band_files import BandFileScene, group_band_files
from mae_remote_sensing.chips import ChipRef, grid_windows
from mae_remote_sensing.geotiff import RasterScene, ReadSettings
from mae_remote_sensing.scene import metres_per_degree
from mae_remote_sensing.zarr_store import ZarrScene
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import ORIGIN, ramp, write_raster

S2_RES = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10, "B8A": 20, "B9": 60,
          "B11": 20, "B12": 20}


def write_band_files(folder, scene="T33UUP_20210615", size_10m=96):
    """One file per band at its native resolution (10/20/60 m) over the same 960 m x 960 m extent."""
    for band, res in S2_RES.items():
        n = size_10m * 10 // res
        data = (ramp(n, n, res) * 10 + int(band.strip("BA"))).astype(np.float32)
        write_raster(folder / f"{scene}_{band}_{res}m.tif", data, res=res)
    return folder


def test_band_files_group_and_resample_to_finest_grid(tmp_path):
    folder = write_band_files(tmp_path / "safe")
    scenes, unmatched = group_band_files(folder.iterdir())
    assert not unmatched and len(scenes) == 1
    (key, paths), = scenes.items()
    assert set(paths) == set(S2_RES)
    scene = BandFileScene(key, paths, ReadSettings())
    bands = ["B2", "B5", "B1", "B12"]
    grid = scene.grid(bands, None)
    assert (grid.height, grid.width) == (96, 96) and grid.gsd == (10.0, 10.0) and grid.crs == "EPSG:32633"
    window = PixelWindow(20, 30, 32, 32)
    chip = scene.read(window, bands, grid)
    assert chip.image.shape == (4, 32, 32) and chip.valid.all()
    expected = ramp(96, 96, 10)[20:52, 30:62] * 10
    # 10 m band exactly; 20 m and 60 m bands bilinearly upsampled from a linear field: exact inside
    np.testing.assert_allclose(chip.image[0], expected + 2, atol=1e-3)
    np.testing.assert_allclose(chip.image[1][4:-4, 4:-4], expected[4:-4, 4:-4] + 5, atol=1e-2)
    np.testing.assert_allclose(chip.image[2][8:-8, 8:-8], expected[8:-8, 8:-8] + 1, atol=1e-2)
    assert grid.bounds(window) == (ORIGIN[0] + 300, ORIGIN[1] - 520, ORIGIN[0] + 620, ORIGIN[1] - 200)


def test_target_gsd_coarser_grid_averages(tmp_path):
    folder = write_band_files(tmp_path / "safe")
    (key, paths), = group_band_files(folder.iterdir())[0].items()
    scene = BandFileScene(key, paths, ReadSettings())
    grid = scene.grid(["B2", "B11"], 20.0)
    assert (grid.height, grid.width) == (48, 48) and grid.gsd == (20.0, 20.0)
    chip = scene.read(PixelWindow(0, 0, 48, 48), ["B2", "B11"], grid)
    np.testing.assert_allclose(chip.image[0], ramp(48, 48, 20) * 10 + 2, atol=1e-3)  # 2x2 mean of a ramp
    np.testing.assert_allclose(chip.image[1], ramp(48, 48, 20) * 10 + 11, atol=1e-3)  # native 20 m


def test_geographic_crs_gsd_in_metres(tmp_path):
    deg = 0.0001
    path = write_raster(tmp_path / "geo.tif", np.ones((3, 40, 40), np.uint16), res=deg, crs="EPSG:4326",
                        origin=(15.0, 60.002))
    grid = RasterScene(str(path), ReadSettings()).grid(None, None)
    lon_m, lat_m = metres_per_degree(60.0)
    assert grid.gsd[0] == pytest.approx(deg * lon_m, rel=1e-3) and grid.gsd[0] == pytest.approx(5.58, abs=0.02)
    assert grid.gsd[1] == pytest.approx(deg * lat_m, rel=1e-3) and grid.gsd[1] == pytest.approx(11.13, abs=0.02)
    projected = write_raster(tmp_path / "utm.tif", np.ones((3, 40, 40), np.uint16), res=(10.0, 20.0))
    assert RasterScene(str(projected), ReadSettings()).grid(None, None).gsd == (10.0, 20.0)


def test_nodata_value_nan_and_mask_band(tmp_path):
    data = np.full((2, 32, 32), 500, np.uint16)
    data[:, :8] = 0
    path = write_raster(tmp_path / "nd.tif", data, nodata=0, descriptions=["B4", "B8"])
    chip = RasterScene(str(path), ReadSettings()).read(PixelWindow(0, 0, 32, 32), ["B4", "B8"],
                                                         RasterScene(str(path), ReadSettings()).grid(None, None))
    assert not chip.valid[:8].any() and chip.valid[8:].all()

    floats = np.ones((1, 32, 32), np.float32)
    floats[0, 5, 5] = np.nan
    nan_path = write_raster(tmp_path / "nan.tif", floats, descriptions=["B4"])
    scene = RasterScene(str(nan_path), ReadSettings())
    chip = scene.read(PixelWindow(0, 0, 32, 32), ["B4"], scene.grid(None, None))
    assert not chip.valid[5, 5] and chip.valid.sum() == 32 * 32 - 1

    scl = np.full((32, 32), 4, np.uint8)  # 4 = vegetation
    scl[:, -4:] = 9  # cloud high probability
    stack = np.stack([np.full((32, 32), 700, np.uint16), scl.astype(np.uint16)])
    cloud_path = write_raster(tmp_path / "scl.tif", stack, descriptions=["B4", "SCL"])
    settings = ReadSettings(mask_band="SCL", mask_invalid_values=(0, 1, 3, 8, 9, 10))
    scene = RasterScene(str(cloud_path), settings)
    chip = scene.read(PixelWindow(0, 0, 32, 32), ["B4"], scene.grid(None, None))
    assert not chip.valid[:, -4:].any() and chip.valid[:, :-4].all()


def test_scale_offset_from_gdal_and_sentinel2_tags(tmp_path):
    dn = np.full((1, 16, 16), 3000, np.uint16)
    gdal = write_raster(tmp_path / "gdal.tif", dn, scales=[0.0001], offsets=[-0.1], descriptions=["B4"])
    s2 = write_raster(tmp_path / "l2a.tif", dn, tags={"BOA_ADD_OFFSET": "-1000", "BOA_QUANTIFICATION_VALUE": "10000"},
                      descriptions=["B4"])
    for path, expected in ((gdal, 0.2), (s2, 0.2)):
        scene = RasterScene(str(path), ReadSettings())
        chip = scene.read(PixelWindow(0, 0, 16, 16), ["B4"], scene.grid(None, None))
        np.testing.assert_allclose(chip.image, expected, atol=1e-6)


@pytest.mark.parametrize("tiled", [False, True])
def test_striped_and_tiled_scene_larger_than_chip(tmp_path, tiled):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 10000, (4, 300, 260)).astype(np.uint16)
    path = write_raster(tmp_path / f"scene_{tiled}.tif", data, tiled=tiled, descriptions=["B2", "B3", "B4", "B8"])
    with rasterio.open(path) as src:
        assert (src.profile.get("tiled", False) is True) == tiled
    adapter = make_adapter("multispectral", img_size=64, bands=["B8", "B2"], groups=[["B8", "B2"]], jitter=0.0,
                           flips=False)
    refs = adapter.discover([tmp_path])
    assert len(refs) == round(300 * 260 / 64**2)  # chips_per_scene auto: the scene's area in chips
    for ref in refs[:5]:
        sample = adapter.read(ref)
        r, c, h, w = sample.meta["window"]
        assert (h, w) == (64, 64) and sample.image.shape == (1, 2, 64, 64)
        np.testing.assert_array_equal(sample.image[0], data[[3, 0], r:r + h, c:c + w])
        left, bottom, right, top = sample.meta["bounds"]
        assert (left, top) == (ORIGIN[0] + 10 * c, ORIGIN[1] - 10 * r) and right - left == 640
    windows = grid_windows(300, 260, 64, 48)
    covered = np.zeros((300, 260), bool)
    for win in windows:
        covered[win.row:win.row + 64, win.col:win.col + 64] = True
    assert covered.all() and all(win.row + 64 <= 300 and win.col + 64 <= 260 for win in windows)


def test_cog_overviews_serve_coarser_scales(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.random((1, 256, 256)).astype(np.float32)
    path = write_raster(tmp_path / "cog.tif", data, tiled=True, overviews=[2, 4], descriptions=["B4"])
    settings = ReadSettings(downsampling="nearest")  # nearest from full resolution would pick single pixels
    scene = RasterScene(str(path), settings)
    grid = scene.grid(None, 20.0)
    chip = scene.read(PixelWindow(0, 0, 32, 32), ["B4"], grid)
    with rasterio.open(path, overview_level=0) as overview:
        expected = overview.read(1, window=Window(0, 0, 32, 32))
    np.testing.assert_allclose(chip.image[0], expected, atol=1e-6)  # the average-built overview, not decimation
    assert not np.allclose(chip.image[0], data[0, :64:2, :64:2])


def test_band_selection_and_reordering_by_name(tmp_path):
    data = np.stack([np.full((40, 40), 100 * (i + 1), np.uint16) for i in range(12)])
    write_raster(tmp_path / "a" / "l2a.tif", data)  # no descriptions: 12 bands = Sentinel-2 L2A order
    adapter = make_adapter("multispectral", bands=["B12", "B4", "B2"], groups=[["B4", "B2"], ["B12"]])
    sample = adapter.read(adapter.discover([tmp_path / "a"])[0])
    values = [sample.image[0, c, 0, 0] for c in range(3)]
    order = list(SENTINEL2_L2A_ORDER)
    assert values == [100 * (order.index(b) + 1) for b in ("B12", "B4", "B2")]
    assert sample.meta["band_names"] == ["B12", "B4", "B2"] and sample.meta["wavelengths"][0] == 2190.0


def test_time_series_with_dates(tmp_path):
    folder = tmp_path / "series" / "field_7"
    dates = ["20210801", "20210402", "20210615", "20211020"]
    for i, d in enumerate(dates):
        write_raster(folder / f"S2_{d}.tif", np.full((6, 48, 48), 1000 + i, np.uint16))
    adapter = make_adapter("temporal", bands=["B2", "B3"], file_bands=["B2", "B3", "B4", "B8A", "B11", "B12"], frames=3)
    refs = adapter.discover([tmp_path / "series"])
    assert len({r.frames for r in refs}) == 1
    assert [f.date for f in refs[0].frames] == ["2021-04-02", "2021-06-15", "2021-08-01", "2021-10-20"]
    sample = adapter.read(refs[0])
    size = adapter.read_size  # chip plus the jitter margin of a random training window
    assert sample.image.shape == (3, 2, size, size) and sample.valid.shape == (3, 1, size, size)
    assert sample.meta["dates"] == sorted(sample.meta["dates"])
    out = adapter.transform(sample, 5, True, None)
    assert out.image.shape == (3, 2, 32, 32)
    grid_batch = adapter.grid_batch({"image": __import__("torch").from_numpy(out.image[None]),
                                     "mask_seed": [1], "meta": [out.meta]}, __import__("torch").device("cpu"))
    assert grid_batch.meta["dates"].shape == (1, 3, 2) and grid_batch.meta["dates"][0, 0, 0] == 2021


def test_zarr_archive_3d_and_4d(tmp_path):
    import zarr

    root = zarr.open_group(str(tmp_path / "archive.zarr"), mode="w")
    scene = root.create_array("tile_a", shape=(4, 64, 64), chunks=(4, 32, 32), dtype="uint16", fill_value=0)
    data = np.random.default_rng(2).integers(1, 5000, (4, 64, 64)).astype(np.uint16)
    data[:, :, :4] = 65535
    scene[:] = data
    scene.attrs.update({"band_names": ["B02", "B03", "B04", "B08"], "gsd": 10, "nodata": 65535,
                        "crs": "EPSG:32633", "transform": [10, 0, ORIGIN[0], 0, -10, ORIGIN[1]]})
    series = root.create_array("series/field", shape=(3, 4, 32, 32), chunks=(1, 4, 32, 32), dtype="float32")
    series[:] = np.arange(3, dtype=np.float32)[:, None, None, None] + np.zeros((3, 4, 32, 32), np.float32)
    series.attrs.update({"band_names": ["B2", "B3", "B4", "B8"], "gsd": [10, 10],
                         "dates": ["2020-03-01", "2020-05-01", "2020-07-01"]})
    z = ZarrScene(str(tmp_path / "archive.zarr"), "tile_a", ReadSettings())
    grid = z.grid(None, None)
    chip = z.read(PixelWindow(0, 0, 32, 32), ["B8", "B2"], grid)
    np.testing.assert_array_equal(chip.image[0][:, 4:], data[3, :32, 4:32])
    assert not chip.valid[:, :4].any() and chip.valid[:, 4:].all()
    assert grid.bounds(PixelWindow(0, 0, 32, 32)) == (ORIGIN[0], ORIGIN[1] - 320, ORIGIN[0] + 320, ORIGIN[1])
    coarse = z.grid(None, 20.0)
    assert (coarse.height, coarse.width) == (32, 32)

    adapter = make_adapter("temporal", bands=["B4", "B8"], frames=None)
    refs = [r for r in adapter.discover([tmp_path / "archive.zarr"]) if len(r.frames) == 3]
    sample = adapter.read(refs[0])
    assert sample.image.shape == (3, 2, 32, 32)
    assert [sample.image[t, 0, 0, 0] for t in range(3)] == [0, 1, 2]
    assert sample.meta["dates"] == ["2020-03-01", "2020-05-01", "2020-07-01"]


def test_manifest_with_dates_and_multi_labels(tmp_path):
    for name in ("a", "b"):
        write_raster(tmp_path / f"{name}.tif", np.full((4, 32, 32), 100, np.uint16), descriptions=["B2", "B3", "B4", "B8"])
    (tmp_path / "m.csv").write_text("path,date,label\na.tif,2020-01-02,forest;water\nb.tif,20200105,urban\n")
    adapter = make_adapter("multispectral", groups=[["B2", "B3", "B4", "B8"]])
    refs = adapter.discover([tmp_path / "m.csv"])
    assert adapter.classes == ["forest", "urban", "water"]
    first = adapter.read(refs[0])
    assert list(first.label) == [1.0, 0.0, 1.0] and first.meta["dates"] == ["2020-01-02"]
    assert list(adapter.read(refs[1]).label) == [0.0, 1.0, 0.0]  # one label in a multi-label archive


def test_handles_are_opened_once_per_process(tmp_path):
    from mae_remote_sensing.geotiff import RASTERS

    path = write_raster(tmp_path / "x.tif", np.ones((4, 64, 64), np.uint16), descriptions=["B2", "B3", "B4", "B8"])
    adapter = make_adapter("multispectral", groups=[["B2", "B3", "B4", "B8"]], chips_per_scene=4)
    RASTERS.clear()
    for ref in adapter.discover([path]):
        adapter.read(ref)
    assert list(RASTERS.handles) == [str(path)]
    import pickle

    assert isinstance(pickle.loads(pickle.dumps(adapter.discover([path])[0])), ChipRef)


def test_training_windows_are_drawn_anew_per_seed_and_fixed_for_embedding(tmp_path):
    rows, cols = np.mgrid[0:200, 0:200]
    write_raster(tmp_path / "scene" / "big.tif", (rows * 200 + cols).astype(np.uint16)[None], descriptions=["B4"])
    adapter = make_adapter("multispectral", bands=["B4"], groups=[["B4"]], chips_per_scene=1)
    ref = adapter.discover([tmp_path / "scene"])[0]
    windows = {tuple(adapter.read_training(ref, seed).meta["window"]) for seed in range(6)}
    assert len(windows) > 3  # a new random window each epoch (seed), not one fixed chip per reference
    again = {tuple(adapter.read_training(ref, seed).meta["window"]) for seed in range(6)}
    assert again == windows  # and reproducible for the same seeds
    assert adapter.read(ref).meta["window"] == adapter.read(ref).meta["window"]
