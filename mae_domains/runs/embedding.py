"""Embed an archive with a loaded model: every readable sample once, bad samples skipped and listed (never
replaced by another draw), ids relative to the data root, position metadata kept.

The ``.npz`` holds ``embeddings`` ``(N, D)``, ``sample_ids``, ``sources`` (relative to ``data_root``),
``metadata`` (each sample's position entries as JSON), one array per position entry found (``crs``,
``bounds``, ``window``, ...; NaN or empty where a sample has none), and ``skipped_sources`` /
``skipped_reasons`` (samples that could not be read, and files that discovery left out: the adapter's
``excluded``); skipped samples are also written to ``<out>.skipped.csv``.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mae_domains.data.loaders import evaluation_loader
from mae_domains.host_memory import retain_freed_host_memory
from mae_domains.progress import ProgressClock
from mae_domains.runs.model import LoadedModel
from mae_domains.runs.sample_keys import data_root, position_arrays, position_metadata, sample_key, unique_keys
from mae_domains.shards import open_archive

log = logging.getLogger(__name__)


class NoReadableSamples(ValueError):
    """No sample of the archive could be read; the message names the first bad files and causes,
    ``skipped`` lists them all."""

    def __init__(self, message: str, skipped: Sequence["Skipped"]) -> None:
        super().__init__(message)
        self.skipped = list(skipped)


@dataclass
class Skipped:
    """A sample left out: its file (or scene) and the reader's reason."""

    source: str
    reason: str


@dataclass
class EmbeddingResult:
    embeddings: np.ndarray
    ids: list[str]
    sources: list[str]
    positions: list[dict[str, Any]]
    skipped: list[Skipped] = field(default_factory=list)
    root: str = ""
    total: int = 0
    left_out: int = 0  # files discovery left out (the first entries of ``skipped``)


def skipped_summary(skipped: Sequence[Skipped], shown: int = 3) -> str:
    """``first file: reason; ...`` of the first ``shown`` skipped samples."""
    return "; ".join(f"{s.source}: {s.reason}" for s in skipped[:shown])


def embed_archive(loaded: LoadedModel, sources: Sequence[str], device: torch.device, *, batch_size: int = 64,
                  num_workers: int = 0, pool: str = "cls") -> EmbeddingResult:
    """Embeddings of every readable sample of ``sources`` in archive order; raises :class:`NoReadableSamples`
    (naming the first causes) when none could be read. Freed host memory stays in the process for the next
    batch, as in the trainer (:mod:`mae_domains.host_memory`)."""
    retain_freed_host_memory()
    reader, refs = open_archive(loaded.adapter, sources)  # files, or prepared shards
    loader = evaluation_loader(reader, refs, loaded.stats, batch_size=batch_size,
                               seed=loaded.config.engine.seed, num_workers=num_workers, skip_bad=True)
    root = data_root(sources)
    chunks: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    left_out = [Skipped(str(source), str(reason)) for source, reason in getattr(loaded.adapter, "excluded", [])]
    skipped: list[Skipped] = []
    done = 0
    clock = ProgressClock(len(refs), unit="samples")
    with torch.no_grad():
        for step, batch in enumerate(loader, 1):
            skipped.extend(Skipped(str(s[0]), str(s[1])) for s in batch.get("skipped", []))
            done += len(batch.get("meta", [])) + len(batch.get("skipped", []))
            if "image" in batch:
                chunks.append(loaded.adapter.embed(loaded.model, batch, device, pool).float().cpu().numpy())
                metas.extend(dict(m) for m in batch["meta"])
            if len(refs) >= 10 * batch_size and step % 10 == 0:
                log.info("embedded %d of %d samples (%d skipped; %s)", done - len(skipped), len(refs), len(skipped),
                         clock.describe(done))
    skipped = left_out + skipped
    if not chunks:
        raise NoReadableSamples(f"none of the {len(refs)} samples in {', '.join(map(str, sources))} could be read "
                              f"(first: {skipped_summary(skipped)})", skipped)
    keys = unique_keys([sample_key(m, root) for m in metas], metas)
    sources_rel = [sample_key({"source": m.get("source")}, root) for m in metas]
    return EmbeddingResult(np.concatenate(chunks), keys, sources_rel, [position_metadata(m) for m in metas],
                           skipped, root, len(refs), len(left_out))


def skipped_csv_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.skipped.csv")


def write_skipped(skipped: Sequence[Skipped], out: str | Path) -> Path:
    """``<out>.skipped.csv``: one row per skipped sample (``source``, ``reason``), UTF-8; names that are not
    UTF-8 are written back as their original bytes (``surrogateescape``), as the run's ``skipped.csv``."""
    path = skipped_csv_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "reason"])
        writer.writerows([s.source, s.reason] for s in skipped)
    return path


def write_embeddings(result: EmbeddingResult, out: str | Path) -> dict[str, Path]:
    """The ``.npz`` (see the module docstring) and, when samples were skipped, ``<out>.skipped.csv``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in position_arrays(result.positions).items()
              if k not in ("embeddings", "sample_ids", "sources", "metadata", "data_root")}
    np.savez(out, embeddings=result.embeddings, sample_ids=np.asarray(result.ids, dtype=str),
             sources=np.asarray(result.sources, dtype=str), data_root=np.asarray(result.root, dtype=str),
             metadata=np.asarray([json.dumps(p) for p in result.positions], dtype=str),
             skipped_sources=np.asarray([s.source for s in result.skipped], dtype=str),
             skipped_reasons=np.asarray([s.reason for s in result.skipped], dtype=str), **arrays)
    paths = {"embeddings": out if out.suffix == ".npz" else out.with_name(out.name + ".npz")}
    if result.skipped:
        paths["skipped"] = write_skipped(result.skipped, out)
    return paths
