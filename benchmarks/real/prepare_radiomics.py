"""Prepare the medical set: five MR/CT volumes with tumour masks from the pyradiomics 3.1.0 source archive.

Source: ``pip download --no-deps --no-binary pyradiomics pyradiomics==3.1.0`` (BSD-3-Clause package). pip
stops after downloading (the archive's metadata says 3.0.1a1), so it runs with ``--no-clean`` and a private
``TMPDIR`` and the unpacked source tree is read from there. Files: ``data/{brain1,brain2,breast1,lung1,lung2}_
{image,label}.nrrd`` (MR brain, MR breast, CT lung; label 1 = tumour), each pinned by sha256 below. NRRD is read
with pynrrd (the ``benchmarks`` extra: ``pip install -e .[benchmarks]``), only here.

Output (``--out``, default ``data/real/radiomics``):

- ``volumes/<name>_{image,label}.nii.gz``: NIfTI-1 (int16 image, uint8 label) with the NRRD's geometry
  converted exactly from LPS to NIfTI's RAS (affine = diag(-1, -1, 1) x [space directions | space origin]),
  qform and sform set (scanner), for ``medical.ct`` and ``segmentation``;
- ``slices/<name>/{tumour,no_tumour}/<name>_z<k>.png``: every axial slice as an 8-bit PNG as a viewer shows
  it (CT: window -1000..400 HU; MR: the volume's 1st..99.5th percentile), labelled by whether the mask has
  any tumour voxel in that slice; ``slices.csv`` lists them (``path,labels,volume,z,tumour_voxels``);
- ``folds.json``: the volume-level split: two folds, each volume in the test set of exactly one
  (fold A tests brain2 + lung2, fold B tests brain1 + lung1; breast1, with three tumour slices only, always
  trains), so both test sets hold MR and CT and both classes, and no slice of a test volume is trained on;
- ``masks/<name>/<name>_z<k>.png``: the tumour mask of every slice on the slice PNG's grid (8-bit, 1 =
  tumour), and ``seg_fold_a.csv`` / ``seg_fold_b.csv`` (``image,label,split``: every slice of the fold's
  training volumes, then of its test volumes) for the ``segmentation`` protocol, with the folds of
  ``folds.json``; ``volumes_fold_a.csv`` / ``volumes_fold_b.csv`` (``image,label,split``: the NIfTI volumes and
  masks of the same folds) for the 3D ``segmentation`` protocol with ``medical.ct``;
- ``crops/<name>/{tumour,no_tumour}/<name>_z<k>_y<r>_x<c>.png``: 32 px crops of the slice PNGs at native
  resolution labelled by their centre 2 x 2 pixels, ``pretrain/<name>/``: unlabelled 32 px crops of every
  slice, ``crops.csv``, ``crops_summary.json`` (:mod:`radiomics_crops`).

Run: ``python benchmarks/real/prepare_radiomics.py [--out DIR] [--source pyradiomics-source-folder-or-archive]``
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch import PreparationError, fetch, preparation_main  # noqa: E402
from radiomics_crops import write_crops  # noqa: E402

REQUIREMENT = "pyradiomics==3.1.0"
VOLUMES = {"brain1": "MR", "brain2": "MR", "breast1": "MR", "lung1": "CT", "lung2": "CT"}
PINS = {
    "data/brain1_image.nrrd": "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
    "data/brain1_label.nrrd": "ae6d8e6b84f7e99d68c210ee2fa6aaaefa0b2df0a84f55efca4feebe2b216059",
    "data/brain2_image.nrrd": "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e",
    "data/brain2_label.nrrd": "15189c024936ecc337649b9a10c475117c7c40df0d53c22163f9a2023ed741a5",
    "data/breast1_image.nrrd": "0e8b668f3ce9b9aacff20dc3c216866f43069ff96b269fb45b76f5e205a431e2",
    "data/breast1_label.nrrd": "07085bb0e36a956de5bd1c1c1b5f8bdf2ce80952125b13cbd352412c108c8950",
    "data/lung1_image.nrrd": "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
    "data/lung1_label.nrrd": "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a",
    "data/lung2_image.nrrd": "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
    "data/lung2_label.nrrd": "cef52738dc51aab69a48fe30639da956d2b911b1c2920439c091fab84727657a",
}
FOLDS = {"A": ["brain2", "lung2"], "B": ["brain1", "lung1"]}
CT_WINDOW = (-1000.0, 400.0)
MR_PERCENTILES = (1.0, 99.5)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_nrrd(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data in (x, y, z) index order, 4x4 RAS affine) of a 3D NRRD in LPS or RAS space."""
    try:
        import nrrd
    except ImportError:
        raise PreparationError("reading NRRD needs pynrrd: pip install -e '.[benchmarks]'") from None
    data, header = nrrd.read(str(path), index_order="F")
    space = str(header.get("space", "")).lower()
    directions = np.asarray(header.get("space directions"), dtype=np.float64)
    if data.ndim != 3 or directions.shape != (3, 3) or "space origin" not in header:
        raise PreparationError(f"{path}: not a 3D NRRD with space directions and origin")
    affine = np.eye(4)
    affine[:3, :3] = directions.T  # column i: the step of index axis i
    affine[:3, 3] = np.asarray(header["space origin"], dtype=np.float64)
    if space in ("left-posterior-superior", "lps"):
        affine = LPS_TO_RAS @ affine
    elif space not in ("right-anterior-superior", "ras"):
        raise PreparationError(f"{path}: space {space!r} is neither LPS nor RAS")
    return data, affine


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))


