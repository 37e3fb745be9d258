"""``medical.ct`` reads volumes right: NIfTI orientation and spacing, DICOM series order and geometry,
DICOM vs NIfTI conversion, labels on the image grid, bad input, and the persistent cache.

Files are written by the tests (nibabel, pydicom); expected arrays are built independently of the code
under test from the known voxel values and the DICOM/NIfTI coordinate conventions.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from pydicom.uid import UID, generate_uid

from mae_domains.data.dataset import ArchiveDataset
from mae_domains.data.sample import BadSampleError
from mae_medical.ct import CTAdapter
from tests.medical.dicom_files import base_dataset, write

CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")


# ----- writers ------------------------------------------------------------------------------------
def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype=np.float32) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data, dtype), affine), str(path))
    return path


def write_series(folder: Path, hu: np.ndarray, *, spacing: tuple[float, float] = (0.8, 0.7), z0: float = -20.0,
                 step: float = 2.5, drop: tuple[int, ...] = (), tilt_mm: float = 0.0, seed: int = 0,
                 origin_xy: tuple[float, float] = (-30.0, 40.0), series_uid: str | None = None) -> str:
    """Axial slices ``hu[k]`` (rows, cols) at z = z0 + k * step (LPS), written without extension in shuffled
    order, file names unrelated to position, InstanceNumber reversed, SliceThickness wrong on purpose.
    Stored as int16 = HU + 1024 with RescaleIntercept -1024. Returns the SeriesInstanceUID (``series_uid``;
    empty: an anonymised export)."""
    uid = generate_uid() if series_uid is None else series_uid
    rng = np.random.default_rng(seed)
    n = hu.shape[0]
    order = [k for k in rng.permutation(n) if k not in drop]
    folder.mkdir(parents=True, exist_ok=True)
    for written, k in enumerate(order):
        ds = base_dataset(hu.shape[1], hu.shape[2], sop_class=CT_STORAGE, modality="CT", bits_stored=16)
        ds.SeriesInstanceUID = uid
        ds.StudyInstanceUID = "1.2.3"
        ds.SeriesDescription = f"series {uid[-4:]}"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin_xy[0], origin_xy[1] + tilt_mm * k, z0 + step * k]
        ds.PixelSpacing = [spacing[0], spacing[1]]  # row spacing, column spacing
        ds.SliceThickness = 5.0
        ds.InstanceNumber = n - k
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (np.round(hu[k]) + 1024).astype(np.uint16).tobytes()
        write(ds, folder / f"IM{rng.integers(1e6):06d}_{written}")
    return uid


def adapter(tmp_path: Path, **options) -> CTAdapter:
    base = {"cache_dir": str(tmp_path / "cache"), "crops_per_volume": 1, "target_spacing": None,
            "foreground_crop": False, "intensity": [-1024.0, 3071.0]}
    return CTAdapter({**base, **options})


def hu_of(unit: np.ndarray) -> np.ndarray:
    return unit * 4095.0 - 1024.0


def phantom(shape=(6, 10, 12), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, shape).astype(np.float32)


# ----- NIfTI ----------------------------------------------------------------------------------------
def test_nifti_non_ras_anisotropic_is_made_canonical(tmp_path):
    """Stored with axes (A->P, S, L->R... ) permuted and flipped: read back in (S, A, R) order exactly."""
    ras = phantom((9, 7, 5))  # indexed (x=R, y=A, z=S), spacing 0.8 x 1.2 x 3.0 mm
    stored = np.flip(ras, axis=(0, 1)).transpose(1, 2, 0)  # i: P (y flipped), j: S (z), k: L (x flipped)
    affine = np.zeros((4, 4))
    affine[1, 0] = -1.2  # i steps posterior
    affine[2, 1] = 3.0  # j steps superior
    affine[0, 2] = -0.8  # k steps left
    affine[:3, 3] = [10.0, 20.0, -5.0]
    affine[3, 3] = 1
    path = write_nifti(tmp_path / "scan.nii.gz", stored, affine)
    sample = adapter(tmp_path).read(path)
    np.testing.assert_allclose(hu_of(sample.image[0]), ras.transpose(2, 1, 0), atol=1e-3)
    assert sample.meta["spacing"] == pytest.approx([3.0, 1.2, 0.8])
    assert sample.image.dtype == np.float32


def test_resampling_to_target_spacing_is_linear_in_world_mm(tmp_path):
    """A volume whose value is a linear function of RAS mm keeps that function after resampling."""
    shape, spacing = (20, 16, 12), np.array([0.9, 1.1, 3.0])
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-8.0, 4.0, 2.0]
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    world = ijk * spacing + affine[:3, 3]
    values = 2.0 * world[..., 0] - 1.0 * world[..., 1] + 3.0 * world[..., 2]
    path = write_nifti(tmp_path / "ramp.nii", values, affine)
    a = adapter(tmp_path, target_spacing=[1.5, 1.5, 2.0], intensity=[-1000.0, 1000.0])
    sample = a.read(path)
    out = sample.image[0] * 2000.0 - 1000.0  # (z, y, x)
    assert sample.meta["spacing"] == pytest.approx([2.0, 1.5, 1.5])
    out_affine = np.array(sample.meta["affine"])
    z, y, x = np.meshgrid(*(np.arange(n) for n in out.shape), indexing="ij")
    xyz = np.stack([x, y, z, np.ones_like(x)], -1) @ out_affine.T
    expected = 2.0 * xyz[..., 0] - 1.0 * xyz[..., 1] + 3.0 * xyz[..., 2]
    inside = np.all([(xyz[..., a] >= world[..., a].min()) & (xyz[..., a] <= world[..., a].max()) for a in range(3)], 0)
    assert inside.sum() > 0.5 * inside.size
    np.testing.assert_allclose(out[inside], expected[inside], atol=0.05)


# ----- DICOM series ---------------------------------------------------------------------------------
def test_dicom_series_shuffled_without_extension_two_series_in_one_folder(tmp_path, caplog):
    hu_a, hu_b = phantom((7, 10, 12), 1), phantom((5, 8, 8), 2)
    folder = tmp_path / "study"
    uid_a = write_series(folder, hu_a, seed=3)
    uid_b = write_series(folder, hu_b, seed=4, z0=100.0, step=1.25)
    a = adapter(tmp_path)
    with caplog.at_level(logging.INFO, logger="mae_medical"):
        refs = a.discover([folder])
    assert sorted(r.uid for r in refs) == sorted([uid_a, uid_b])
    assert uid_a in caplog.text and uid_b in caplog.text  # each series named in the log
    by_uid = {r.uid: r for r in refs}
    sample = a.read(by_uid[uid_a])
    # (z ascending = S; rows flipped: DICOM rows run posterior, y is anterior; columns flipped: L vs R)
    np.testing.assert_allclose(hu_of(sample.image[0]), hu_a[:, ::-1, ::-1], atol=1e-3)
    assert sample.meta["spacing"] == pytest.approx([2.5, 0.8, 0.7])  # from positions, not SliceThickness 5
    sample_b = a.read(by_uid[uid_b])
    np.testing.assert_allclose(hu_of(sample_b.image[0]), hu_b[:, ::-1, ::-1], atol=1e-3)
    assert sample_b.meta["spacing"][0] == pytest.approx(1.25)


def test_anonymised_series_without_uid_is_grouped_by_folder_and_geometry(tmp_path, caplog):
    """An anonymised export: SeriesInstanceUID empty, positions and orientations present. Read like GDCM,
    one volume per folder and geometry, one warning naming the attribute; a file without
    ImagePositionPatient is left out naming that attribute."""
    hu_a, hu_b = phantom((20, 10, 12), 5), phantom((4, 8, 8), 6)
    write_series(tmp_path / "ct", hu_a, seed=1, series_uid="")
    write_series(tmp_path / "ct", hu_b, seed=2, series_uid="", spacing=(0.5, 0.5), z0=300.0)  # another grid
    scout = base_dataset(10, 12, sop_class=CT_STORAGE, modality="CT", bits_stored=16)
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    scout.PixelData = np.zeros((10, 12), np.uint16).tobytes()
    write(scout, tmp_path / "ct" / "scout.dcm")
    a = adapter(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mae_medical"):
        refs = a.discover([tmp_path / "ct"])
    assert len(refs) == 2 and all(r.uid == "" for r in refs)
    assert sorted(len(r.files) for r in refs) == [4, 20]
    warnings = [r.getMessage() for r in caplog.records if "SeriesInstanceUID" in r.getMessage()]
    assert len(warnings) == 1 and "24 DICOM file(s)" in warnings[0] and "folder and geometry" in warnings[0]
    assert a.excluded == [(str(tmp_path / "ct" / "scout.dcm"), "no ImagePositionPatient: not a slice of a volume")]
    by_size = {len(r.files): r for r in refs}
    assert "10x12, 0.8 x 0.7 mm, axial" in by_size[20].source and "without SeriesInstanceUID" in by_size[20].source
    sample = a.read(by_size[20])
    np.testing.assert_allclose(hu_of(sample.image[0]), hu_a[:, ::-1, ::-1], atol=1e-3)
    assert sample.meta["spacing"] == pytest.approx([2.5, 0.8, 0.7])
    np.testing.assert_allclose(hu_of(a.read(by_size[4]).image[0]), hu_b[:, ::-1, ::-1], atol=1e-3)


def test_dicom_series_equals_its_dicom2nifti_conversion(tmp_path):
    import dicom2nifti  # a standard converter (test dependency)

    hu = phantom((8, 12, 10), 5)
    folder = tmp_path / "series"
    write_series(folder, hu, seed=6)
    nifti = tmp_path / "converted.nii.gz"
    dicom2nifti.dicom_series_to_nifti(str(folder), str(nifti), reorient_nifti=False)
    a = adapter(tmp_path, target_spacing=[1.5, 1.5, 2.0])
    from_dicom, from_nifti = a.read(folder), a.read(nifti)
    assert from_dicom.meta["spacing"] == pytest.approx(from_nifti.meta["spacing"])
    assert from_dicom.image.shape == from_nifti.image.shape
    np.testing.assert_allclose(hu_of(from_dicom.image), hu_of(from_nifti.image), atol=0.05)


def test_missing_slice_is_reported_and_interpolated_on_request(tmp_path):
    hu = phantom((8, 6, 6), 7)
    folder = tmp_path / "gap"
    write_series(folder, hu, drop=(4,), seed=8)
    with pytest.raises(BadSampleError, match=r"1 missing slice\(s\) between -12.50 and -7.50 mm"):
        adapter(tmp_path).read(folder)
    sample = adapter(tmp_path, irregular_slices="interpolate").read(folder)
    out = hu_of(sample.image[0])
    assert out.shape == (8, 6, 6)
    expected = hu.copy()
    expected[4] = 0.5 * (hu[3] + hu[5])
    np.testing.assert_allclose(out, expected[:, ::-1, ::-1], atol=0.05)


def test_gantry_tilt_is_rejected_with_its_angle(tmp_path):
    folder = tmp_path / "tilt"
    write_series(folder, phantom((6, 6, 6), 9), tilt_mm=0.5, step=2.5)
    with pytest.raises(BadSampleError, match=r"gantry tilt of 11\.31 degrees"):
        adapter(tmp_path).read(folder)


# ----- labels ---------------------------------------------------------------------------------------
def test_label_volume_on_the_same_grid_stays_aligned(tmp_path):
    from mae_medical.volume_phantoms import abdomen_phantom

    hu, label = abdomen_phantom(0, (20, 24, 24))  # (z, y, x)
    affine = np.diag([-1.2, -1.0, 2.5, 1.0])  # LPS-like storage: x and y flipped
    stored = lambda a: np.flip(a.transpose(2, 1, 0), axis=(0, 1))  # (z, y, x) -> (i=L, j=P, k=S)  # noqa: E731
    image_path = write_nifti(tmp_path / "img.nii.gz", stored(hu), affine)
    label_path = write_nifti(tmp_path / "lab.nii.gz", stored(label), affine, np.uint8)
    a = adapter(tmp_path, target_spacing=[1.5, 1.5, 2.0], intensity="abdomen")
    sample, lab = a.read_labelled(image_path, label_path)
    assert lab.shape == sample.image.shape[1:]
    assert set(np.unique(lab)) == {0, 1}
    organ = (150.0 + 175.0) / 425.0
    inside = sample.image[0][lab == 1]
    assert np.mean(np.abs(inside - organ) < 0.15) > 0.9  # labelled voxels hold the organ's intensity
    # and the organ's intensity (away from its border) is labelled
    core = np.abs(sample.image[0] - organ) < 0.05
    assert np.mean(lab[core] == 1) > 0.9


def test_label_stored_las_for_an_anonymised_dicom_series_is_reoriented_exactly(tmp_path, caplog):
    """The real case: a DICOM series (LPS storage, no SeriesInstanceUID) and its label map written by a
    segmentation tool as LAS NIfTI (rows flipped to anterior): the same voxels after reorientation, no
    resampling, each label on the voxel it was drawn on."""
    hu = phantom((20, 10, 12), 11)
    organ = hu > 500  # (k, row, col): the label drawn on the stored slices
    write_series(tmp_path / "ct", hu, seed=12, series_uid="", z0=-20.0, step=2.5, spacing=(0.8, 0.7))
    # DICOM voxel (i=col, j=row, k) lies at LPS (x0 + 0.7 i, y0 + 0.8 j, z0 + 2.5 k): RAS (-x, -y, z)
    las = np.ascontiguousarray(organ.transpose(2, 1, 0)[:, ::-1, :])  # i: L (columns), j: A (rows reversed), k: S
    affine = np.array([[-0.7, 0, 0, 30.0], [0, 0.8, 0, -40.0 - 0.8 * 9], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])
    label = write_nifti(tmp_path / "label.nii.gz", las, affine, np.uint8)
    a = adapter(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mae_medical.volumes"):
        sample, lab = a.read_labelled(tmp_path / "ct", label)
    assert "resampled" not in caplog.text  # same voxels: reoriented, not resampled
    np.testing.assert_array_equal(lab, organ[:, ::-1, ::-1].astype(np.int64))  # (S, A, R) like the image
    np.testing.assert_allclose(hu_of(sample.image[0]), hu[:, ::-1, ::-1], atol=1e-3)
    assert lab.sum() == organ.sum() > 0


def test_label_on_another_grid_is_resampled_by_nearest_neighbour_or_refused(tmp_path, caplog):
    img = write_nifti(tmp_path / "img.nii.gz", phantom((8, 8, 6)), np.diag([1.0, 1.0, 2.0, 1.0]))
    lab = write_nifti(tmp_path / "lab.nii.gz", np.zeros((8, 8, 5)), np.diag([1.0, 1.0, 2.0, 1.0]), np.uint8)
    with pytest.raises(BadSampleError, match=r"lab\.nii\.gz: label grid \(8, 8, 5\) differs .*img\.nii\.gz.*"
                                             r"does not cover the image"):
        adapter(tmp_path).read_labelled(img, lab)
    coarse = np.zeros((4, 4, 6), np.uint8)  # 2 mm in-plane over the same field of view, slabs labelled 1..6
    coarse[:] = np.arange(1, 7)
    coarse[2:] += 10  # right half
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [0.5, 0.5, 0.0]  # voxel centres between the image's
    lab2 = write_nifti(tmp_path / "lab2.nii.gz", coarse, affine, np.uint8)
    with caplog.at_level(logging.WARNING, logger="mae_medical"):
        _, out = adapter(tmp_path).read_labelled(img, lab2)
    assert "resampled by nearest neighbour" in caplog.text and "lab2.nii.gz" in caplog.text
    expected = np.repeat(coarse, 2, axis=0).repeat(2, axis=1).transpose(2, 1, 0)  # (z, y, x)
    np.testing.assert_array_equal(out, expected)


# ----- bad input ------------------------------------------------------------------------------------
def bad_files(tmp_path: Path) -> dict[str, Path]:
    good = write_nifti(tmp_path / "good.nii.gz", phantom((10, 10, 8)), np.eye(4))
    flat = write_nifti(tmp_path / "flat.nii.gz", phantom((16, 16, 1)), np.eye(4))
    whole = write_nifti(tmp_path / "whole.nii", phantom((12, 12, 12)), np.eye(4))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(whole.read_bytes()[: whole.stat().st_size // 2]))
    whole.unlink()
    single = tmp_path / "single"
    write_series(single, phantom((1, 8, 8)))
    return {"good": good, "flat": flat, "truncated": truncated, "single": single}


def test_bad_volumes_raise_messages_naming_the_file(tmp_path):
    files = bad_files(tmp_path)
    a = adapter(tmp_path)
    with pytest.raises(BadSampleError, match=r"flat\.nii\.gz: is not a 3D volume \(voxel shape \(16, 16, 1\)\)"):
        a.read(files["flat"])
    with pytest.raises(BadSampleError, match=r"truncated\.nii\.gz: unreadable NIfTI"):
        a.read(files["truncated"])
    (ref,) = a.discover([files["single"]])
    with pytest.raises(BadSampleError, match=r"single.*has 1 slice: a 2D image"):
        a.read(ref)


def test_pretraining_skips_and_lists_bad_volumes(tmp_path):
    files = bad_files(tmp_path)
    a = adapter(tmp_path)
    refs = a.discover([tmp_path])
    assert [(Path(p).name, why.split(" (")[0]) for p, why in a.excluded] == [("flat.nii.gz", "is not a 3D volume")]
    refs.append(a.as_ref(files["flat"]))  # given anyway: skipped when read
    a.config.model.img_size = 8
    dataset = ArchiveDataset(a, refs, a.compute_stats(refs), train=True, seed=0)
    skipped = {str(entry[0]) for i in range(len(refs)) for entry in dataset[i]["skipped"]}
    names = {Path(s).name for s in skipped}
    assert {"flat.nii.gz", "truncated.nii.gz"} <= names
    assert any(Path(s).parent.name == "single" for s in skipped)  # the one-slice series, named by folder
    assert "good.nii.gz" not in names


# ----- cache ----------------------------------------------------------------------------------------
def test_cache_survives_restarts_and_is_keyed_by_file_and_settings(tmp_path):
    path = write_nifti(tmp_path / "vol.nii.gz", phantom((12, 10, 8), 3), np.diag([1.0, 1.0, 2.0, 1.0]))
    first = adapter(tmp_path, target_spacing=[1.5, 1.5, 2.0])
    cold = first.read(path)
    assert (first.cache.hits, first.cache.misses) == (0, 1)
    assert list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob("*.pkl"))
    restarted = adapter(tmp_path, target_spacing=[1.5, 1.5, 2.0])
    warm = restarted.read(path)
    assert restarted.cache.hits == 1
    np.testing.assert_array_equal(cold.image, warm.image)
    assert warm.meta["spacing"] == cold.meta["spacing"]
    other = adapter(tmp_path, target_spacing=[1.5, 1.5, 2.0], intensity="lung")
    other.read(path)
    assert other.cache.misses == 1  # new settings, new entry
    write_nifti(path, phantom((12, 10, 8), 4), np.diag([1.0, 1.0, 2.0, 1.0]))
    changed = adapter(tmp_path, target_spacing=[1.5, 1.5, 2.0])
    assert not np.array_equal(changed.read(path).image, cold.image)
    assert changed.cache.misses == 1



def test_foreground_crop_keeps_the_body_and_stays_inside_the_volume(tmp_path):
    from mae_medical.volume_phantoms import abdomen_phantom

    hu, _ = abdomen_phantom(0, (24, 40, 40))
    hu[:, :3] = -1000.0  # the first rows are air
    path = write_nifti(tmp_path / "body.nii.gz", hu.transpose(2, 1, 0), np.diag([1.5, 1.5, 2.0, 1.0]))
    a = adapter(tmp_path, foreground_crop=True, foreground_margin=2, intensity="abdomen")
    sample = a.read(path)
    start, end = sample.meta["crop_start"], sample.meta["crop_end"]
    assert all(s >= 0 for s in start) and end[0] == 24 and start[0] == 0  # body spans every slice: margin clipped
    body = hu > -175.0
    ys = np.nonzero(body.any(axis=(0, 2)))[0]
    assert (start[1], end[1]) == (max(ys[0] - 2, 0), min(ys[-1] + 3, 40))
    np.testing.assert_allclose(sample.image[0], np.clip((hu[:, start[1]:end[1], start[2]:end[2]] + 175) / 425, 0, 1),
                               atol=1e-5)


def test_uneven_spacing_is_reported_per_series(tmp_path):
    folder = tmp_path / "uneven"
    hu = phantom((6, 6, 6), 11)
    uid = write_series(folder, hu)
    import pydicom

    for f in folder.iterdir():  # move the top slice up by 1 mm: one gap of 3.5 mm among 2.5 mm steps
        ds = pydicom.dcmread(f)
        if float(ds.ImagePositionPatient[2]) == pytest.approx(-20.0 + 2.5 * 5):
            ds.ImagePositionPatient[2] = -20.0 + 2.5 * 5 + 1.0
            ds.save_as(f)
    with pytest.raises(BadSampleError, match=rf"series {uid}.*uneven slice spacing \(usual step 2.500 mm; gaps 3.500 mm"):
        adapter(tmp_path).read(folder)


def test_mr_percentile_normalization(tmp_path):
    rng = np.random.default_rng(0)
    mr = np.zeros((20, 20, 20), np.float32)
    mr[4:16, 4:16, 4:16] = rng.uniform(100.0, 1100.0, (12, 12, 12))
    path = write_nifti(tmp_path / "t1.nii.gz", mr, np.eye(4))
    out = adapter(tmp_path, intensity="mr").read(path).image[0]
    body = mr[mr > 0]
    low, high = np.percentile(body, [0.5, 99.5])
    expected = np.clip((mr - low) / (high - low), 0, 1).transpose(2, 1, 0)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out[mr.transpose(2, 1, 0) > 0].max() == 1.0 and out.min() == 0.0


def test_each_volume_gives_several_seeded_random_crops(tmp_path):
    path = write_nifti(tmp_path / "big.nii.gz", phantom((30, 30, 30), 2), np.eye(4))
    a = adapter(tmp_path, crops_per_volume=3, flip=False)
    refs = a.discover([path])
    assert [r.crop for r in refs] == [0, 1, 2] and len({r.source for r in refs}) == 1
    a.config.model.img_size = 16
    volume = a.read(refs[0])
    crops = [a.transform(volume, seed, True, None) for seed in (1, 2, 1)]
    np.testing.assert_array_equal(crops[0].image, crops[2].image)  # same seed, same crop
    assert crops[0].meta["crop_origin"] != crops[1].meta["crop_origin"]
    z, y, x = crops[1].meta["crop_origin"]
    np.testing.assert_array_equal(crops[1].image[0], volume.image[0, z:z + 16, y:y + 16, x:x + 16])
    assert crops[1].valid.all()


# ----- where crops lie ------------------------------------------------------------------------------
def test_embedding_crops_are_distinct_and_keep_their_voxel_box_and_world_position(tmp_path, capsys):
    """Crops of one volume in ``embed`` are different crops, each row with its voxel box on the canonical
    grid and the RAS millimetres of its first and last voxel centres."""
    from mae_domains.cli import main
    from tests.test_embed import write_run

    rng = np.random.default_rng(3)
    hu = np.full((40, 36, 20), -1000.0, np.float32)  # (x, y, z), stored RAS
    hu[4:36, 3:33, 2:18] = rng.integers(-100, 200, (32, 30, 16))  # the body: foreground box with margin 2
    affine = np.diag([0.8, 0.9, 2.0, 1.0])
    affine[:3, 3] = [-16.0, 30.0, -100.0]
    (tmp_path / "data").mkdir()
    write_nifti(tmp_path / "data" / "vol.nii.gz", hu, affine)
    scout = base_dataset(10, 12, sop_class=CT_STORAGE, modality="CT", bits_stored=16)  # no position: left out
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    scout.PixelData = np.zeros((10, 12), np.uint16).tobytes()
    write(scout, tmp_path / "data" / "scout")
    run = write_run(tmp_path / "run", "medical.ct", cache_dir="none", target_spacing=None, crops_per_volume=3)
    size = int(yaml.safe_load((run / "config.yaml").read_text())["model"]["img_size"])
    out = tmp_path / "emb.npz"
    assert main(["-q", "embed", "--run", str(run), "--data", str(tmp_path / "data"), "--out", str(out),
                 "--device", "cpu"]) == 0
    emb = np.load(out, allow_pickle=False)
    assert list(emb["sample_ids"]) == ["vol.nii.gz#crop0", "vol.nii.gz#crop1", "vol.nii.gz#crop2"]
    assert list(emb["skipped_sources"]) == [str(tmp_path / "data" / "scout")]
    assert list(emb["skipped_reasons"]) == ["no ImagePositionPatient: not a slice of a volume"]
    boxes = emb["voxel_box"].astype(int)  # [z0, y0, x0, z1, y1, x1] on the (S, A, R) grid
    assert len({tuple(b) for b in boxes}) == 3 and len(np.unique(emb["embeddings"], axis=0)) == 3
    inside_start, inside_end = np.array([0, 1, 2]), np.array([20, 35, 38])  # the body's box, 2-voxel margin
    for box in boxes:
        assert (box[:3] >= inside_start).all() and (box[3:] <= inside_end).all(), box
        assert (box[3:] - box[:3] == np.minimum(size, inside_end - inside_start)).all(), box
    for box, world in zip(boxes, emb["world_box"]):
        first = affine[:3, 3] + np.diag(affine)[:3] * box[[2, 1, 0]]
        last = affine[:3, 3] + np.diag(affine)[:3] * (box[[5, 4, 3]] - 1)
        np.testing.assert_allclose(world, np.concatenate([first, last]), atol=1e-3)
