"""Bucketing by grid signature: one signature per batch, seeded, every sample once."""

from mae_domains.data.bucketing import BucketBatchSampler, grid_signature


def signatures():
    sigs = []
    for i in range(23):
        channels = [3, 5, 6][i % 3]
        names = ["DNA", "RNA", "ER", "AGP", "Mito", "BF"][:channels]
        sigs.append(grid_signature((channels, 64, 64), {"channel_names": names}))
    return sigs


def test_batches_hold_one_signature_and_cover_every_sample():
    sigs = signatures()
    sampler = BucketBatchSampler(sigs, batch_size=3, seed=1, drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(23))
    for batch in batches:
        assert len({sigs[i] for i in batch}) == 1


def test_drop_last_gives_full_batches_only():
    sampler = BucketBatchSampler(signatures(), batch_size=3, seed=1, drop_last=True)
    batches = list(sampler)
    assert all(len(b) == 3 for b in batches) and len(batches) == len(sampler) == 6


def test_seeded_per_epoch():
    a = BucketBatchSampler(signatures(), 3, seed=4)
    b = BucketBatchSampler(signatures(), 3, seed=4)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(BucketBatchSampler(signatures(), 3, seed=5)) != list(b)


def test_signature_distinguishes_layout_changes():
    base = grid_signature((3, 4, 64, 64), {"dates": [1, 2, 3], "channel_names": ["a", "b"]})
    assert base == grid_signature((3, 4, 64, 64), {"dates": [7, 8, 9], "channel_names": ["a", "b"]})
    assert base != grid_signature((3, 4, 64, 64), {"dates": [1, 2], "channel_names": ["a", "b"]})
    assert base != grid_signature((3, 4, 64, 64), {"dates": [1, 2, 3], "channel_names": ["b", "a"]})
    assert base != grid_signature((3, 4, 32, 64), {"dates": [1, 2, 3], "channel_names": ["a", "b"]})
