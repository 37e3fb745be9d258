"""Remote-sensing archives that used to be misread without a word: manifests in folders, short or
mixed series, undeclared float fills, decompression bombs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from mae_domains.data.read_failures import StatsError
from mae_domains.data.sample import BadSampleError
from mae_remote_sensing.synthetic import synthetic_scene
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import ORIGIN, write_raster

BANDS = ["B2", "B3", "B4", "B8"]


def scene(path, seed=0, origin=ORIGIN, size=40):
    image, _ = synthetic_scene(seed, BANDS, size, size, nodata_corner=False)
    return write_raster(path, image.astype(np.uint16), origin=origin, nodata=0, descriptions=BANDS)


def test_manifest_inside_the_data_folder_is_used(tmp_path):
    for k, name in enumerate(("a", "b", "c")):
        scene(tmp_path / "site" / f"{name}.tif", seed=k)
    scene(tmp_path / "site" / "stray.tif", seed=9)  # not in the manifest: left out
    (tmp_path / "site" / "manifest.csv").write_text(
        "path,date,series\nc.tif,2021-08-01,s\na.tif,2021-04-01,s\nb.tif,2021-06-01,s\n")
    adapter = make_adapter("temporal", bands=BANDS, frames=3, sampling="grid")
    refs = adapter.discover([tmp_path / "site"])
    assert {len(ref.frames) for ref in refs} == {3}
    sample = adapter.read(refs[0])
    assert sample.meta["dates"] == ["2021-04-01", "2021-06-01", "2021-08-01"]
    assert [f.source.rsplit("/", 1)[1] for f in refs[0].frames] == ["a.tif", "b.tif", "c.tif"]


def test_a_csv_that_is_not_a_manifest_is_refused(tmp_path):
    scene(tmp_path / "a.tif")
    (tmp_path / "labels.csv").write_text("file,class\na.tif,forest\n")
    with pytest.raises(ValueError, match=r"labels.csv inside the data folder is not a usable manifest.*'path' column"):
        make_adapter("multispectral", groups=[BANDS]).discover([tmp_path])


def test_fewer_dates_than_frames_says_so(tmp_path):
    scene(tmp_path / "site" / "s_20210401.tif")
    scene(tmp_path / "site" / "s_20210601.tif", seed=1)
    adapter = make_adapter("temporal", bands=BANDS, frames=3)
    with pytest.raises(ValueError, match=r"every series has fewer dates than frames=3 \(1 series with 2 date\(s\).*"
                                         r"Set data.options.frames to at most 2"):
        adapter.discover([tmp_path / "site"])


def test_a_series_from_different_places_is_named_in_the_statistics_error(tmp_path):
    for k in range(3):  # three places 100 km apart, in one folder, so taken for one series
        scene(tmp_path / "mixed" / f"x_2021060{k + 1}.tif", seed=k, origin=(ORIGIN[0] + 100_000 * k, ORIGIN[1]))
    adapter = make_adapter("temporal", bands=BANDS, frames=3, chips_per_scene=2)
    refs = adapter.discover([tmp_path / "mixed"])
    with pytest.raises(StatsError, match=r"(?s)could not read any of the 2 sample\(s\).*reasons:\n  2 x frame .*"
                                         r"x_20210602.tif covers .* the series mixes different places"):
        adapter.compute_stats(refs)


def test_undeclared_float_fill_is_nodata_and_statistics_stay_sane(tmp_path):
    good = [scene(tmp_path / f"g{k}.tif", seed=k) for k in range(2)]
    data, _ = synthetic_scene(5, BANDS, 40, 40, nodata_corner=False)
    data = data.astype(np.float32)
    data[:, :, :10] = -3.4028235e38  # float GeoTIFF fill without a nodata tag
    filled = write_raster(tmp_path / "filled.tif", data, descriptions=BANDS)
    adapter = make_adapter("multispectral", groups=[BANDS], sampling="grid", min_valid_fraction=0.1)
    ref = adapter.discover([filled])[0]
    assert ref.window == (0, 0, 32, 32)
    sample = adapter.read(ref)
    assert not sample.valid[0, 0, :, :10].any() and sample.valid[0, 0, :, 10:].all()
    stats = adapter.compute_stats(adapter.discover([*good, filled]))
    reference = adapter.compute_stats(adapter.discover(good))
    assert all(abs(m) < 1e4 for m in stats.mean) and all(0 < s < 1e4 for s in stats.std)
    assert np.allclose(stats.mean, reference.mean, rtol=0.2)


def write_striped(path, height, width, rows_per_strip, bands=4):
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(*ORIGIN, 10, 10), compress="deflate", tiled=False, blockysize=rows_per_strip)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((bands, height, width), 700, np.uint16))
        for i, name in enumerate(BANDS, start=1):
            dst.set_band_description(i, name)
    return path


def test_pixel_limit_counts_the_blocks_a_chip_decodes(tmp_path):
    """A file stored as one big strip decodes whole for any chip; many small strips do not."""
    bomb = write_striped(tmp_path / "one_strip.tif", 256, 256, 256)
    fine = write_striped(tmp_path / "strips.tif", 256, 256, 8)
    adapter = make_adapter("multispectral", groups=[BANDS], sampling="grid",
                           overrides=["data.max_pixels=60000"])
    with pytest.raises(BadSampleError, match=r"one_strip.tif: reading this chip's blocks would produce 262,144 values "
                                             r"\(4 x 256 x 256\).*data.max_pixels=60,000"):
        adapter.read(adapter.discover([bomb])[0])
    sample = adapter.read(adapter.discover([fine])[0])
    assert sample.image.shape == (1, 4, 32, 32) and float(sample.image.max()) == 700.0
