"""How much of a ``norm_pix_loss`` target is unpredictable noise? Patch statistics of a 2D archive.

MAE's ``norm_pix_loss`` normalizes every target patch to zero mean and unit variance. On a near-constant
patch (dark background around an MR head, air outside a CT body) the unit-variance target is quantization
and acquisition noise blown up to full scale: no encoder can predict it, and its loss stays near 1 (a mean
predictor scores 1 on every patch). This script reads images through an adapter's evaluation transform (the
pixels the model sees, in [0, 1] before normalization) and prints, per patch size: the share of patches whose
standard deviation is under 1/255, 2/255 and 4/255, the share that are dark (mean < 0.05), and the floor those
near-constant patches put under the mean loss (their share x 1).

Run: ``python benchmarks/real/patch_statistics.py data/real/radiomics/slices --adapter medical.xray --size 64 --patch 8 16``
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

THRESHOLDS = (1 / 255, 2 / 255, 4 / 255)


def patch_std(images: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """(std with ddof=1, mean) of every ``patch`` x ``patch`` patch of ``(N, H, W)`` images."""
    n, h, w = images.shape
    tiles = images[:, :h - h % patch, :w - w % patch].reshape(n, h // patch, patch, w // patch, patch)
    tiles = tiles.transpose(0, 1, 3, 2, 4).reshape(-1, patch * patch)
    return tiles.std(axis=1, ddof=1), tiles.mean(axis=1)


def load_images(sources: list[str], adapter_name: str, size: int) -> np.ndarray:
    from mae_domains.config import config_from_dict
    from mae_domains.registry import discover_refs, get_adapter

    config = config_from_dict({"adapter": adapter_name, "model": {"img_size": size, "patch_size": 8, "in_chans": 1},
                               "data": {"sources": sources}})
    adapter = get_adapter(adapter_name, config.data.options).bind(config)
    refs = discover_refs(adapter, sources)
    images = [adapter.transform(adapter.read(ref), 0, False, None).image[0] for ref in refs]
    return np.stack(images).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--adapter", default="medical.xray")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--patch", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args(argv)
    images = load_images(args.sources, args.adapter, args.size)
    print(f"{len(images)} images at {args.size} px through {args.adapter}'s evaluation transform")
    print("| patch | patches | std < 1/255 | std < 2/255 | std < 4/255 | dark (mean < 0.05) |")
    print("|---|---|---|---|---|---|")
    for patch in args.patch:
        std, mean = patch_std(images, patch)
        shares = " | ".join(f"{(std < t).mean():.1%}" for t in THRESHOLDS)
        print(f"| {patch} | {len(std)} | {shares} | {(mean < 0.05).mean():.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
