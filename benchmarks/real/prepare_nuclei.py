"""Prepare the microscopy set: a fluorescence nuclei image with hand-made instance masks (stardist's sample data).

Source: ``pip download --no-deps stardist==0.9.2`` (BSD-3-Clause package) ships ``stardist/data/images/
img2d.tif`` (512 x 512, uint16, a nuclear stain) and ``mask2d.tif`` (its instance labels, 0 = background),
an image of the 2018 Data Science Bowl training set (BBBC038, CC0), both pinned by sha256 below.

Output (``--out``, default ``data/real/nuclei``):

- ``fields/{train,test}.ome.tif``: the left (columns 0-239) and right (columns 272-511) parts of the image as
  OME-TIFF (tifffile, channel ``DNA``), 32 columns in between left out so that no crop of one split overlaps
  the other; ``fields/{train,test}_mask.tif``: the instance labels of each part (uint16); the training part
  is the unlabelled pretraining archive;
- ``crops/{train,test}/{nucleus,background}/y<row>_x<col>.ome.tif``: 32 x 32 px crops centred on a 16 px grid
  inside each part, labelled by the 2 x 2 centre pixels of the mask (all inside a nucleus, or all outside;
  mixed centres on a boundary are left out and counted); ``labels.csv`` (``path,labels,split,y,x``),
  ``crops_{train,test}.csv`` (the microscopy adapter's manifest: ``path,label,y,x``), ``summary.json``;
  ``crop_groups.csv`` (``path,tile``): the segmentation tile that holds each crop's centre (neighbouring
  crops overlap, so the study's bootstrap resamples tiles: ``bootstrap_groups``);
- ``seg/{train,test}/y<row>_x<col>.ome.tif`` with ``..._mask.tif``: each part cut into 64 x 48 px tiles
  (rows x columns; 8 x 5 tiles cover a 512 x 240 part exactly, no overlap) with their instance labels
  (uint16, as in ``mask2d.tif``), for the ``segmentation`` protocol (nuclei = id > 0); ``seg_manifest.csv``
  (``image,label,split``, the same left/right split) and ``seg_summary.json``.

The crop task (is the crop centred on a nucleus?) is a sampled form of foreground segmentation of real masks;
the tiles give the segmentation itself (Dice / IoU of the nucleus pixels).

Run: ``python benchmarks/real/prepare_nuclei.py [--out DIR] [--source stardist-0.9.2-...whl]``
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import tifffile

from mae_domains.evaluation.sample_groups import write_groups

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch import PreparationError, fetch, preparation_main  # noqa: E402

REQUIREMENT = "stardist==0.9.2"
IMAGE, MASK = "stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif"
PINS = {
    IMAGE: "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    MASK: "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
}
TRAIN_COLUMNS = (0, 240)
TEST_COLUMNS = (272, 512)
CROP = 32
STRIDE = 16
CHANNEL = "DNA"
SEG_TILE = (64, 48)  # rows, columns: a multiple of 16 px that cuts each 512 x 240 part exactly


def write_ome(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image[None], ome=True, photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": [CHANNEL]}})


def crop_label(mask: np.ndarray, y: int, x: int) -> str | None:
    """``nucleus`` / ``background`` from the 2 x 2 centre pixels of the crop at (y, x); None when mixed."""
    centre = mask[y + CROP // 2 - 1:y + CROP // 2 + 1, x + CROP // 2 - 1:x + CROP // 2 + 1] > 0
    return "nucleus" if centre.all() else "background" if not centre.any() else None


def crop_tile(split: str, y: int, x: int) -> str:
    """The segmentation tile (``SEG_TILE``, in the part's coordinates) that holds the centre of the crop at
    (y, x): neighbouring crops overlap, so the study's bootstrap resamples tiles, not crops."""
    top, left = (y + CROP // 2) // SEG_TILE[0] * SEG_TILE[0], (x + CROP // 2) // SEG_TILE[1] * SEG_TILE[1]
    return f"{split}_y{top:03d}_x{left:03d}"


def prepare(out: Path, source: str | None = None, pins: dict[str, str] = PINS) -> dict:
    files = fetch(REQUIREMENT, pins, out, source)
    image, mask = tifffile.imread(files[IMAGE]), tifffile.imread(files[MASK])
    if image.ndim != 2 or image.shape != mask.shape:
        raise PreparationError(f"{files[IMAGE]}: expected one 2D image with a mask of the same shape, got "
                               f"{image.shape} and {mask.shape}")
    rows, counts, mixed = [], Counter(), Counter()
    for split, (left, right) in (("train", TRAIN_COLUMNS), ("test", TEST_COLUMNS)):
        part, labels = image[:, left:right], mask[:, left:right]
        write_ome(out / "fields" / f"{split}.ome.tif", part)
        tifffile.imwrite(out / "fields" / f"{split}_mask.tif", labels.astype(np.uint16))
        for y in range(0, part.shape[0] - CROP + 1, STRIDE):
            for x in range(0, part.shape[1] - CROP + 1, STRIDE):
                label = crop_label(labels, y, x)
                if label is None:
                    mixed[split] += 1
                    continue
                path = out / "crops" / split / label / f"y{y:03d}_x{left + x:03d}.ome.tif"
                write_ome(path, part[y:y + CROP, x:x + CROP])
                rows.append({"path": path.relative_to(out).as_posix(), "labels": label, "split": split,
                             "y": y, "x": left + x, "tile": crop_tile(split, y, x)})
                counts[(split, label)] += 1
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "labels", "split", "y", "x"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_groups(out / "crop_groups.csv", "tile", ((r["path"], r["tile"]) for r in rows))
    for split in ("train", "test"):  # the microscopy adapter's manifest (path, label; relative to the CSV)
        with open(out / f"crops_{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "label", "y", "x"])
            writer.writeheader()
            writer.writerows({"path": r["path"], "label": r["labels"], "y": r["y"], "x": r["x"]}
                             for r in rows if r["split"] == split)
    summary = {"source": REQUIREMENT, "crop_px": CROP, "stride_px": STRIDE,
               "train_columns": list(TRAIN_COLUMNS), "test_columns": list(TEST_COLUMNS),
               "nuclei": {s: int(len(np.unique(mask[:, a:b])) - 1) for s, (a, b) in
                          (("train", TRAIN_COLUMNS), ("test", TEST_COLUMNS))},
               "crops": {s: {c: counts[(s, c)] for c in ("nucleus", "background")} for s in ("train", "test")},
               "boundary_crops_left_out": dict(mixed)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["segmentation"] = write_segmentation_tiles(out, image, mask)
    return summary


def write_segmentation_tiles(out: Path, image: np.ndarray, mask: np.ndarray) -> dict:
    """Image tiles (OME-TIFF) and their instance-mask tiles of each split's part, ``seg_manifest.csv`` and
    ``seg_summary.json``; a tile lies inside one part, so no test pixel is in a training tile."""
    rows, counts = [], {}
    height, width = SEG_TILE
    for split, (left, right) in (("train", TRAIN_COLUMNS), ("test", TEST_COLUMNS)):
        if image.shape[0] % height or (right - left) % width:
            raise PreparationError(f"a {image.shape[0]} x {right - left} part does not cut into {height} x {width} tiles")
        counts[split] = {"tiles": 0, "tiles_with_nuclei": 0, "nucleus_pixels": 0, "pixels": 0}
        for y in range(0, image.shape[0], height):
            for x in range(left, right, width):
                tile, labels = image[y:y + height, x:x + width], mask[y:y + height, x:x + width].astype(np.uint16)
                path = out / "seg" / split / f"y{y:03d}_x{x:03d}.ome.tif"
                write_ome(path, tile)
                tifffile.imwrite(path.with_name(f"y{y:03d}_x{x:03d}_mask.tif"), labels)
                rows.append({"image": path.relative_to(out).as_posix(),
                             "label": path.with_name(f"y{y:03d}_x{x:03d}_mask.tif").relative_to(out).as_posix(),
                             "split": split})
                c = counts[split]
                c["tiles"] += 1
                c["tiles_with_nuclei"] += int(labels.any())
                c["nucleus_pixels"] += int((labels > 0).sum())
                c["pixels"] += int(labels.size)
    with open(out / "seg_manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {"tile_px": list(SEG_TILE), "mask": "instance ids (0 = background)", "splits": counts}
    (out / "seg_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    return preparation_main(__doc__.splitlines()[0], "data/real/nuclei", "an already downloaded stardist wheel or unpacked folder", prepare, argv)


if __name__ == "__main__":
    sys.exit(main())
