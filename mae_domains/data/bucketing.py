"""Batches of samples with equal token grids, without padding.

Padding a batch to the largest channel count, number of dates or image size breaks the fixed kept-token
count, fused attention, pooling and loss denominators. Instead every sample gets a *grid signature*
(what decides its token layout) and a batch only holds samples of one signature. Which samples form a
batch depends only on (seed, epoch), never on worker or process count.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Hashable, Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

from mae_domains.data.seeding import derive_seed

BUCKET_STREAM = 11
SIGNATURE_META_KEYS = ("channel_names", "band_names", "dates")


def grid_signature(shape: Sequence[int], meta: Mapping[str, Any] | None = None,
                   keys: Sequence[str] = SIGNATURE_META_KEYS) -> tuple:
    """Signature from an array shape (channels first) and the metadata that changes the layout: the
    channel/band names (a different set or order of names is a different grid) and the number of dates."""
    parts: list[Hashable] = [tuple(int(s) for s in shape)]
    meta = meta or {}
    for key in keys:
        if key not in meta or meta[key] is None:
            continue
        value = meta[key]
        parts.append((key, len(value)) if key == "dates" else (key, tuple(str(v) for v in value)))
    return tuple(parts)


class BucketBatchSampler(Sampler[list[int]]):
    """Yields lists of sample indices that share a signature.

    Per epoch the indices of each bucket are shuffled, cut into batches of ``batch_size`` (a short last
    batch per bucket is dropped with ``drop_last``, else kept), and the batches of all buckets are
    shuffled together, all from ``derive_seed(seed, epoch)``.
    """

    def __init__(self, signatures: Sequence[Hashable], batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        buckets: dict[Hashable, list[int]] = defaultdict(list)
        for index, signature in enumerate(signatures):
            buckets[signature].append(index)
        # a fixed bucket order (by first index) keeps the epoch plan independent of hashing
        self.buckets = sorted(buckets.values(), key=lambda idx: idx[0])
        if not self.buckets:
            raise ValueError("no samples to bucket")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng(derive_seed(self.seed, epoch, BUCKET_STREAM))
        out: list[list[int]] = []
        for bucket in self.buckets:
            order = rng.permutation(bucket).tolist() if self.shuffle else list(bucket)
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    out.append([int(i) for i in batch])
        if self.shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        full = sum(len(b) // self.batch_size for b in self.buckets)
        if self.drop_last:
            return full
        return full + sum(1 for b in self.buckets if len(b) % self.batch_size)
