"""Crops of the radiomics slices at their native resolution: is a crop centred on tumour?

The medical counterpart of the microscopy crop task (``prepare_nuclei.py``). Whole slices shrunk to 64 px
leave a tumour a few dozen pixels; a crop of ``CROP`` px cut from the displayed slice PNG keeps every pixel.

- Labelled crops (``crops/<volume>/<label>/<volume>_z<k>_y<r>_x<c>.png``, ``r``, ``c`` = top-left row and
  column in the slice): from every slice that holds tumour, ``CROP`` x ``CROP`` crops whose centre 2 x 2
  pixels are all tumour (``tumour``) on a grid of the volume's tumour stride (a quarter of its median tumour
  diameter, at least 2 px: tumours span 5 to 66 px across the volumes, one stride for all would give one
  volume most of the positives), and crops whose centre 2 x 2 pixels are all non-tumour (``no_tumour``) on a
  grid of ``BACKGROUND_STRIDE`` px (non-overlapping); crops with a mixed centre are left out.
- Pretraining archive (``pretrain/<volume>/<volume>_z<k>_y<r>_x<c>.png``, unlabelled): ``CROP`` px crops on
  a ``PRETRAIN_STRIDE`` px grid (16 px gaps: about 9,000 files where a 32 px grid gives 20,000) of every
  slice of every volume; a study pretrains on its fold's training volumes only. The encoder sees the scale
  of the labelled crops (``medical.xray`` would shrink a whole slice to ``img_size``).
- Body rule, for both: a crop with fewer than half of its pixels above 5 % of the display range (13 of 255;
  outside air of CT below -930 HU, MR background below its 1st percentile) is left out.
- ``crop_groups.csv`` (``path,slice``): the slice of each crop; crops of one slice are not independent, so
  the study's bootstrap resamples slices (``bootstrap_groups``).
- ``crops.csv`` (``path,labels,volume,z,y,x,tumour_pixels,fold_a,fold_b``; the fold columns say train or
  test by the volume folds of ``folds.json``), ``crops_summary.json`` (per volume: tumour diameters, stride,
  counts per label, crops left out).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mae_domains.evaluation.sample_groups import write_groups

CROP = 32
BACKGROUND_STRIDE = 32
PRETRAIN_STRIDE = 48
BODY_LEVEL = round(0.05 * 255)  # 13: 5 % of the display range
BODY_FRACTION = 0.5
LABELS = ("tumour", "no_tumour")


def equivalent_diameters(masks: list[np.ndarray]) -> list[float]:
    """Diameter (px) of the disc with each tumour slice's tumour area."""
    return [float(2 * np.sqrt(m.sum() / np.pi)) for m in masks if m.any()]


def tumour_stride(diameters: list[float]) -> int:
    """A quarter of the median tumour diameter, at least 2 px (the centre is 2 x 2)."""
    return max(2, int(round(float(np.median(diameters)) / 4))) if diameters else BACKGROUND_STRIDE


def grid(size: int, stride: int) -> range:
    """Top-left offsets of ``CROP`` px crops that fit in ``size`` px."""
    return range(0, size - CROP + 1, stride)


def centre_of(mask: np.ndarray, r: int, c: int) -> np.ndarray:
    half = CROP // 2
    return mask[r + half - 1:r + half + 1, c + half - 1:c + half + 1]


def inside_body(shown: np.ndarray, r: int, c: int) -> bool:
    crop = shown[r:r + CROP, c:c + CROP]
    return float((crop > BODY_LEVEL).mean()) >= BODY_FRACTION


def save_crop(shown: np.ndarray, r: int, c: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(shown[r:r + CROP, c:c + CROP])).save(path)


def write_crops(out: Path, slices: dict[str, list[tuple[np.ndarray, np.ndarray]]],
                folds: dict[str, dict[str, list[str]]]) -> dict:
    """``slices``: volume -> per z the displayed slice (uint8, rows x columns as in its PNG) and its tumour
    mask (bool, same grid). Writes the labelled crops, the pretraining crops, ``crops.csv`` and
    ``crops_summary.json``; returns the summary."""
    rows, volumes = [], {}
    for volume, planes in slices.items():
        diameters = equivalent_diameters([mask for _, mask in planes])
        stride = tumour_stride(diameters)
        counts = {"tumour": 0, "no_tumour": 0, "mixed_centre": 0, "outside_body": 0, "pretrain": 0}
        for z, (shown, mask) in enumerate(planes):
            height, width = shown.shape
            for r in grid(height, PRETRAIN_STRIDE):
                for c in grid(width, PRETRAIN_STRIDE):
                    if inside_body(shown, r, c):
                        save_crop(shown, r, c, out / "pretrain" / volume / f"{volume}_z{z:03d}_y{r:03d}_x{c:03d}.png")
                        counts["pretrain"] += 1
            if not mask.any():
                continue
            wanted: dict[tuple[int, int], set[str]] = {}
            for label, step in (("tumour", stride), ("no_tumour", BACKGROUND_STRIDE)):
                for r in grid(height, step):
                    for c in grid(width, step):
                        wanted.setdefault((r, c), set()).add(label)
            for (r, c), labels in sorted(wanted.items()):
                centre = centre_of(mask, r, c)
                label = "tumour" if centre.all() else "no_tumour" if not centre.any() else None
                if label is None:
                    counts["mixed_centre"] += 1
                    continue
                if label not in labels:
                    continue  # a point of the other class's grid
                if not inside_body(shown, r, c):
                    counts["outside_body"] += 1
                    continue
                path = out / "crops" / volume / label / f"{volume}_z{z:03d}_y{r:03d}_x{c:03d}.png"
                save_crop(shown, r, c, path)
                counts[label] += 1
                rows.append({"path": path.relative_to(out).as_posix(), "labels": label, "volume": volume, "z": z,
                             "y": r, "x": c, "tumour_pixels": int(mask[r:r + CROP, c:c + CROP].sum()),
                             **{f"fold_{fold.lower()}": "test" if volume in split["test"] else "train"
                                for fold, split in folds.items()}})
        volumes[volume] = {"tumour_diameter_px": {"min": round(min(diameters), 1), "median":
                                                  round(float(np.median(diameters)), 1),
                                                  "max": round(max(diameters), 1)} if diameters else None,
                           "tumour_stride_px": stride, **counts}
    with open(out / "crops.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "labels", "volume", "z", "y", "x", "tumour_pixels",
                                                *[f"fold_{f.lower()}" for f in folds]])
        writer.writeheader()
        writer.writerows(rows)
    write_groups(out / "crop_groups.csv", "slice", ((r["path"], f"{r['volume']}_z{r['z']:03d}") for r in rows))
    split_counts = {fold: {part: {label: sum(1 for r in rows if r["labels"] == label and r["volume"] in vols)
                                  for label in LABELS} for part, vols in split.items()}
                    for fold, split in folds.items()}
    summary = {"crop_px": CROP, "background_stride_px": BACKGROUND_STRIDE, "pretrain_stride_px": PRETRAIN_STRIDE,
               "body_rule": f"at least {BODY_FRACTION:.0%} of the pixels above {BODY_LEVEL}/255",
               "volumes": volumes, "folds": split_counts}
    (out / "crops_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
