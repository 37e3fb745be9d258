"""Bucketing by grid signature: batches whose samples all make the same token grid.

Samples with another channel count, band subset, frame count or image size make another grid; padding
them into one batch would break the fixed kept-token count, fused attention, pooling and the loss
denominators. So samples are grouped by a signature (an adapter's ``grid_signature(ref)``, for which
:func:`grid_signature` is a helper) and every batch is cut from one group.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

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


def bucket_indices(signatures: Sequence[Hashable]) -> list[np.ndarray]:
    """Sample indices grouped by signature, groups ordered by their first index (independent of hashing)."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for index, signature in enumerate(signatures):
        try:
            groups[signature].append(index)
        except TypeError:
            raise TypeError(f"grid signature {signature!r} of sample {index} is not hashable; use tuples") from None
    return sorted((np.asarray(g, dtype=np.int64) for g in groups.values()), key=lambda g: int(g[0]))


def bucketed_batches(buckets: Sequence[np.ndarray], batch_size: int, rng: np.random.Generator | None) -> np.ndarray:
    """``(steps, batch_size)`` batches, each from one bucket: every bucket is shuffled (``rng``) and cut
    into full batches (a short remainder is left out), then the batches of all buckets are shuffled
    together. Without ``rng`` everything stays in order (bucket by bucket)."""
    rows = []
    for bucket in buckets:
        order = rng.permutation(bucket) if rng is not None else bucket
        full = len(order) // batch_size * batch_size
        rows.append(order[:full].reshape(-1, batch_size))
    plan = np.concatenate(rows) if rows else np.zeros((0, batch_size), np.int64)
    return plan[rng.permutation(len(plan))] if rng is not None else plan


def ordered_batches(buckets: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Evaluation batches: samples in archive order within each bucket (of :func:`bucket_indices`), the
    last batch of a bucket may be short; with one bucket these are the plain consecutive batches."""
    out: list[list[int]] = []
    for bucket in buckets:
        out.extend(bucket[start:start + batch_size].tolist() for start in range(0, len(bucket), batch_size))
    return out
