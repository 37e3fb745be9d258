"""From an archive's sample references to a DataLoader, for pretraining, embedding and evaluation.

- :func:`pretraining_loader`: endless, seeded and resumable batches (:class:`SeededBatchSampler`), each
  rank's share of one global batch, training transforms; batches bucketed by grid signature.
- :func:`evaluation_loader`: epoch by epoch, in archive order (embedding, frozen features,
  reconstruction) or shuffled with training transforms (fine-tuning), optionally with labels.

Workers compute on one thread each, and DataLoader seeds come from a private generator, so loading
never draws from torch's global RNG (drop path, checkpointed for resume).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Hashable, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from mae_domains.data.dataset import ArchiveDataset, SampleReader, collate_items
from mae_domains.data.sample import NormStats
from mae_domains.data.sampler import EpochBatchSampler, SeededBatchSampler


WORKER_NICENESS = 10  # the OS gives a worker about a tenth of a core the model's threads want


def worker_init(_: int) -> None:
    """Loader workers compute on one thread each and at a lower scheduling priority: the model's threads
    get every core they can use, and workers fill the idle time (while the model waits for a batch, they
    run at full speed). So workers never slow the model below running without them; at equal priority,
    a busy worker pre-empts one of the model's threads and the others wait for it at every parallel op.
    Workers ignore SIGTERM and Ctrl-C (SIGINT): a scheduler or a terminal that signals the whole process
    group must not kill them before the main process has written its checkpoint (they exit with it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICENESS)
        except OSError:  # not permitted here: equal priority
            pass


def single_threaded_opencv() -> None:
    """OpenCV (albumentations' backend) on one thread, set in the parent BEFORE workers are forked: a
    forked worker that touches the thread pool its parent had running (``cv2.setNumThreads`` included)
    can wait forever on a lock held by a thread that does not exist in the child."""
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(1)


def sample_signatures(adapter: Any, refs: Sequence[Any]) -> list[Hashable] | None:
    """Each reference's grid signature from the adapter's ``grid_signature(ref)``; None when the adapter
    has no such hook or all signatures are equal (then nothing is bucketed)."""
    hook = getattr(adapter, "grid_signature", None)
    if hook is None:
        return None
    signatures = [hook(ref) for ref in refs]
    try:
        distinct = len(set(signatures))
    except TypeError:
        raise TypeError(f"{type(adapter).__name__}.grid_signature must return hashable values (tuples)") from None
    return signatures if distinct > 1 else None


def _loader(dataset: ArchiveDataset, batch_sampler: Sampler, seed: int, num_workers: int, pin_memory: bool) -> DataLoader:
    if num_workers:
        single_threaded_opencv()
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate_items,
                      generator=torch.Generator().manual_seed(seed), pin_memory=pin_memory,
                      worker_init_fn=worker_init if num_workers else None, persistent_workers=False,
                      prefetch_factor=2 if num_workers else None)


def pretraining_loader(adapter: SampleReader, refs: Sequence[Any], stats: NormStats | None, *, batch_size: int,
                       seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0,
                       max_steps: int | None = None, signatures: Sequence[Hashable] | None = None,
                       num_workers: int = 0, pin_memory: bool = False,
                       groups: Sequence[int] | None = None) -> DataLoader:
    """Batches of ``batch_size`` (this rank's share of a ``batch_size x world_size`` global batch) from
    micro-step ``start_step`` up to ``max_steps``; each global batch holds one of ``signatures``, or a slice
    of each shard group in ``groups`` (a bad sample is then replaced from its own group). A batch in which
    an item found no good sample holds only ``skipped`` and ``exhausted`` records."""
    sampler = SeededBatchSampler(len(refs), batch_size, seed, rank=rank, world_size=world_size,
                                 start_step=start_step, max_steps=max_steps, signatures=signatures, groups=groups)
    dataset = ArchiveDataset(adapter, refs, stats, train=True, seed=seed,
                             signatures=signatures if groups is None else list(groups), report_exhaustion=True)
    return _loader(dataset, sampler, seed, num_workers, pin_memory)


def evaluation_loader(adapter: SampleReader, refs: Sequence[Any], stats: NormStats | None, *, batch_size: int,
                      seed: int = 0, labels: Sequence[Any] | None = None, train: bool = False,
                      shuffle: bool = False, drop_last: bool = False, num_workers: int = 0,
                      pin_memory: bool = False, skip_bad: bool = False) -> DataLoader:
    """Batches of ``refs`` epoch by epoch: in order with evaluation transforms by default; ``train`` uses
    training transforms (new draws each epoch when ``shuffle``). ``labels`` (one per ref) become
    ``batch["label"]``. Samples of different grid signatures (the adapter's ``grid_signature``) never
    share a batch. ``skip_bad``: a bad sample is left out of its batch and listed in ``batch["skipped"]``
    instead of being replaced by another draw (a batch of bad samples only holds just ``skipped``)."""
    signatures = sample_signatures(adapter, refs)
    sampler = EpochBatchSampler(len(refs), batch_size, seed, shuffle=shuffle, drop_last=drop_last, signatures=signatures)
    dataset = ArchiveDataset(adapter, refs, stats, train=train, seed=seed, labels=labels, signatures=signatures,
                             skip_bad=skip_bad)
    return _loader(dataset, sampler, seed, num_workers, pin_memory)
