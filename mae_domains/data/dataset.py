"""A dataset over an adapter's sample references: seeded transforms, labels and skip-and-replace.

Keys are ``(index, epoch)`` pairs from the samplers of :mod:`mae_domains.data.sampler` (or plain indices,
epoch 0). A sample that fails to read or validate is replaced by another deterministic draw with the
same grid signature; what was skipped travels with the batch (``item["skipped"]``, a list of
:class:`SkippedDraw`) so the engine can log it and keep the batch full. When ``max_replacements`` further
draws are bad too, the dataset raises :class:`BadDrawsExhausted`, or (``report_exhaustion``, for the
engine) returns an item that says so, so that the skipped draws still reach ``skipped.csv``.
"""

from __future__ import annotations

import logging
from typing import Any, Hashable, NamedTuple, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mae_domains.data.bucketing import bucket_indices
from mae_domains.data.sample import BadSampleError, NormStats, Sample
from mae_domains.data.seeding import STREAM_AUGMENT, STREAM_MASK, STREAM_REPLACE, derive_seed

log = logging.getLogger(__name__)


class SkippedDraw(NamedTuple):
    """A bad draw: ``source`` and ``reason`` as the reader said, ``index`` the sample (chip, frame) of the
    archive that was skipped (several samples can share one source file)."""

    source: str
    reason: str
    index: int


class BadDrawsExhausted(RuntimeError):
    """Every draw for one item was bad; the message names the last sources and causes."""


def exhaustion_message(draws: Sequence[SkippedDraw], shown: int = 3) -> str:
    last = "; ".join(f"{d.source}: {d.reason}" for d in draws[-shown:])
    return f"{len(draws)} draws in a row were bad samples (last: {last})"


class SampleReader(Protocol):
    """What the dataset needs of an adapter (:class:`mae_domains.adapter_api.Adapter` provides it)."""

    def read(self, ref: Any) -> Sample: ...

    def read_training(self, ref: Any, seed: int) -> Sample: ...

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample: ...


