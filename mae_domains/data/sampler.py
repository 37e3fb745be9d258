"""An endless, seeded, resumable batch sampler that shards a global batch across ranks.

Step ``s`` of the run uses positions ``[s*G, (s+1)*G)`` of the epoch's permutation, where ``G`` is the
global batch (per-rank batch x world size); rank ``r`` takes its contiguous ``1/world`` share. So the
samples seen at a step depend only on (seed, step), never on worker or process count, and resuming at
step ``s`` needs nothing but ``s``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from mae_domains.data.seeding import derive_seed

PERMUTATION_STREAM = 7


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields batches of ``(sample index, epoch)`` keys; endless unless ``max_steps`` is given."""

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
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the archive holds no samples")
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
        self.steps_per_epoch = num_samples // self.global_batch
        self.start_step = start_step
        self.max_steps = max_steps
        self._cached: tuple[int, np.ndarray | None] = (-1, None)

    def permutation(self, epoch: int) -> np.ndarray:
        """The epoch's sample order (the last one is kept: consecutive steps share it)."""
        if self._cached[0] != epoch:
            order = (np.random.default_rng(derive_seed(self.seed, epoch, PERMUTATION_STREAM)).permutation(self.num_samples)
                     if self.shuffle else np.arange(self.num_samples))
            self._cached = (epoch, order)
        return self._cached[1]

    def batch_for_step(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(index, epoch)`` keys at global step ``step``."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        start = offset * self.global_batch + self.rank * self.batch_size
        return [(int(i), epoch) for i in self.permutation(epoch)[start : start + self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            yield self.batch_for_step(step)
            step += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            return self.steps_per_epoch
        return max(self.max_steps - self.start_step, 0)
