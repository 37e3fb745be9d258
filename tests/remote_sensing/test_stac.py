"""STAC sources: an item with three COG assets read band by band, STAC 1.1 ``bands``, a local catalog,
relative and remote hrefs, and one-line errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from mae_remote_sensing.geotiff import ReadSettings
from mae_remote_sensing.sensors import SENSORS
from mae_remote_sensing.stac import band_name, gdal_path, stac_scenes
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import ORIGIN, UTM33N

BANDS = {"B03": ("green", 0.560, 1000), "B04": ("red", 0.665, 2000), "B08": ("nir", 0.842, 3000)}


def write_cog(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype.name, crs=UTM33N, transform=from_origin(*ORIGIN, 10.0, 10.0)) as dst:
        dst.write(data[None])
    return path


def band_data(offset: int, size: int = 64) -> np.ndarray:
    return (offset + np.arange(size * size).reshape(size, size) % 997).astype(np.uint16)


def make_item(folder: Path, item_id: str = "S2A_T33UUP_20210615", field: str = "eo:bands") -> pystac.Item:
    """An item whose three assets are COGs next to it, with relative hrefs."""
    item = pystac.Item(item_id, geometry=None, bbox=None, datetime=dt.datetime(2021, 6, 15, 10, 30),
                       properties={"platform": "sentinel-2a"})
    for name, (common, wavelength, offset) in BANDS.items():
        write_cog(folder / f"{name}.tif", band_data(offset))
        band = ({"name": name, "common_name": common, "center_wavelength": wavelength} if field == "eo:bands" else
                {"name": name, "eo:common_name": common, "eo:center_wavelength": wavelength})
        item.add_asset(name, pystac.Asset(f"./{name}.tif", media_type=pystac.MediaType.COG, roles=["data"],
                                          extra_fields={field: [band]}))
    item.add_asset("visual", pystac.Asset("./TCI.tif", media_type=pystac.MediaType.COG,
                                          extra_fields={field: [{"name": n} for n in ("B04", "B03", "B02")]}))
    return item


def save_item(item: pystac.Item, path: Path) -> Path:
    path.write_text(json.dumps(item.to_dict(include_self_link=False)))
    return path


def test_an_item_with_three_cog_assets_reads_each_band_from_its_file(tmp_path):
    item_path = save_item(make_item(tmp_path / "item"), tmp_path / "item" / "item.json")
    adapter = make_adapter("multispectral", img_size=32, bands=["B8", "B3", "B4"], groups=[["B3", "B4", "B8"]],
                           sampling="grid", chips_per_scene=4)
    refs = adapter.discover([str(item_path)])
    assert len(refs) == 4  # a 64 px scene in 32 px grid windows
    scene = refs[0].frames[0]
    assert scene.date == "2021-06-15" and set(scene.band_names) == {"B3", "B4", "B8"}
    sample = adapter.read(refs[0])
    row, col = sample.meta["window"][:2]
    for i, band in enumerate(["B08", "B03", "B04"]):  # adapter order B8, B3, B4
        expected = band_data(BANDS[band][2])[row:row + 32, col:col + 32]
        np.testing.assert_array_equal(sample.image[0, i], expected.astype(np.float32))
    assert sample.meta["crs"] and sample.meta["gsd"] == [10.0, 10.0]


def test_stac_1_1_bands_and_a_local_catalog(tmp_path):
    catalog = pystac.Catalog("archive", "two dates of one tile")
    for day, name in ((15, "S2A_a"), (25, "S2A_b")):
        item = make_item(tmp_path / "catalog" / "cog" / name, name, field="bands")
        item.datetime = dt.datetime(2021, 6, day)
        for asset in item.assets.values():  # absolute hrefs (inside the catalog's folder) for the catalog copy
            asset.href = str((tmp_path / "catalog" / "cog" / name / Path(asset.href).name).resolve())
        catalog.add_item(item)
    catalog.normalize_hrefs(str(tmp_path / "catalog"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    scenes = list(stac_scenes(tmp_path / "catalog" / "catalog.json", ReadSettings()))
    assert sorted(s.date for s, _ in scenes) == ["2021-06-15", "2021-06-25"]
    assert all(set(s.band_names) == {"B3", "B4", "B8"} for s, _ in scenes)
    adapter = make_adapter("multispectral", img_size=32, bands=["B3", "B4", "B8"], groups=[["B3", "B4", "B8"]])
    assert len(adapter.discover([str(tmp_path / "catalog" / "catalog.json")])) > 0


def test_band_names_from_wavelength_name_and_common_name():
    s2, landsat = SENSORS["sentinel2"], SENSORS["landsat8"]
    assert band_name({"name": "B8A", "center_wavelength": 0.865}, s2) == "B8A"
    assert band_name({"name": "B05"}, landsat) == "B8A"  # Landsat NIR is not Sentinel-2's red edge
    assert band_name({"name": "nir", "common_name": "nir"}, s2) == "B8"
    assert band_name({"name": "swir", "eo:common_name": "swir16"}, s2) == "B11"
    assert band_name({"name": "VV"}, s2) == "VV"


def test_relative_and_remote_hrefs():
    assert gdal_path("./B04.tif", "/data/items/a.json") == "/data/items/B04.tif"
    assert gdal_path("https://host/x/B04.tif", "/data/a.json") == "/vsicurl/https://host/x/B04.tif"
    assert gdal_path("s3://bucket/x/B04.tif", None) == "/vsis3/bucket/x/B04.tif"
    assert gdal_path("B04.tif", "https://host/items/a.json") == "/vsicurl/https://host/items/B04.tif"
    with pytest.raises(ValueError, match="ftp"):
        gdal_path("ftp://host/x.tif", None)


def test_missing_asset_file_and_non_stac_json_are_one_line_errors(tmp_path):
    item = make_item(tmp_path / "item")
    item.assets["B04"].href = "./gone.tif"
    path = save_item(item, tmp_path / "item" / "item.json")
    adapter = make_adapter("multispectral", img_size=32, bands=["B3", "B4", "B8"], groups=[["B3", "B4", "B8"]])
    with pytest.raises(ValueError, match="asset 'B04' file not found") as err:
        adapter.discover([str(path)])
    assert "\n" not in str(err.value)
    other = tmp_path / "other.json"
    other.write_text('{"type": "Topology"}')
    with pytest.raises(ValueError, match="not a STAC Item"):
        adapter.discover([str(other)])