class ArchiveDataset(Dataset):
    """Items of ``refs`` read and transformed by ``adapter`` (training transforms when ``train``).

    ``labels`` (one per ref: an int class or a multi-hot vector) become ``item["label"]``; ``signatures``
    (one per ref) restrict replacement draws to samples of the same grid signature. ``report_exhaustion``:
    when every draw for an item is bad, return ``{"skipped": [...], "exhausted": [...]}`` instead of
    raising (the engine records the draws, then stops the run)."""

    def __init__(
        self,
        adapter: SampleReader,
        refs: Sequence[Any],
        stats: NormStats | None,
        train: bool = True,
        seed: int = 0,
        max_replacements: int = 16,
        labels: Sequence[Any] | None = None,
        signatures: Sequence[Hashable] | None = None,
        report_exhaustion: bool = False,
        skip_bad: bool = False,
    ) -> None:
        self.adapter = adapter
        self.refs = list(refs)
        self.stats = stats
        self.train = train
        self.seed = seed
        self.max_replacements = max_replacements
        self.report_exhaustion = report_exhaustion
        self.skip_bad = skip_bad  # evaluation: a bad sample is reported (item "bad"), never replaced
        if labels is not None and len(labels) != len(self.refs):
            raise ValueError(f"{len(labels)} labels for {len(self.refs)} samples")
        self.labels = None if labels is None else list(labels)
        self.peers: list[np.ndarray] | None = None
        self.bucket_of: np.ndarray | None = None
        if signatures is not None:
            if len(signatures) != len(self.refs):
                raise ValueError(f"{len(signatures)} grid signatures for {len(self.refs)} samples")
            self.peers = bucket_indices(signatures)
            self.bucket_of = np.empty(len(self.refs), np.int64)
            for b, members in enumerate(self.peers):
                self.bucket_of[members] = b

    def __len__(self) -> int:
        return len(self.refs)

    def load(self, index: int, augment_seed: int) -> Sample:
        """Read, validate and transform one sample; raises :class:`BadSampleError`."""
        ref = self.refs[index]
        try:
            sample = self.adapter.read_training(ref, augment_seed) if self.train else self.adapter.read(ref)
        except BadSampleError:
            raise
        except Exception as err:  # any reader failure becomes a named, skippable error
            raise BadSampleError(str(ref), f"unreadable ({type(err).__name__}: {err})") from err
        sample.check_finite()
        sample = self.adapter.transform(sample, augment_seed, self.train, self.stats)
        sample.check_finite()
        return sample

    def replacement(self, index: int, rng: np.random.Generator) -> int:
        """A random other draw for a bad sample: any sample, or one of the same grid signature."""
        if self.peers is None or self.bucket_of is None:
            return int(rng.integers(len(self.refs)))
        peers = self.peers[int(self.bucket_of[index])]
        return int(peers[int(rng.integers(len(peers)))])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        skipped: list[SkippedDraw] = []
        current = int(index)
        for attempt in range(self.max_replacements + 1):
            try:
                sample = self.load(current, derive_seed(self.seed, epoch, index, STREAM_AUGMENT, attempt))
                break
            except BadSampleError as err:
                if self.skip_bad:
                    return {"skipped": [SkippedDraw(err.source, err.reason, current)], "bad": True}
                log.warning("skipping %s", err)
                skipped.append(SkippedDraw(err.source, err.reason, current))
                rng = np.random.default_rng(derive_seed(self.seed, epoch, index, STREAM_REPLACE, attempt))
                current = self.replacement(int(index), rng)
        else:
            if self.report_exhaustion:
                return {"skipped": skipped, "exhausted": skipped}
            raise BadDrawsExhausted(exhaustion_message(skipped) + "; check the archive")
        return self.to_item(sample, current, epoch, skipped)

    def to_item(self, sample: Sample, index: int, epoch: int, skipped: list[SkippedDraw]) -> dict[str, Any]:
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(sample.image, dtype=np.float32)),
            "index": index,
            "mask_seed": derive_seed(self.seed, epoch, index, STREAM_MASK),
            "sample_id": str(sample.meta.get("sample_id", sample.source)),
            "meta": sample.meta,
            "skipped": skipped,
        }
        if sample.valid is not None:
            item["valid"] = torch.from_numpy(np.ascontiguousarray(sample.valid, dtype=bool))
        label = self.labels[index] if self.labels is not None else sample.label
        if label is not None:
            item["label"] = torch.as_tensor(label, dtype=torch.float32 if np.ndim(label) else torch.int64)
        return item


def _stack(key: str, values: list[torch.Tensor], items: list[dict[str, Any]]) -> torch.Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        ids = [str(item.get("sample_id", "?")) for item in items]
        raise ValueError(f"samples of one batch have different {key} shapes {sorted(shapes)} ({', '.join(ids[:4])}); "
                         "an adapter whose samples make different token grids declares grid_signature(ref) so "
                         "that batches are bucketed by it")
    return torch.stack(values)


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors and integers; keep strings, metadata and skip records as lists. A batch with an
    exhausted item holds only the skip records (``skipped``, and ``exhausted``: each such item's draws):
    it cannot be trained on."""
    if any("exhausted" in item for item in items):
        return {"skipped": [entry for item in items for entry in item["skipped"]],
                "exhausted": [item["exhausted"] for item in items if "exhausted" in item]}
    kept = [item for item in items if not item.get("bad")]
    if len(kept) < len(items):  # skipped, not replaced: the batch holds the good items and every skip record
        batch = collate_items(kept) if kept else {}
        batch["skipped"] = [entry for item in items for entry in item["skipped"]]
        return batch
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "skipped":
            batch[key] = [entry for v in values for entry in v]
        elif isinstance(values[0], torch.Tensor):
            batch[key] = _stack(key, values, items)
        elif isinstance(values[0], (int, np.integer)) and not isinstance(values[0], bool):
            batch[key] = torch.tensor(values, dtype=torch.int64)
        else:
            batch[key] = values
    return batch
