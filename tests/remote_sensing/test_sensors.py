"""Sensors: Landsat band numbers are not Sentinel-2 band numbers; quality files are never scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mae_remote_sensing.sensors import SENSORS, canonical_name, resolve_sensor, sensor_from_name
from mae_remote_sensing.scene_discovery import is_auxiliary_file
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import write_raster

PRODUCT = "LC08_L2SP_044034_20200606_20200824_02_T1"


def landsat_folder(folder, product=PRODUCT, size=48, qa=None):
    """Collection 2 level-2 band files, band k holding the constant 100 * k (B10 thermal 1000)."""
    for k in range(1, 8):
        write_raster(folder / f"{product}_SR_B{k}.TIF", np.full((size, size), 100 * k, np.uint16), res=30.0)
    write_raster(folder / f"{product}_ST_B10.TIF", np.full((size, size), 1000, np.uint16), res=30.0)
    write_raster(folder / f"{product}_QA_PIXEL.TIF", np.zeros((size, size), np.uint16) if qa is None else qa, res=30.0)
    write_raster(folder / f"{product}_QA_RADSAT.TIF", np.zeros((size, size), np.uint16), res=30.0)
    return folder


def test_sensor_from_file_names():
    assert sensor_from_name(f"{PRODUCT}_SR_B5.TIF") == "landsat8"
    assert sensor_from_name("LC09_L2SP_044034_20220606_20220608_02_T1") == "landsat9"
    assert sensor_from_name("T33UUP_20200601T101031_B02_10m.tif") == "sentinel2"
    assert sensor_from_name("HLS.L30.T10SEG.2020245T183919.v2.0.B05.tif") == "landsat8"
    assert sensor_from_name("tile_B5.tif") is None
    with pytest.raises(ValueError, match="numbers its bands differently"):
        resolve_sensor("auto", [(sensor_from_name("LE07_L2SP_044034_20200606"), "file name")], "x")
    with pytest.raises(ValueError, match="says landsat8, but data.options.sensor is sentinel2"):
        resolve_sensor("sentinel2", [("landsat8", "file name")], "x")


def test_landsat_bands_map_to_sentinel2_names_by_wavelength():
    l8 = SENSORS["landsat8"]
    mapped = {b: canonical_name(l8, b) for b in ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11")}
    assert mapped == {"B1": "B1", "B2": "B2", "B3": "B3", "B4": "B4", "B5": "B8A", "B6": "B11", "B7": "B12",
                      "B8": None, "B9": "B10", "B10": None, "B11": None}


def test_quality_files_are_recognised():
    for name in (f"{PRODUCT}_QA_PIXEL.TIF", f"{PRODUCT}_QA_RADSAT.TIF", f"{PRODUCT}_SR_QA_AEROSOL.TIF",
                 "T33UUP_20200601T101031_SCL_20m.tif", "LC08_L1TP_044034_20200606_20200824_01_T1_BQA.TIF",
                 "HLS.S30.T10SEG.2020245T183919.v2.0.Fmask.tif"):
        assert is_auxiliary_file(Path(name)), name
    assert not is_auxiliary_file(Path(f"{PRODUCT}_SR_B5.TIF"))


def test_landsat_scene_is_refused_for_groups_it_cannot_fill(tmp_path):
    adapter = make_adapter("multispectral")  # SatMAE's Sentinel-2 groups need red-edge bands
    with pytest.raises(ValueError) as info:
        adapter.discover([landsat_folder(tmp_path / "scene")])
    message = str(info.value)
    assert "lacks ['B8', 'B5', 'B6', 'B7']; it holds Landsat 8 OLI/TIRS band files B1 (coastal aerosol, 443 nm), " \
           "B2 (blue, 482 nm), B3" in message
    assert "B5 (near infrared, 865 nm) as B8A" in message and "B10 (thermal infrared 1, 10895 nm) (no Sentinel-2" in message
    assert "groups=[['B2', 'B3', 'B4'], ['B8A'], ['B11', 'B12']]" in message


def test_landsat_bands_are_read_by_wavelength_and_qa_is_a_mask_not_a_scene(tmp_path):
    qa = np.zeros((48, 48), np.uint16)
    qa[:24] = 1 << 3  # cloud bit over the top half
    folder = landsat_folder(tmp_path / "scene", qa=qa)
    adapter = make_adapter("multispectral", groups=[["B2", "B3", "B4", "B8A"], ["B11", "B12"]], sampling="grid",
                           mask_band="QA_PIXEL", mask_invalid_bits=[0, 3], min_valid_fraction=0.0, img_size=48)
    refs = adapter.discover([folder])
    assert {ref.scene.source for ref in refs} == {str(folder / PRODUCT)}  # one scene; QA files are not scenes
    sample = adapter.read(refs[0])
    assert sample.meta["band_names"] == ["B2", "B3", "B4", "B8A", "B11", "B12"]
    valid = sample.valid[0, 0]
    assert not valid[:24].any() and valid[24:].all()
    # B8A is Landsat B5 (865 nm), B11 is B6, B12 is B7: not Landsat's own B8 (pan) or B11 (thermal)
    assert [float(sample.image[0, c, 30, 5]) for c in range(6)] == [200.0, 300.0, 400.0, 500.0, 600.0, 700.0]


def test_sensor_option_for_renamed_files(tmp_path):
    for k in (2, 3, 4, 5):
        write_raster(tmp_path / f"tile_B{k}.tif", np.full((40, 40), 10 * k, np.uint16), res=30.0)
    landsat = make_adapter("multispectral", groups=[["B2", "B3", "B4", "B8A"]], sensor="landsat8", sampling="grid")
    sample = landsat.read(landsat.discover([tmp_path])[0])
    assert [float(sample.image[0, c, 0, 0]) for c in range(4)] == [20.0, 30.0, 40.0, 50.0]
    as_s2 = make_adapter("multispectral", groups=[["B2", "B3", "B4", "B8A"]], sampling="grid")
    with pytest.raises(ValueError, match=r"lacks \['B8A'\]; it holds Sentinel-2 MSI band files B2 \(blue, 490 nm\)"):
        as_s2.discover([tmp_path])


def test_multiband_file_with_landsat_metadata(tmp_path):
    data = np.stack([np.full((40, 40), v, np.uint16) for v in (2, 3, 4, 5, 6, 7)])
    path = write_raster(tmp_path / "stack.tif", data, res=30.0, tags={"SPACECRAFT_ID": "LANDSAT_8"},
                        descriptions=["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"])
    adapter = make_adapter("multispectral", groups=[["B4", "B8A"], ["B11", "B12"]], sampling="grid")
    sample = adapter.read(adapter.discover([path])[0])
    assert [float(sample.image[0, c, 0, 0]) for c in range(4)] == [4.0, 5.0, 6.0, 7.0]
