"""The native-resolution crop set of prepare_radiomics.py (radiomics_crops.py), on tiny NRRD volumes written by
pynrrd in the layout of the pyradiomics source archive, read back with the ``medical.xray`` adapter."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.benchmarks.real_modules import real_module

nrrd = pytest.importorskip("nrrd")
prep = real_module("prepare_radiomics")
crops = real_module("radiomics_crops")
fetch = real_module("fetch")
study = real_module("study")
X, Y, Z = 100, 90, 3  # columns, rows, slices
CENTRE = (24, 50)  # tumour centre (row y, column x) in slice 1


def tumour_of(radius: float) -> np.ndarray:
    """(x, y, z) mask: a disc of ``radius`` px in slice 1, nothing elsewhere."""
    x, y = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    label = np.zeros((X, Y, Z), np.int16)
    label[:, :, 1] = (x - CENTRE[1]) ** 2 + (y - CENTRE[0]) ** 2 <= radius ** 2
    return label


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Five volumes: air (-1000 HU / MR 0) in rows 44-89, a textured body above; tumour discs of radius 4 to
    12 px in slice 1. Returns (output folder, summary)."""
    root = tmp_path_factory.mktemp("pyradiomics_src")
    (root / "data").mkdir()
    x, y, z = np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij")
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.7, 0.7, 5.0]),
              "space origin": np.zeros(3), "kinds": ["domain"] * 3, "encoding": "gzip"}
    for i, (name, modality) in enumerate(prep.VOLUMES.items()):
        body = 200 + 3 * x + 2 * y + 50 * z
        image = np.where(y < 44, body - (1000 if modality == "CT" else 0), -1000 if modality == "CT" else 0)
        nrrd.write(str(root / "data" / f"{name}_image.nrrd"), image.astype(np.int16), header, index_order="F")
        nrrd.write(str(root / "data" / f"{name}_label.nrrd"), tumour_of(4 + 2 * i), header, index_order="F")
    pins = {f"data/{p.name}": fetch.sha256_of(p) for p in (root / "data").glob("*.nrrd")}
    out = tmp_path_factory.mktemp("radiomics")
    return out, prep.prepare(out, str(root), pins)


def rows_of(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "crops.csv")))


def test_crops_are_native_pixels_of_the_slice_png_labelled_by_their_centre(prepared):
    out, _ = prepared
    rows = rows_of(out)
    assert {r["labels"] for r in rows} == {"tumour", "no_tumour"}
    for r in rows:
        z, top, left = int(r["z"]), int(r["y"]), int(r["x"])
        assert z == 1  # only the slice with tumour gives labelled crops
        assert r["path"] == f"crops/{r['volume']}/{r['labels']}/{r['volume']}_z001_y{top:03d}_x{left:03d}.png"
        crop = np.asarray(Image.open(out / r["path"]))
        shown = np.asarray(Image.open(out / "slices" / r["volume"] / "tumour" / f"{r['volume']}_z001.png"))
        np.testing.assert_array_equal(crop, shown[top:top + 32, left:left + 32])  # no resampling
        mask = np.asarray(Image.open(out / "masks" / r["volume"] / f"{r['volume']}_z001.png"))
        centre = mask[top + 15:top + 17, left + 15:left + 17]
        assert centre.all() if r["labels"] == "tumour" else not centre.any()
        assert int(r["tumour_pixels"]) == int(mask[top:top + 32, left:left + 32].sum())
    groups = {g["path"]: g["slice"] for g in csv.DictReader(open(out / "crop_groups.csv"))}
    assert groups == {r["path"]: f"{r['volume']}_z001" for r in rows}  # the bootstrap resamples slices


def test_tumour_grid_follows_the_tumour_size_and_mixed_centres_and_air_are_left_out(prepared):
    out, summary = prepared
    volumes = summary["crops"]["volumes"]
    rows = rows_of(out)
    for i, name in enumerate(prep.VOLUMES):
        diameter = 2 * np.sqrt(tumour_of(4 + 2 * i)[:, :, 1].sum() / np.pi)
        stride = max(2, round(diameter / 4))
        assert volumes[name]["tumour_stride_px"] == stride
        assert volumes[name]["tumour_diameter_px"]["median"] == round(diameter, 1)
        mask = tumour_of(4 + 2 * i)[:, :, 1].T > 0
        expected = {(r, c) for r in range(0, Y - 31, stride) for c in range(0, X - 31, stride)
                    if mask[r + 15:r + 17, c + 15:c + 17].all()}
        found = {(int(r["y"]), int(r["x"])) for r in rows if r["volume"] == name and r["labels"] == "tumour"}
        assert found == expected and volumes[name]["tumour"] == len(expected) > 0
        background = {(int(r["y"]), int(r["x"])) for r in rows if r["volume"] == name and r["labels"] == "no_tumour"}
        # a 32 px grid; the crops of rows 32-63 are 20 of 32 rows air -> left out by the body rule
        assert background == {(0, c) for c in (0, 32, 64) if not mask[15:17, c + 15:c + 17].any()}
        assert volumes[name]["outside_body"] == 3
    assert summary["crops"]["body_rule"] == "at least 50% of the pixels above 13/255"


