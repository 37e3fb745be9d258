"""The archive-to-DataLoader builder: evaluation order, labels, per-epoch augmentation when shuffled,
grid-signature buckets, and bad samples replaced by samples of the same signature."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch

from mae_domains.data.loaders import evaluation_loader, pretraining_loader, sample_signatures
from mae_domains.data.sample import BadSampleError, NormStats, Sample


class ArrayAdapter:
    """References are ``(channels, value)`` pairs; training transforms add noise from the seed. Value
    ``-1`` is a bad sample."""

    def __init__(self, bucketed: bool = True) -> None:
        self.bucketed = bucketed

    def grid_signature(self, ref: tuple[int, int]) -> Any:
        return ref[0] if self.bucketed else None

    def read(self, ref: tuple[int, int]) -> Sample:
        channels, value = ref
        if value < 0:
            raise BadSampleError(f"sample{value}", "broken on purpose")
        return Sample(np.full((channels, 4, 4), value, np.float32), {"sample_id": f"s{value}", "source": f"s{value}"})

    def read_training(self, ref: tuple[int, int], seed: int) -> Sample:
        return self.read(ref)

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        if train:
            noise = np.random.default_rng(seed).standard_normal(sample.image.shape).astype(np.float32)
            return Sample(sample.image + noise, sample.meta)
        return sample


def mixed_refs(n: int = 10) -> list[tuple[int, int]]:
    return [(1 if i % 3 else 3, i) for i in range(n)]


def values(batch: dict) -> list[int]:
    return [int(s[1:]) for s in batch["sample_id"]]


def test_evaluation_order_labels_and_buckets():
    refs = mixed_refs()
    loader = evaluation_loader(ArrayAdapter(), refs, None, batch_size=3, labels=[v * 10 for _, v in refs])
    batches = list(loader)
    assert [values(b) for b in batches] == [[0, 3, 6], [9], [1, 2, 4], [5, 7, 8]]
    assert all(torch.equal(b["label"], torch.tensor(values(b)) * 10) for b in batches)
    assert [b["image"].shape[1] for b in batches] == [3, 3, 1, 1]
    assert sample_signatures(ArrayAdapter(bucketed=False), refs) is None
    plain = evaluation_loader(ArrayAdapter(), [(1, i) for i in range(5)], None, batch_size=2)
    assert [values(b) for b in plain] == [[0, 1], [2, 3], [4]]


def test_shuffled_training_epochs_draw_new_orders_and_augmentations():
    refs = [(1, i) for i in range(8)]
    loader = evaluation_loader(ArrayAdapter(), refs, None, batch_size=4, train=True, shuffle=True, seed=3)
    first, second = list(loader), list(loader)
    assert len(first) == len(loader) == 2
    order = [values(b) for b in first]
    assert sorted(sum(order, [])) == list(range(8)) and order != [values(b) for b in second]
    pixels = [{v: b["image"][i] for b in epoch for i, v in enumerate(values(b))} for epoch in (first, second)]
    assert all(not torch.equal(pixels[0][v], pixels[1][v]) for v in range(8))
    again = evaluation_loader(ArrayAdapter(), refs, None, batch_size=4, train=True, shuffle=True, seed=3)
    assert [values(b) for b in again] == order


def test_bad_samples_are_replaced_within_their_signature():
    refs = mixed_refs(12) + [(3, -1)] * 4
    signatures = sample_signatures(ArrayAdapter(), refs)
    loader = pretraining_loader(ArrayAdapter(), refs, None, batch_size=4, seed=1, max_steps=12, signatures=signatures)
    skipped = 0
    for batch in loader:
        assert batch["image"].shape[0] == 4  # a 1-channel replacement in a 3-channel batch would not stack
        assert all(v >= 0 for v in values(batch))
        skipped += len(batch["skipped"])
    assert skipped > 0


def test_mixed_shapes_without_signatures_name_the_fix():
    with pytest.raises(ValueError, match="grid_signature"):
        list(evaluation_loader(ArrayAdapter(bucketed=False), mixed_refs(), None, batch_size=4))


class WorkerPriority(torch.utils.data.Dataset):
    """Each item is the niceness of the process that loads it."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return os.nice(0)


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities on this platform")
def test_loader_workers_run_below_the_models_priority():
    from mae_domains.data.loaders import WORKER_NICENESS, worker_init

    parent = os.nice(0)
    loader = torch.utils.data.DataLoader(WorkerPriority(), batch_size=None, num_workers=1, worker_init_fn=worker_init)
    assert {int(n) for n in loader} == {min(parent + WORKER_NICENESS, 19)}
    assert os.nice(0) == parent  # the main process keeps its priority
