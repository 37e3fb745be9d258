"""prepare_nuclei.py on a tiny package in the layout of stardist's wheel (no download)."""

import csv
import json
import zipfile

import numpy as np
import pytest
import tifffile

from tests.benchmarks.real_modules import real_module

prep = real_module("prepare_nuclei")
fetch = real_module("fetch")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A 512 x 512 uint16 image (value = 3 * row + column % 5) with square nuclei every 64 px."""
    root = tmp_path_factory.mktemp("stardist")
    rows, cols = np.mgrid[0:512, 0:512]
    image = (3 * rows + cols % 5).astype(np.uint16)
    mask = np.zeros((512, 512), np.uint16)
    for i, (y, x) in enumerate((y, x) for y in range(8, 512, 64) for x in range(8, 512, 64)):
        mask[y:y + 20, x:x + 20] = i + 1
    tifffile.imwrite(root / "img2d.tif", image)
    tifffile.imwrite(root / "mask2d.tif", mask)
    path = root / "stardist-0.9.2-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(root / "img2d.tif", prep.IMAGE)
        zf.write(root / "mask2d.tif", prep.MASK)
    return path, {prep.IMAGE: fetch.sha256_of(root / "img2d.tif"), prep.MASK: fetch.sha256_of(root / "mask2d.tif")}, image, mask


def test_fields_are_ome_tiff_with_the_channel_name_and_splits_do_not_overlap(wheel, tmp_path):
    path, pins, image, mask = wheel
    summary = prep.prepare(tmp_path, str(path), pins)
    with tifffile.TiffFile(tmp_path / "fields" / "test.ome.tif") as tif:
        assert tif.is_ome and 'Name="DNA"' in tif.ome_metadata
        np.testing.assert_array_equal(tif.asarray(), image[:, 272:512])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "fields" / "train_mask.tif"), mask[:, :240])
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    train_x = [int(r["x"]) for r in rows if r["split"] == "train"]
    test_x = [int(r["x"]) for r in rows if r["split"] == "test"]
    assert max(train_x) + prep.CROP <= 240 and min(test_x) >= 272
    assert summary["crops"]["train"]["nucleus"] > 0 and summary["crops"]["test"]["background"] > 0
    assert json.loads((tmp_path / "summary.json").read_text()) == {k: v for k, v in summary.items() if k != "segmentation"}


def test_crops_hold_the_pixels_and_the_label_of_their_centre(wheel, tmp_path):
    path, pins, image, mask = wheel
    prep.prepare(tmp_path, str(path), pins)
    for r in csv.DictReader(open(tmp_path / "labels.csv")):
        y, x = int(r["y"]), int(r["x"])
        crop = tifffile.imread(tmp_path / r["path"])
        np.testing.assert_array_equal(crop.squeeze(), image[y:y + 32, x:x + 32])
        centre = mask[y + 15:y + 17, x + 15:x + 17]
        assert r["labels"] == ("nucleus" if (centre > 0).all() else "background") and ((centre > 0).all() or not centre.any())
    manifest = list(csv.DictReader(open(tmp_path / "crops_test.csv")))
    assert {r["label"] for r in manifest} == {"nucleus", "background"}
    assert all("/test/" + r["label"] + "/" in r["path"] and (tmp_path / r["path"]).is_file() for r in manifest)
    # The bootstrap's groups: the 64 x 48 px segmentation tile holding each crop's centre (part coordinates).
    groups = {g["path"]: g["tile"] for g in csv.DictReader(open(tmp_path / "crop_groups.csv"))}
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert set(groups) == {r["path"] for r in rows}
    for r in rows:
        y, x = int(r["y"]), int(r["x"]) - (272 if r["split"] == "test" else 0)
        assert groups[r["path"]] == f"{r['split']}_y{(y + 16) // 64 * 64:03d}_x{(x + 16) // 48 * 48:03d}"
    assert groups["crops/test/background/y000_x272.ome.tif"] == "test_y000_x000"
    assert prep.crop_label(mask, 8 + 10 - 16, 8 + 10 - 16) == "nucleus"  # centre inside the first square
    assert prep.crop_label(mask, 8 + 19 - 15, 8 - 16) is None  # centre on its edge: mixed, left out


def test_segmentation_tiles_hold_pixels_and_instance_ids_and_keep_the_split(wheel, tmp_path):
    path, pins, image, mask = wheel
    summary = prep.prepare(tmp_path, str(path), pins)["segmentation"]
    rows = list(csv.DictReader(open(tmp_path / "seg_manifest.csv")))
    assert list(rows[0]) == ["image", "label", "split"]
    assert [sum(r["split"] == s for r in rows) for s in ("train", "test")] == [40, 40]  # 8 x 5 tiles of 64 x 48
    covered = {"train": np.zeros((512, 512), int), "test": np.zeros((512, 512), int)}
    for r in rows:
        y, x = (int(v[1:]) for v in r["image"].split("/")[-1].removesuffix(".ome.tif").split("_"))
        with tifffile.TiffFile(tmp_path / r["image"]) as tif:
            assert tif.is_ome and 'Name="DNA"' in tif.ome_metadata
            np.testing.assert_array_equal(tif.asarray().squeeze(), image[y:y + 64, x:x + 48])
        labels = tifffile.imread(tmp_path / r["label"])
        assert labels.dtype == np.uint16 and r["label"] == r["image"].replace(".ome.tif", "_mask.tif")
        np.testing.assert_array_equal(labels, mask[y:y + 64, x:x + 48])  # instance ids as stored
        covered[r["split"]][y:y + 64, x:x + 48] += 1
    assert (covered["train"][:, :240] == 1).all() and not covered["train"][:, 240:].any()  # exact cover, no overlap
    assert (covered["test"][:, 272:] == 1).all() and not covered["test"][:, :272].any()  # no test pixel in training
    assert summary["splits"]["test"]["nucleus_pixels"] == int((mask[:, 272:] > 0).sum())
    assert json.loads((tmp_path / "seg_summary.json").read_text()) == summary


def test_a_wheel_without_the_files_is_refused_in_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("stardist/__init__.py", "")
    assert prep.main(["--out", str(tmp_path / "out"), "--source", str(empty)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {empty}: holds no {prep.IMAGE}"
