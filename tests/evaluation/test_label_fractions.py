"""``train_fraction`` of a benchmark dataset: a seeded, class-stratified share of the training labels."""

from collections import Counter
from pathlib import Path

import pytest

from mae_domains.evaluation.loading import build_archive_loaders, load_checkpoint, stratified_subset
from tests.evaluation.helpers import write_image_run, write_stripes_archive


def test_stratified_subset_keeps_every_class_and_the_share_of_each():
    labels = ["forest"] * 100 + ["water"] * 20 + ["sediment"] * 3
    keep = stratified_subset(labels, 0.1, seed=0)
    assert Counter(labels[i] for i in keep) == {"forest": 10, "water": 2, "sediment": 1}
    assert keep == sorted(set(keep)) and keep == stratified_subset(labels, 0.1, seed=0)
    assert keep != stratified_subset(labels, 0.1, seed=1)
    assert len(stratified_subset(labels, 1.0)) == len(labels)
    multi = [("a", "b"), ("b", "a"), ("a",), ("a",)]
    assert Counter(tuple(sorted(multi[i])) for i in stratified_subset(multi, 0.5)) == {("a", "b"): 1, ("a",): 1}
    with pytest.raises(ValueError, match="train_fraction must be in"):
        stratified_subset(labels, 0.0, where="landcover")


def test_a_dataset_entry_with_train_fraction_trains_on_the_subset_and_tests_on_everything(tmp_path: Path):
    archive = tmp_path / "archive"
    write_stripes_archive(archive, "train", 10, seed=0)
    write_stripes_archive(archive, "test", 4, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive)
    checkpoint = load_checkpoint({"name": "mae", "path": "run"}, tmp_path, {})
    options = {"batch_size": 8, "num_workers": 0, "seed": 0}
    full = build_archive_loaders({"name": "s", "train": "archive/train", "test": "archive/test"}, checkpoint, options, tmp_path)
    tenth = build_archive_loaders({"name": "s@10%", "train": "archive/train", "test": "archive/test",
                                   "train_fraction": 0.1}, checkpoint, options, tmp_path)
    labels = [int(v) for batch in tenth.train for v in batch["label"]]
    assert sorted(labels) == [0, 1]  # one of the ten images of each class
    assert sum(len(b["label"]) for b in full.train) == 20
    assert sum(len(b["label"]) for b in tenth.test) == sum(len(b["label"]) for b in full.test) == 8
    assert tenth.class_names == full.class_names and tenth.dataset_id != full.dataset_id
