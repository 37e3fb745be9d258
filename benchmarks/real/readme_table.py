"""Print the README's "Does pretraining help?" table from the studies' ``headline.json`` files.

Run: ``python benchmarks/real/readme_table.py runs/real/remote_sensing-cpu runs/real/microscopy-cpu ...``
Each row: the final checkpoint against random init and raw pixels on balanced accuracy, at 10 % and 100 % of
the training labels (classification), or on the segmentation metric (mIoU, mean Dice) with all labels: the
side-by-side intervals, the paired differences (same test resamples; classification only) and the command
that reproduces it. Where the study resampled whole groups of test samples (``bootstrap_groups``), the task
says which (e.g. ``landcover; blocks resampled``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_report import base_of, cell, fraction_of  # noqa: E402

PROTOCOLS = ("knn", "linear_probe", "finetune", "segmentation", "scene_segmentation")
METRICS = {"segmentation": "dice_mean", "scene_segmentation": "miou"}  # others: balanced accuracy


def paired(entry: dict | None) -> str:
    """A paired difference as ``+0.047 [+0.012, +0.083]``; ``-`` where none was computed."""
    if not entry:
        return "-"
    return f"{entry['difference']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"


def rows(out: Path) -> list[str]:
    headline = json.loads((out / "headline.json").read_text())
    field, budget = headline["field"], headline["budget"]
    study = f"benchmarks/real/{field}.yaml"
    command = f"`python benchmarks/real/study.py {study} --budget {budget}`"
    lines = []
    for protocol in PROTOCOLS:
        for row in headline["rows"]:
            metric = METRICS.get(protocol, "balanced_accuracy")
            if row["protocol"] != protocol or row["metric"] != metric or fraction_of(row["dataset"]) not in (0.1, 1.0):
                continue
            labels = f"{fraction_of(row['dataset']) * 100:g} %"
            unit = row.get("resampled", "sample")
            task = base_of(row["dataset"]) + ("" if unit == "sample" else f"; {unit}s resampled")
            lines.append(f"| {field} ({task}) | {protocol} | {labels} | {metric} | {cell(row['mae'])} | "
                         f"{cell(row['random'])} | {cell(row['pixels'])} | {row['vs_random']} / {row['vs_pixels']} | "
                         f"{paired(row.get('paired_random'))} | {paired(row.get('paired_pixels'))} | {command} |")
    return lines


def main(argv: list[str]) -> int:
    print("| field (task) | protocol | labels | metric | MAE | random init | raw pixels | MAE vs random / pixels | "
          "MAE - random, paired | MAE - pixels, paired | reproduce |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in argv:
        print("\n".join(rows(Path(folder))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