def display(volume: np.ndarray, modality: str) -> np.ndarray:
    """uint8 as a viewer shows it: a CT window in HU, or the MR volume's percentile range."""
    low, high = CT_WINDOW if modality == "CT" else tuple(np.percentile(volume, MR_PERCENTILES))
    scaled = (volume.astype(np.float64) - low) / max(high - low, 1e-6)
    return np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def prepare(out: Path, source: str | None = None, pins: dict[str, str] = PINS) -> dict:
    files = fetch(REQUIREMENT, pins, out, source, sdist=True)
    volumes_dir, slices_dir = out / "volumes", out / "slices"
    volumes_dir.mkdir(parents=True, exist_ok=True)
    rows, counts, planes = [], {}, {}
    for name, modality in VOLUMES.items():
        image, affine = read_nrrd(files[f"data/{name}_image.nrrd"])
        label, label_affine = read_nrrd(files[f"data/{name}_label.nrrd"])
        if image.shape != label.shape or not np.allclose(affine, label_affine, atol=1e-4):
            raise PreparationError(f"{name}: image and label grids differ ({image.shape} vs {label.shape})")
        values = set(np.unique(label).tolist())
        if not values <= {0, 1}:
            raise PreparationError(f"{name}_label.nrrd: label values {sorted(values)}, expected 0 and 1")
        write_nifti(volumes_dir / f"{name}_image.nii.gz", image.astype(np.int16), affine)
        write_nifti(volumes_dir / f"{name}_label.nii.gz", label.astype(np.uint8), affine)
        shown = display(image, modality)
        planes[name] = []
        counts[name] = {"modality": modality, "shape": list(image.shape),
                        "spacing_mm": [round(float(v), 6) for v in np.linalg.norm(affine[:3, :3], axis=0)],
                        "tumour": 0, "no_tumour": 0}
        for z in range(image.shape[2]):
            voxels = int((label[:, :, z] > 0).sum())
            cls = "tumour" if voxels else "no_tumour"
            folder = slices_dir / name / cls
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}_z{z:03d}.png"
            # (x, y) index order -> rows = y (posterior-ward), columns = x, as an axial viewer shows it
            Image.fromarray(np.ascontiguousarray(shown[:, :, z].T)).save(path)
            mask_path = out / "masks" / name / f"{name}_z{z:03d}.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray((label[:, :, z] > 0).T.astype(np.uint8))).save(mask_path)
            planes[name].append((np.ascontiguousarray(shown[:, :, z].T), np.ascontiguousarray(label[:, :, z].T > 0)))
            rows.append({"path": path.relative_to(out).as_posix(), "labels": cls, "volume": name, "z": z,
                         "tumour_voxels": voxels})
            counts[name][cls] += 1
    with open(out / "slices.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    folds = {fold: {"test": test, "train": [v for v in VOLUMES if v not in test]} for fold, test in FOLDS.items()}
    summary = {"source": REQUIREMENT, "volumes": counts, "folds": folds,
               "ct_window_hu": list(CT_WINDOW), "mr_percentiles": list(MR_PERCENTILES)}
    (out / "folds.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_segmentation_manifests(out, rows, folds)
    return {**summary, "crops": write_crops(out, planes, folds)}


def write_segmentation_manifests(out: Path, rows: list[dict], folds: dict[str, dict[str, list[str]]]) -> None:
    """``seg_fold_<a|b>.csv``: slice PNG, its mask PNG and the fold's split of its volume;
    ``volumes_fold_<a|b>.csv``: the same folds as whole NIfTI volumes and masks (3D segmentation)."""
    for fold, split in folds.items():
        with open(out / f"seg_fold_{fold.lower()}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", "label", "split"])
            writer.writeheader()
            for part in ("train", "test"):
                writer.writerows({"image": r["path"], "label": f"masks/{r['volume']}/{r['volume']}_z{r['z']:03d}.png",
                                  "split": part} for r in rows if r["volume"] in split[part])
        with open(out / f"volumes_fold_{fold.lower()}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", "label", "split"])
            writer.writeheader()
            writer.writerows({"image": f"volumes/{name}_image.nii.gz", "label": f"volumes/{name}_label.nii.gz",
                              "split": part} for part in ("train", "test") for name in split[part])


def main(argv: list[str] | None = None) -> int:
    return preparation_main(__doc__.splitlines()[0], "data/real/radiomics", "an unpacked pyradiomics 3.1.0 source folder or its archive", prepare, argv)


if __name__ == "__main__":
    sys.exit(main())
