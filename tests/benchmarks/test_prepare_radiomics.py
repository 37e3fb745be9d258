"""prepare_radiomics.py on tiny NRRD volumes written by pynrrd in the layout of the pyradiomics source archive."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.benchmarks.real_modules import real_module

nrrd = pytest.importorskip("nrrd")
prep = real_module("prepare_radiomics")
fetch = real_module("fetch")
DIRECTIONS = np.array([[0.5, 0, 0], [0, 0.75, 0], [0, 0, 5.0]])
ORIGIN = np.array([-100.0, -50.0, -300.0])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Five 8 x 6 x 4 volumes in LPS space: image = 100 * x + 10 * y + z (HU-like for the lungs), tumour in
    slice 1 (all volumes) and slice 2 (lungs)."""
    root = tmp_path_factory.mktemp("pyradiomics_src")
    (root / "data").mkdir()
    x, y, z = np.meshgrid(np.arange(8), np.arange(6), np.arange(4), indexing="ij")
    header = {"space": "left-posterior-superior", "space directions": DIRECTIONS, "space origin": ORIGIN,
              "kinds": ["domain"] * 3, "encoding": "gzip"}
    for name, modality in prep.VOLUMES.items():
        image = (100 * x + 10 * y + z - (1000 if modality == "CT" else 0)).astype(np.int16)
        label = np.zeros(image.shape, np.int16)
        label[2:4, 2:4, 1] = 1
        if modality == "CT":
            label[3, 3, 2] = 1
        nrrd.write(str(root / "data" / f"{name}_image.nrrd"), image, header, index_order="F")
        nrrd.write(str(root / "data" / f"{name}_label.nrrd"), label, header, index_order="F")
    pins = {f"data/{p.name}": fetch.sha256_of(p) for p in (root / "data").glob("*.nrrd")}
    return root, pins


def test_nifti_keeps_voxels_and_geometry_in_ras(source, tmp_path):
    root, pins = source
    prep.prepare(tmp_path, str(root), pins)
    image = nib.load(tmp_path / "volumes" / "lung1_image.nii.gz")
    expected = np.diag([-1.0, -1.0, 1.0]) @ DIRECTIONS.T
    np.testing.assert_allclose(image.affine[:3, :3], expected)
    np.testing.assert_allclose(image.affine[:3, 3], [100.0, 50.0, -300.0])  # LPS origin -> RAS
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")  # LPS index directions, stated in RAS
    assert image.header.get_zooms() == (0.5, 0.75, 5.0) and int(image.header["sform_code"]) == 1
    data = np.asarray(image.dataobj)
    assert data.dtype == np.int16 and data[3, 2, 1] == 300 + 20 + 1 - 1000
    label = nib.load(tmp_path / "volumes" / "lung1_label.nii.gz")
    assert np.asarray(label.dataobj).dtype == np.uint8 and np.asarray(label.dataobj)[3, 3, 2] == 1


def test_slices_are_windowed_labelled_by_tumour_presence_and_split_by_volume(source, tmp_path):
    root, pins = source
    summary = prep.prepare(tmp_path, str(root), pins)
    rows = list(csv.DictReader(open(tmp_path / "slices.csv")))
    assert len(rows) == 5 * 4
    by = {(r["volume"], int(r["z"])): r for r in rows}
    assert by[("brain1", 1)]["labels"] == "tumour" and by[("brain1", 2)]["labels"] == "no_tumour"
    assert by[("lung1", 2)]["labels"] == "tumour" and int(by[("lung1", 2)]["tumour_voxels"]) == 1
    ct = np.asarray(Image.open(tmp_path / by[("lung1", 0)]["path"]))
    assert ct.shape == (6, 8)  # rows = y, columns = x
    hu = 100 * 7 + 10 * 5 + 0 - 1000  # x = 7, y = 5: -250 HU in the -1000..400 window
    assert ct[5, 7] == round((hu + 1000) / 1400 * 255)
    folds = json.loads((tmp_path / "folds.json").read_text())["folds"]
    for fold in folds.values():
        assert not set(fold["test"]) & set(fold["train"])
    assert sorted(v for f in folds.values() for v in f["test"]) == ["brain1", "brain2", "lung1", "lung2"]
    assert summary["volumes"]["lung2"]["tumour"] == 2 and summary["volumes"]["brain2"]["tumour"] == 1


