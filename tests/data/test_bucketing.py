"""Bucketing by grid signature: one signature per batch, seeded, resumable, sharded, every sample once."""

import numpy as np
import pytest

from mae_domains.data.bucketing import bucket_indices, bucketed_batches, grid_signature, ordered_batches
from mae_domains.data.sampler import EpochBatchSampler, SeededBatchSampler, batches_per_epoch


def signatures(n: int = 23):
    sigs = []
    for i in range(n):
        channels = [3, 5, 6][i % 3]
        names = ["DNA", "RNA", "ER", "AGP", "Mito", "BF"][:channels]
        sigs.append(grid_signature((channels, 64, 64), {"channel_names": names}))
    return sigs


def test_buckets_follow_first_index_and_cover_every_sample():
    buckets = bucket_indices(signatures())
    assert [int(b[0]) for b in buckets] == [0, 1, 2]
    assert sorted(int(i) for b in buckets for i in b) == list(range(23))


def test_bucketed_batches_are_full_homogeneous_and_seeded():
    sigs = signatures()
    buckets = bucket_indices(sigs)
    plan = bucketed_batches(buckets, 3, np.random.default_rng(1))
    assert plan.shape == (2 + 2 + 2, 3)  # buckets of 8, 8 and 7 samples
    assert all(len({sigs[i] for i in row}) == 1 for row in plan)
    assert np.array_equal(plan, bucketed_batches(buckets, 3, np.random.default_rng(1)))
    assert not np.array_equal(plan, bucketed_batches(buckets, 3, np.random.default_rng(2)))


def test_ordered_batches_keep_archive_order_within_a_signature():
    sigs = signatures(10)
    batches = ordered_batches(bucket_indices(sigs), 3)
    assert batches == [[0, 3, 6], [9], [1, 4, 7], [2, 5, 8]]
    assert ordered_batches(bucket_indices([None] * 7), 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_seeded_sampler_with_signatures_shards_one_global_batch():
    sigs = signatures(60)
    world, per_rank = 2, 3
    single = SeededBatchSampler(60, per_rank * world, seed=5, signatures=sigs)
    ranks = [SeededBatchSampler(60, per_rank, seed=5, rank=r, world_size=world, signatures=sigs) for r in range(world)]
    assert single.steps_per_epoch == batches_per_epoch(60, 6, sigs) == 9  # 20 per bucket -> 3 full batches each
    for step in range(2 * single.steps_per_epoch + 3):
        whole = single.batch_for_step(step)
        assert [key for r in ranks for key in r.batch_for_step(step)] == whole
        assert len({sigs[i] for i, _ in whole}) == 1 and len({e for _, e in whole}) == 1
    epoch0 = [i for s in range(9) for i, _ in single.batch_for_step(s)]
    assert len(set(epoch0)) == 54  # no sample twice in an epoch; 2 left over per bucket


def test_seeded_sampler_with_signatures_resumes_at_any_step():
    sigs = signatures(30)
    full = list(SeededBatchSampler(30, 4, seed=2, max_steps=20, signatures=sigs))
    for start in (0, 5, 6, 13, 19):
        assert list(SeededBatchSampler(30, 4, seed=2, start_step=start, max_steps=20, signatures=sigs)) == full[start:]


def test_one_signature_is_the_plain_permutation():
    plain = list(SeededBatchSampler(20, 4, seed=3, max_steps=11))
    assert list(SeededBatchSampler(20, 4, seed=3, max_steps=11, signatures=["same"] * 20)) == plain


def test_signature_groups_smaller_than_a_global_batch_are_an_error():
    with pytest.raises(ValueError, match="no grid signature has a full global batch"):
        SeededBatchSampler(6, 4, signatures=["a", "b", "a", "b", "a", "b"])


def test_epoch_sampler_in_order_and_shuffled():
    sigs = signatures(10)
    ordered = EpochBatchSampler(10, 3, signatures=sigs)
    assert [[i for i, _ in b] for b in ordered] == [[0, 3, 6], [9], [1, 4, 7], [2, 5, 8]] and len(ordered) == 4
    assert all(e == 0 for b in ordered for _, e in b)
    shuffled = EpochBatchSampler(10, 3, seed=1, shuffle=True, drop_last=True, signatures=sigs)
    first, second = list(shuffled), list(shuffled)
    assert len(first) == len(shuffled) == 3 and {e for b in second for _, e in b} == {1}
    assert all(len({sigs[i] for i, _ in b}) == 1 for b in first + second)
    assert [[i for i, _ in b] for b in first] != [[i for i, _ in b] for b in second]
    kept = EpochBatchSampler(10, 3, seed=1, shuffle=True, signatures=sigs)
    assert sorted(i for b in kept for i, _ in b) == list(range(10))


def test_signature_distinguishes_layout_changes():
    base = grid_signature((3, 4, 64, 64), {"dates": [1, 2, 3], "channel_names": ["a", "b"]})
    assert base == grid_signature((3, 4, 64, 64), {"dates": [7, 8, 9], "channel_names": ["a", "b"]})
    assert base != grid_signature((3, 4, 64, 64), {"dates": [1, 2], "channel_names": ["a", "b"]})
    assert base != grid_signature((3, 4, 64, 64), {"dates": [1, 2, 3], "channel_names": ["b", "a"]})
    assert base != grid_signature((3, 4, 32, 64), {"dates": [1, 2, 3], "channel_names": ["a", "b"]})
