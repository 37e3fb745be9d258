"""Finished runs of a benchmark folder, so that running a benchmark again (after an interruption, or with
entries added) reuses what is done and computes only the rest.

``run_index.json`` beside ``results.jsonl`` maps a run (checkpoint, dataset, protocol entry, seed) to what
defines its result: the checkpoint's and the dataset's identities (their content fingerprints) and the
protocol's resolved settings (``config_hash``). A run is reused only when all three match; its records are
taken from the previous ``results.jsonl``. The index is rewritten atomically with the records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mae_domains.evaluation.records import ResultRecord, read_jsonl

INDEX_NAME = "run_index.json"


def run_key(checkpoint: str, dataset: str, protocol_entry: str, seed: int) -> str:
    return f"{checkpoint}|{dataset}|{protocol_entry}|{int(seed)}"


class RunIndex:
    """The finished runs of ``out_dir`` and their records (empty when ``resume`` is off or nothing ran)."""

    def __init__(self, out_dir: Path, resume: bool = True) -> None:
        self.path = out_dir / INDEX_NAME
        self.entries: dict[str, dict[str, Any]] = {}
        self.records: dict[str, list[ResultRecord]] = {}
        results = out_dir / "results.jsonl"
        if not (resume and self.path.is_file() and results.is_file()):
            return
        try:
            previous = json.loads(self.path.read_text())
            old_records = read_jsonl(results)
        except (OSError, ValueError):
            return  # an unreadable index or result file: everything runs again
        for key, entry in previous.items():
            rows = [r for r in old_records if run_key(r.checkpoint, r.dataset, entry.get("entry", ""), r.seed) == key
                    and r.config_hash == entry.get("config_hash")]
            if rows:
                self.entries[key], self.records[key] = entry, rows

    @staticmethod
    def identity(entry: str, checkpoint_id: str, dataset_id: str, config_hash: str) -> dict[str, Any]:
        return {"entry": entry, "checkpoint_id": checkpoint_id, "dataset_id": dataset_id, "config_hash": config_hash}

    def finished(self, key: str, identity: dict[str, Any]) -> list[ResultRecord] | None:
        """The records of a finished run with this identity, else None."""
        return self.records.get(key) if self.entries.get(key) == identity else None

    def save(self, done: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