def test_pretraining_crops_cover_every_slice_and_folds_follow_folds_json(prepared):
    out, summary = prepared
    folds = json.loads((out / "folds.json").read_text())
    assert "crops" not in folds  # folds.json as before: the crop summary goes to crops_summary.json
    assert json.loads((out / "crops_summary.json").read_text()) == summary["crops"]
    pretrain = sorted(p.name for p in (out / "pretrain" / "lung1").glob("*.png"))
    # 48 px grid: rows 0 and 48 (all air: left out), columns 0 and 48; every slice, tumour or not
    assert pretrain == [f"lung1_z{z:03d}_y000_x{c:03d}.png" for z in range(Z) for c in (0, 48)]
    shown = np.asarray(Image.open(out / "slices" / "lung1" / "no_tumour" / "lung1_z002.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "pretrain" / "lung1" / pretrain[-1])),
                                  shown[0:32, 48:80])
    for r in rows_of(out):
        for fold, split in folds["folds"].items():
            assert r["volume"] in split[r[f"fold_{fold.lower()}"]]
    counts = summary["crops"]["folds"]["A"]
    assert counts["test"]["tumour"] == sum(summary["crops"]["volumes"][v]["tumour"] for v in ("brain2", "lung2"))


def test_the_xray_adapter_reads_the_crops_with_folder_labels_at_native_scale(prepared):
    from mae_domains.config import load_config
    from mae_domains.registry import get_adapter

    out, _ = prepared
    adapter = get_adapter("medical.xray").bind(load_config(None, ["adapter=medical.xray", "model.img_size=32"]))
    refs = adapter.discover([str(out / "crops" / "brain1")])
    rows = {r["path"]: r for r in rows_of(out) if r["volume"] == "brain1"}
    assert len(refs) == len(rows)
    for ref in refs:
        relative = Path(ref.path).relative_to(out).as_posix()
        assert adapter.label_of(ref) == rows[relative]["labels"]
        sample = adapter.transform(adapter.read(ref), 0, False, None)  # the evaluation path
        expected = np.asarray(Image.open(ref.path), np.float32) / 255
        np.testing.assert_allclose(sample.image[0], expected, atol=1e-6)  # img_size = the crop: no resize


def test_the_crop_studies_train_and_pretrain_on_their_folds_training_volumes_only():
    for name, fold in (("medical_crops", "A"), ("medical_crops_fold_b", "B")):
        shipped = study.load_study(Path(study.__file__).parent / f"{name}.yaml")
        test = set(prep.FOLDS[fold])
        train = set(prep.VOLUMES) - test
        (entry,) = shipped["evaluate"]["datasets"]
        assert {Path(p).name for p in entry["train"]} == train and {Path(p).name for p in entry["test"]} == test
        assert all(p.startswith("crops/") for p in entry["train"] + entry["test"])
        assert {p for p in shipped["recipe"]["data"]["sources"]} == {f"pretrain/{v}" for v in train}
        assert shipped["recipe"]["model"]["img_size"] == crops.CROP


def test_crop_contrast_measures_how_far_brightness_separates_the_classes(tmp_path, capsys):
    contrast = real_module("crop_contrast")
    rows = []
    for label, values in (("tumour", [100, 110, 120, 130, 140]), ("no_tumour", [50, 115, 125, 200])):
        for i, value in enumerate(values):
            crop = np.full((32, 32), 255, np.uint8)
            crop[12:20, 12:20] = value  # only the centre 8 x 8 counts
            path = tmp_path / "crops" / "v" / label / f"v_z000_y000_x{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(crop).save(path)
            rows.append({"path": path.relative_to(tmp_path).as_posix(), "labels": label, "volume": "v"})
    with open(tmp_path / "crops.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "labels", "volume"])
        writer.writeheader()
        writer.writerows(rows)
    low, high = np.percentile([100, 110, 120, 130, 140], [10, 90])  # 104, 136: 115 and 125 inside
    assert contrast.contrast(tmp_path) == {"v": {"tumour_median": 120.0, "tumour_p10": round(low, 1),
                                                 "tumour_p90": round(high, 1), "no_tumour_median": 120.0,
                                                 "no_tumour_inside_tumour_range": 0.5}}
    assert contrast.main([str(tmp_path / "missing")]) == 2
    missing = tmp_path / "missing" / "crops.csv"
    assert capsys.readouterr().err.strip() == f"error: {missing}: not found; run prepare_radiomics.py first"
