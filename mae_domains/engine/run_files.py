"""Files of a run directory: metrics.csv and skipped.csv (append-only, one row per event).

Both are UTF-8; file names that are not valid UTF-8 (bytes a file system allows) are written back as
their original bytes (``surrogateescape``), so a row names the file exactly and writing never fails on them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from mae_domains.runs.folder import write_atomic

METRIC_FIELDS = ["step", "epoch", "loss", "lr", "data_time", "step_time", "samples_per_s",
                 "recon_psnr", "pred_std_ratio", "grad_norm", "data_share", "knn_top1"]  # see engine.health
SKIP_FIELDS = ["step", "rank", "source", "reason"]
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


class CsvLog:
    """A CSV file with a header, appended row by row (flushed, so a crash loses nothing)."""

    def __init__(self, path: Path, fields: Sequence[str], truncate_after_step: int | None = None) -> None:
        self.path = path
        self.fields = list(fields)
        if truncate_after_step is not None and path.exists():
            self._drop_rows_after(truncate_after_step)
        if not path.exists():
            with open(path, "w", newline="", **ENCODING) as fh:
                csv.writer(fh).writerow(self.fields)

    def _drop_rows_after(self, step: int) -> None:
        """On resume, rows logged after the checkpoint's step are replayed, so remove them."""
        with open(self.path, newline="", **ENCODING) as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]

        def write(path: Path) -> None:
            with open(path, "w", newline="", **ENCODING) as fh:
                writer = csv.DictWriter(fh, self.fields)
                writer.writeheader()
                writer.writerows(rows)

        write_atomic(self.path, write)  # a kill while rewriting keeps the old rows

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="", **ENCODING) as fh:
            csv.DictWriter(fh, self.fields).writerow({k: row.get(k, "") for k in self.fields})


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows as dicts; non-UTF-8 file names come back as the ``str`` that ``os.fsdecode`` gives."""
    with open(path, newline="", **ENCODING) as fh:
        return list(csv.DictReader(fh))
