"""How far does a chip's mean spectrum go? kNN and the linear probe on per-band chip means, Landsat study.

The remote-sensing study's random-init encoder already reaches 0.87 balanced accuracy with kNN: is the
land-cover task spectral, so that any projection of the pixels separates it and pretraining has little left
to add? This runs the study's own ``knn`` and ``linear_probe`` protocols (its settings from
``remote_sensing.yaml``, the same label fractions, seeds and class balancing) on one 6-value feature per
chip: the mean of each band after standardizing with the training chips' band statistics. Intervals resample
the 2 x 2-chip blocks of ``chip_groups.csv``, as the study's headline does.

Run: ``python benchmarks/real/spectral_baseline.py data/real/landsat``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import yaml

from mae_domains.evaluation.loading import stratified_subset
from mae_domains.evaluation.runner import run_protocol
from mae_domains.evaluation.sample_groups import read_groups

STUDY = Path(__file__).resolve().parent / "remote_sensing.yaml"
BATCH = 64


def read_split(root: Path, split: str) -> tuple[np.ndarray, list[str], list[str]]:
    """(chips (N, bands, H, W) float32, labels, paths) of one split of ``labels.csv``, sorted by path."""
    with open(root / "labels.csv", newline="") as handle:
        rows = sorted((r for r in csv.DictReader(handle) if r["split"] == split), key=lambda r: r["path"])
    chips = []
    for row in rows:
        with rasterio.open(root / row["path"]) as source:
            chips.append(source.read().astype(np.float32))
    return np.stack(chips), [r["labels"] for r in rows], [r["path"] for r in rows]


def batches(chips: np.ndarray, labels: np.ndarray, ids: list[str]) -> list[dict[str, Any]]:
    return [{"image": torch.from_numpy(chips[i:i + BATCH]), "label": torch.from_numpy(labels[i:i + BATCH]),
             "sample_id": ids[i:i + BATCH]} for i in range(0, len(chips), BATCH)]


class MeanSpectrum(torch.nn.Module):
    """Standardized per-band mean of a chip: ``(B, bands, H, W) -> (B, bands)``."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32)[:, None, None])

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return ((chips - self.mean) / self.std).mean(dim=(2, 3))


def study_settings(protocol: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    study = yaml.safe_load(STUDY.read_text())
    entry = next(p for p in study["evaluate"]["protocols"] if p["name"] == protocol)
    return {**{k: v for k, v in entry.items() if k not in ("name", "pool")}, **(overrides or {})}


def spectral_baseline(root: Path, overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Balanced accuracy of kNN and the linear probe on mean spectra, per label fraction and protocol."""
    study = yaml.safe_load(STUDY.read_text())["evaluate"]
    train_chips, train_names, _ = read_split(root, "train")
    test_chips, test_names, test_ids = read_split(root, "test")
    classes = sorted(set(train_names))
    train_labels = np.array([classes.index(n) for n in train_names])
    test_labels = np.array([classes.index(n) for n in test_names])
    embed = MeanSpectrum(train_chips.mean(axis=(0, 2, 3)), train_chips.std(axis=(0, 2, 3)))
    groups = read_groups(root / "chip_groups.csv")
    test = batches(test_chips, test_labels, test_ids)
    out = []
    for fraction in study["label_fractions"]:
        keep = stratified_subset(train_names, fraction, 0, "landcover")
        train = batches(train_chips[keep], train_labels[keep], [str(i) for i in keep])
        for protocol in ("knn", "linear_probe"):
            seeds = study["seeds"] if protocol == "linear_probe" else study["seeds"][:1]
            values, lows, highs = [], [], []
            for seed in seeds:
                records = run_protocol(protocol, train, test, embed_fn=embed, class_names=classes, seed=seed,
                                       device="cpu", settings=study_settings(protocol, (overrides or {}).get(protocol)),
                                       test_groups=groups.of)
                record = next(r for r in records if r.metric == "balanced_accuracy" and r.class_name is None)
                values.append(record.value)
                lows.append(record.ci_low)
                highs.append(record.ci_high)
            out.append({"protocol": protocol, "fraction": fraction, "n_train": len(keep), "n_test": len(test_ids),
                        "balanced_accuracy": round(float(np.mean(values)), 3),
                        "low": round(min(lows), 3), "high": round(max(highs), 3), "seeds": len(seeds)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder prepare_landsat.py wrote")
    args = parser.parse_args(argv)
    for name in ("labels.csv", "chip_groups.csv"):
        if not (args.root / name).is_file():
            print(f"error: {args.root / name}: not found; run prepare_landsat.py first", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    for row in spectral_baseline(args.root):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
