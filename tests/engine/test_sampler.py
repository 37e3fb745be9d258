"""The seeded batch sampler and dataset: sharding, resume, and independence from workers/processes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from mae_domains.data.dataset import ArchiveDataset, collate_items
from mae_domains.data.sampler import SeededBatchSampler
from mae_image import ImageAdapter

from .conftest import make_config


@pytest.mark.parametrize("world", [2, 3])
def test_union_of_ranks_is_the_single_process_batch(world):
    n, per_rank, seed = 50, 4, 9
    single = SeededBatchSampler(n, per_rank * world, seed)
    ranks = [SeededBatchSampler(n, per_rank, seed, rank=r, world_size=world) for r in range(world)]
    for step in range(3 * single.steps_per_epoch + 1):  # several epochs
        shards = [s.batch_for_step(step) for s in ranks]
        assert all(len(shard) == per_rank for shard in shards)
        assert [key for shard in shards for key in shard] == single.batch_for_step(step)


def test_iteration_matches_batch_for_step_and_epochs_do_not_repeat():
    sampler = SeededBatchSampler(20, 4, seed=1, max_steps=12)
    batches = list(sampler)
    assert batches == [sampler.batch_for_step(s) for s in range(12)]
    for epoch in range(2):
        keys = [k for b in batches[epoch * 5:(epoch + 1) * 5] for k in b]
        assert sorted(i for i, _ in keys) == list(range(20)) and {e for _, e in keys} == {epoch}
    assert batches[:5] != batches[5:10]  # a new permutation each epoch


def test_resume_from_start_step_continues_the_sequence():
    full = list(SeededBatchSampler(30, 4, seed=2, max_steps=17))
    for start in (0, 3, 7, 8, 16):
        resumed = list(SeededBatchSampler(30, 4, seed=2, start_step=start, max_steps=17))
        assert resumed == full[start:]


def test_global_batch_larger_than_archive_is_an_error():
    with pytest.raises(ValueError, match="lower engine.batch_size"):
        SeededBatchSampler(6, 4, world_size=2)


def batches(archive, workers: int, batch: int, rank: int = 0, world: int = 1, steps: int = 4):
    cfg = make_config(archive, f"engine.batch_size={batch}")
    adapter = ImageAdapter(cfg.data.options).bind(cfg)
    refs = adapter.discover(cfg.data.sources)
    dataset = ArchiveDataset(adapter, refs, None, train=True, seed=11)
    sampler = SeededBatchSampler(len(refs), batch, 11, rank=rank, world_size=world, max_steps=steps)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_items)
    return [{"image": b["image"], "mask_seed": b["mask_seed"], "index": b["index"]} for b in loader]


def test_samples_do_not_depend_on_worker_count(png_archive):
    """Crops, flips and mask seeds come from (seed, epoch, index): 0 and 2 workers agree bitwise."""
    zero, two = batches(png_archive, 0, 4, steps=12), batches(png_archive, 2, 4, steps=12)
    for a, b in zip(zero, two, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    # and augmentation and masks really are random: each image looks different in the two epochs
    seen = [{}, {}]
    for step, batch in enumerate(zero):
        for i, idx in enumerate(batch["index"].tolist()):
            seen[step // 6][idx] = (batch["image"][i], int(batch["mask_seed"][i]))
    assert seen[0].keys() == seen[1].keys() == set(range(24))
    for idx in range(24):
        assert not torch.equal(seen[0][idx][0], seen[1][idx][0]) and seen[0][idx][1] != seen[1][idx][1]


def test_samples_do_not_depend_on_process_count(png_archive):
    whole = batches(png_archive, 0, 8, steps=3)
    halves = [batches(png_archive, 0, 4, rank=r, world=2, steps=3) for r in range(2)]
    for step, batch in enumerate(whole):
        for key in batch:
            assert torch.equal(batch[key], torch.cat([halves[0][step][key], halves[1][step][key]])), key
