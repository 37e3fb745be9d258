"""Can brightness alone tell a tumour crop from a non-tumour crop? Centre brightness per volume of the crop set.

For every volume of ``crops.csv`` (``radiomics_crops.py``): the mean of each crop's centre 8 x 8 pixels (0-255,
as displayed), its median over the ``tumour`` crops with their 10th and 90th percentiles, the median over the
``no_tumour`` crops, and the share of ``no_tumour`` crops whose centre brightness lies inside the tumour crops'
10-90 % range (1: brightness does not separate them; 0: it does).

Run: ``python benchmarks/real/crop_contrast.py data/real/radiomics``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CENTRE = 8


def centre_brightness(path: Path) -> float:
    crop = np.asarray(Image.open(path), dtype=np.float64)
    top, left = (crop.shape[0] - CENTRE) // 2, (crop.shape[1] - CENTRE) // 2
    return float(crop[top:top + CENTRE, left:left + CENTRE].mean())


def contrast(root: Path) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, list[float]]] = {}
    with open(root / "crops.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            values.setdefault(row["volume"], {"tumour": [], "no_tumour": []})[row["labels"]].append(
                centre_brightness(root / row["path"]))
    result = {}
    for volume, by_label in values.items():
        tumour, other = np.asarray(by_label["tumour"]), np.asarray(by_label["no_tumour"])
        if not tumour.size or not other.size:
            continue
        low, high = np.percentile(tumour, [10, 90])
        result[volume] = {"tumour_median": round(float(np.median(tumour)), 1), "tumour_p10": round(float(low), 1),
                          "tumour_p90": round(float(high), 1), "no_tumour_median": round(float(np.median(other)), 1),
                          "no_tumour_inside_tumour_range": round(float(((other >= low) & (other <= high)).mean()), 3)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder prepare_radiomics.py wrote (holds crops.csv)")
    args = parser.parse_args(argv)
    if not (args.root / "crops.csv").is_file():
        print(f"error: {args.root / 'crops.csv'}: not found; run prepare_radiomics.py first", file=sys.stderr)
        return 2
    print(json.dumps(contrast(args.root), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
