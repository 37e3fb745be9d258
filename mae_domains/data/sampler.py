"""Seeded batch samplers whose batches depend only on (seed, step) or (seed, epoch).

:class:`SeededBatchSampler` (pretraining) is endless and resumable and shards a global batch across
ranks: step ``s`` of the run uses row ``s`` of the epoch's plan of global batches (``G`` = per-rank batch
x world size), and rank ``r`` takes its contiguous ``1/world`` share. With one grid signature the plan
is the epoch's permutation cut into consecutive rows; with several, every global batch is cut from one
signature's samples (:mod:`mae_domains.data.bucketing`). With ``groups`` (prepared shards split into
``data.shard_groups`` groups of consecutive shards) every global batch is cut into as many slices, slice
``g`` drawn from group ``g``'s own permutation; a rank's contiguous share then covers whole slices, so each
of ``world`` ranks (a divisor of the group count) reads only the shards of its groups, and the batches are
the same for any such process count. The samples seen at a step never depend on worker or process count,
and resuming at step ``s`` needs nothing but ``s``.

:class:`EpochBatchSampler` (embedding, evaluation, fine-tuning) runs epoch by epoch: in archive order,
or shuffled anew each epoch; its keys carry the epoch so training transforms differ per epoch.
"""

from __future__ import annotations

import logging
from typing import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from mae_domains.data.bucketing import bucket_indices, bucketed_batches, ordered_batches
from mae_domains.data.seeding import derive_seed

log = logging.getLogger(__name__)

PERMUTATION_STREAM = 7
BUCKET_STREAM = 11
GROUP_STREAM = 13


def _buckets(num_samples: int, signatures: Sequence[Hashable] | None) -> list[np.ndarray]:
    if signatures is None:
        return [np.arange(num_samples)]
    if len(signatures) != num_samples:
        raise ValueError(f"{len(signatures)} grid signatures for {num_samples} samples")
    return bucket_indices(signatures)


def _group_members(groups: Sequence[int] | None) -> list[np.ndarray] | None:
    if groups is None:
        return None
    groups = np.asarray(groups)
    return [np.flatnonzero(groups == g) for g in range(int(groups.max()) + 1)]