def test_slice_masks_lie_on_the_slice_grid_and_seg_manifests_follow_the_volume_folds(source, tmp_path):
    root, pins = source
    prep.prepare(tmp_path, str(root), pins)
    label = np.zeros((8, 6, 4), np.uint8)  # (x, y, z) as in the fixture
    label[2:4, 2:4, 1] = 1
    mask = np.asarray(Image.open(tmp_path / "masks" / "brain1" / "brain1_z001.png"))
    assert mask.dtype == np.uint8 and mask.shape == (6, 8)  # rows = y, columns = x, like the slice PNG
    np.testing.assert_array_equal(mask, label[:, :, 1].T)
    lung = np.asarray(Image.open(tmp_path / "masks" / "lung1" / "lung1_z002.png"))
    assert lung.sum() == 1 and lung[3, 3] == 1
    assert not np.asarray(Image.open(tmp_path / "masks" / "lung1" / "lung1_z000.png")).any()
    folds = json.loads((tmp_path / "folds.json").read_text())["folds"]
    for fold in ("A", "B"):
        rows = list(csv.DictReader(open(tmp_path / f"seg_fold_{fold.lower()}.csv")))
        assert len(rows) == 5 * 4 and list(rows[0]) == ["image", "label", "split"]
        for r in rows:
            volume = r["image"].split("/")[1]
            assert volume in folds[fold][r["split"]] and r["label"].startswith(f"masks/{volume}/")
            assert r["label"].endswith(r["image"].rsplit("/", 1)[1])
            shown = np.asarray(Image.open(tmp_path / r["image"]))
            assert np.asarray(Image.open(tmp_path / r["label"])).shape == shown.shape
        tumour = [r for r in rows if r["split"] == "test" and "/tumour/" in r["image"]]
        assert all(np.asarray(Image.open(tmp_path / r["label"])).any() for r in tumour) and tumour
    from mae_domains.data.label_masks import read_label_mask
    np.testing.assert_array_equal(read_label_mask(tmp_path / "masks" / "brain1" / "brain1_z001.png"),
                                  label[:, :, 1].T.astype(np.int64))


def test_volume_manifests_pair_each_nifti_with_its_mask_in_the_volume_folds(source, tmp_path):
    root, pins = source
    prep.prepare(tmp_path, str(root), pins)
    folds = json.loads((tmp_path / "folds.json").read_text())["folds"]
    for fold in ("A", "B"):
        rows = list(csv.DictReader(open(tmp_path / f"volumes_fold_{fold.lower()}.csv")))
        assert list(rows[0]) == ["image", "label", "split"]
        assert [r["image"] for r in rows] == [f"volumes/{v}_image.nii.gz" for part in ("train", "test")
                                              for v in folds[fold][part]]
        for r in rows:
            volume = r["image"].split("/")[1].split("_")[0]
            assert volume in folds[fold][r["split"]] and r["label"] == f"volumes/{volume}_label.nii.gz"
            image, label = nib.load(tmp_path / r["image"]), nib.load(tmp_path / r["label"])
            assert image.shape == label.shape and np.allclose(image.affine, label.affine)
        tumour = {r["image"]: int(np.asarray(nib.load(tmp_path / r["label"]).dataobj).sum()) for r in rows}
        assert tumour["volumes/lung1_image.nii.gz"] == 5 and tumour["volumes/brain1_image.nii.gz"] == 4


def test_label_values_other_than_0_and_1_are_refused(source, tmp_path):
    root, pins = source
    bad_root = tmp_path / "src"
    bad_root.mkdir()
    import shutil
    shutil.copytree(root / "data", bad_root / "data")
    data, header = nrrd.read(str(bad_root / "data" / "brain1_label.nrrd"), index_order="F")
    data[0, 0, 0] = 7
    nrrd.write(str(bad_root / "data" / "brain1_label.nrrd"), data, header, index_order="F")
    pins = {**pins, "data/brain1_label.nrrd": fetch.sha256_of(bad_root / "data" / "brain1_label.nrrd")}
    with pytest.raises(fetch.PreparationError, match=r"brain1_label.nrrd: label values \[0, 1, 7\]"):
        prep.prepare(tmp_path / "out", str(bad_root), pins)
