"""A dataset over an adapter's sample references: seeded transforms and skip-and-replace.

Keys are ``(index, epoch)`` pairs from :class:`SeededBatchSampler` (or plain indices for evaluation).
A sample that fails to read or validate is replaced by another deterministic draw; what was skipped
travels with the batch (``item["skipped"]``) so the engine can log it and keep the batch full.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mae_domains.data.sample import BadSampleError, NormStats, Sample
from mae_domains.data.seeding import STREAM_AUGMENT, STREAM_MASK, STREAM_REPLACE, derive_seed

if TYPE_CHECKING:
    from mae_domains.adapter_api import Adapter

log = logging.getLogger(__name__)


class ArchiveDataset(Dataset):
    def __init__(
        self,
        adapter: "Adapter",
        refs: Sequence[Any],
        stats: NormStats | None,
        train: bool = True,
        seed: int = 0,
        max_replacements: int = 16,
    ) -> None:
        self.adapter = adapter
        self.refs = list(refs)
        self.stats = stats
        self.train = train
        self.seed = seed
        self.max_replacements = max_replacements

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

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (key, 0) if isinstance(key, (int, np.integer)) else key
        skipped: list[tuple[str, str]] = []
        current = int(index)
        for attempt in range(self.max_replacements + 1):
            try:
                sample = self.load(current, derive_seed(self.seed, epoch, index, STREAM_AUGMENT, attempt))
                break
            except BadSampleError as err:
                log.warning("skipping %s", err)
                skipped.append((err.source, err.reason))
                rng = np.random.default_rng(derive_seed(self.seed, epoch, index, STREAM_REPLACE, attempt))
                current = int(rng.integers(len(self.refs)))
        else:
            raise RuntimeError(
                f"{self.max_replacements + 1} draws in a row were bad samples (last: {skipped[-1][0]}: "
                f"{skipped[-1][1]}); check the archive"
            )
        return self.to_item(sample, current, epoch, skipped)

    def to_item(self, sample: Sample, index: int, epoch: int, skipped: list[tuple[str, str]]) -> dict[str, Any]:
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
        if sample.label is not None:
            item["label"] = torch.as_tensor(sample.label)
        return item


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors and integers; keep strings, metadata and skip records as lists."""
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "skipped":
            batch[key] = [entry for v in values for entry in v]
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, np.integer)) and not isinstance(values[0], bool):
            batch[key] = torch.tensor(values, dtype=torch.int64)
        else:
            batch[key] = values
    return batch