def batches_per_epoch(num_samples: int, global_batch: int, signatures: Sequence[Hashable] | None = None,
                      groups: Sequence[int] | None = None) -> int:
    """Full global batches in one epoch (each cut from one signature's samples, or a slice per group)."""
    members = _group_members(groups)
    if members is not None:
        return min(len(m) for m in members) // max(1, global_batch // len(members))
    return sum(len(b) // global_batch for b in _buckets(num_samples, signatures))


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields batches of ``(sample index, epoch)`` keys; endless unless ``max_steps`` is given.

    ``signatures`` (one hashable per sample, e.g. the channel count) makes every global batch hold one
    signature; None (or all equal) gives the plain permutation, as without bucketing. ``groups`` (the
    shard group of every sample, see the module docstring) gives each group a slice of every batch."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        max_steps: int | None = None,
        signatures: Sequence[Hashable] | None = None,
        groups: Sequence[int] | None = None,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the archive holds no samples")
        self.group_members = _group_members(groups)
        if self.group_members is not None:
            check_groups(len(self.group_members), batch_size * world_size, world_size, signatures)
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.global_batch = batch_size * world_size
        if self.global_batch > num_samples:
            raise ValueError(
                f"global batch {self.global_batch} is larger than the archive ({num_samples} samples); "
                "lower engine.batch_size"
            )
        self.buckets = _buckets(num_samples, signatures)
        sizes = [len(b) for b in self.buckets]
        self.steps_per_epoch = batches_per_epoch(num_samples, self.global_batch, signatures, groups)
        if self.group_members is not None:
            sizes = [len(m) for m in self.group_members]
            if self.steps_per_epoch == 0:
                raise ValueError(f"a shard group holds fewer samples ({min(sizes)}) than its slice of the global "
                                 f"batch ({self.global_batch // len(sizes)}); lower data.shard_groups or engine.batch_size")
            unused = sum(sizes) - self.steps_per_epoch * self.global_batch
            if unused:
                log.info("shard groups of %s samples: %d per epoch (a different draw each epoch) are left out so "
                         "that every group fills its slice", sizes, unused)
        elif self.steps_per_epoch == 0:
            raise ValueError(f"no grid signature has a full global batch of {self.global_batch} samples (group "
                             f"sizes {sizes}); lower engine.batch_size")
        short = [s for s in sizes if s < self.global_batch]
        if short:
            log.warning("%d sample(s) in %d grid-signature group(s) smaller than the global batch (%d) are never "
                        "used; lower engine.batch_size to include them", sum(short), len(short), self.global_batch)
        self.start_step = start_step
        self.max_steps = max_steps
        self._cached: tuple[int, np.ndarray | None] = (-1, None)

    def plan(self, epoch: int) -> np.ndarray:
        """The epoch's global batches ``(steps_per_epoch, global_batch)`` (the last epoch's is kept)."""
        if self._cached[0] != epoch:
            if self.group_members is not None:
                plan = self.grouped_plan(epoch)
            elif len(self.buckets) == 1:
                order = (np.random.default_rng(derive_seed(self.seed, epoch, PERMUTATION_STREAM)).permutation(self.num_samples)
                         if self.shuffle else np.arange(self.num_samples))
                plan = order[:self.steps_per_epoch * self.global_batch].reshape(self.steps_per_epoch, self.global_batch)
            else:
                rng = np.random.default_rng(derive_seed(self.seed, epoch, BUCKET_STREAM)) if self.shuffle else None
                plan = bucketed_batches(self.buckets, self.global_batch, rng)
            self._cached = (epoch, plan)
        return self._cached[1]

    def grouped_plan(self, epoch: int) -> np.ndarray:
        """Slice ``g`` of every global batch from group ``g``'s permutation of its own samples."""
        width = self.global_batch // len(self.group_members)
        used = self.steps_per_epoch * width
        slices = []
        for g, members in enumerate(self.group_members):
            order = (members[np.random.default_rng(derive_seed(self.seed, epoch, GROUP_STREAM, g)).permutation(len(members))]
                     if self.shuffle else members)
            slices.append(order[:used].reshape(self.steps_per_epoch, width))
        return np.concatenate(slices, axis=1)

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(index, epoch)`` keys at global step ``step``."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        share = self.plan(epoch)[offset, self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return [(int(i), epoch) for i in share]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            yield self.batch_for_step(step)
            step += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            return self.steps_per_epoch
        return max(self.max_steps - self.start_step, 0)


def check_groups(count: int, global_batch: int, world_size: int, signatures: Sequence[Hashable] | None) -> None:
    """One-line errors for shard groups that cannot give every rank only its own groups."""
    if signatures is not None and len(set(signatures)) > 1:
        raise ValueError("data.shard_groups: the samples make several token grids (grid signatures), whose batches "
                         "are bucketed; set data.shard_groups=1")
    if count % world_size:
        raise ValueError(f"data.shard_groups={count} is not a multiple of the {world_size} processes: each rank reads "
                         "whole groups")
    if global_batch % count:
        raise ValueError(f"data.shard_groups={count} does not divide the global batch {global_batch}: every group "
                         "fills an equal slice of it")


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, epoch)`` keys, one epoch per iteration.

    In order (``shuffle=False``; epoch 0 every time, so the keys and seeds are those of plain indices)
    or shuffled from ``derive_seed(seed, epoch)`` with the epoch counting up per iteration. With several
    ``signatures`` every batch holds one; ``drop_last`` leaves out short batches."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, shuffle: bool = False,
                 drop_last: bool = False, signatures: Sequence[Hashable] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.buckets = _buckets(num_samples, signatures)
        self.epoch = 0

    def batches(self, epoch: int) -> list[list[int]]:
        """The sample indices of each batch of ``epoch``."""
        if not self.shuffle:
            batches = ordered_batches(self.buckets, self.batch_size)
            return [b for b in batches if len(b) == self.batch_size or not self.drop_last]
        rng = np.random.default_rng(derive_seed(self.seed, epoch, PERMUTATION_STREAM))
        full = bucketed_batches(self.buckets, self.batch_size, rng).tolist()
        if self.drop_last:
            return full
        used = {i for b in full for i in b}
        rests = [[int(i) for i in bucket if int(i) not in used] for bucket in self.buckets]
        return full + [r for r in rests if r]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch if self.shuffle else 0
        if self.shuffle:
            self.epoch += 1
        for batch in self.batches(epoch):
            yield [(i, epoch) for i in batch]

    def __len__(self) -> int:
        full = sum(len(b) // self.batch_size for b in self.buckets)
        return full if self.drop_last else full + sum(1 for b in self.buckets if len(b) % self.batch_size)
