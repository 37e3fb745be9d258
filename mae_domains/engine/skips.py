"""Skipped-sample accounting: what the run skipped, counted in samples (chips, frames), not files, and
the stop when more than ``data.max_bad_fraction`` of the archive is bad or no good draw is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from mae_domains.data.dataset import SkippedDraw, exhaustion_message
from mae_domains.engine.errors import TrainingStopped


def sample_key(entry: Sequence[Any]) -> str:
    """The skipped sample: ``#<archive index>``, or its source for a record without an index."""
    index = getattr(entry, "index", None)
    return f"#{index}" if isinstance(index, int) and index >= 0 else str(entry[0])


class SkipTracker:
    """Distinct bad samples of a run and the reasons' sources (kept in its checkpoint across resumes).

    ``files`` names each sample's file (several chips or frames share one), for the message only."""

    def __init__(self, files: Sequence[str], max_bad_fraction: float, state: dict[str, Any] | None = None) -> None:
        self.files = list(files)
        self.max_bad_fraction = max_bad_fraction
        state = state or {}
        self.sources: set[str] = set(state.get("bad_sources", []))
        self.samples: set[str] = set(state.get("bad_samples", []))

    def add(self, entries: Iterable[Sequence[Any]]) -> None:
        for entry in entries:
            self.sources.add(str(entry[0]))
            self.samples.add(sample_key(entry))

    def bad_files(self) -> set[str]:
        index = lambda key: int(key[1:])  # noqa: E731
        return {self.files[index(k)] if k.startswith("#") and index(k) < len(self.files) else k for k in self.samples}

    def state(self) -> dict[str, list[str]]:
        return {"bad_sources": sorted(self.sources), "bad_samples": sorted(self.samples)}

    def check(self, skipped_csv: Path, note: str, exhausted: Sequence[Sequence[SkippedDraw]] = ()) -> None:
        """Raise :class:`TrainingStopped` (one line) when an item found no good draw (``exhausted``: the
        draws of each such item), or when too much of the archive is bad."""
        if exhausted:
            items = f" (and for {len(exhausted) - 1} more items of the batch)" if len(exhausted) > 1 else ""
            raise TrainingStopped(f"{exhaustion_message(exhausted[-1])}{items}; no good sample was left to "
                                  f"replace them: see {skipped_csv}; {note}")
        total = len(self.files)
        if len(self.samples) > self.max_bad_fraction * total:
            raise TrainingStopped(
                f"{len(self.samples)} of {total} samples are bad (from {len(self.bad_files())} files), more "
                f"than data.max_bad_fraction={self.max_bad_fraction}; see {skipped_csv}; {note}")
