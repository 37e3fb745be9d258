"""Label CSVs for adapters that do not read manifests (the runner's own ``path,labels[,split]`` format),
label encoding, and split checks of a single manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mae_domains.labelled.label_lists import encode_labels, read_label_csv, read_labelled
from mae_domains.evaluation.loading import labelled_splits
from mae_domains.registry import get_adapter
from tests.evaluation.helpers import write_stripes_archive


@pytest.fixture
def stripes(tmp_path) -> Path:
    write_stripes_archive(tmp_path, "train", 2, seed=0)
    return tmp_path


def _pngs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


def test_a_path_label_list_for_an_adapter_that_reads_no_manifests(stripes):
    images = _pngs(stripes)
    listing = stripes / "screening.csv"
    listing.write_text("path,label\n" + "".join(f"{p.relative_to(stripes)},{'abnormal' if i % 2 else 'normal'}\n"
                                                for i, p in enumerate(images)))
    found = read_labelled(get_adapter("image"), [listing])
    assert [Path(r) for r in found.refs] == images and found.labels[:2] == ["normal", "abnormal"]
    assert found.splits == [None] * len(images)
    assert encode_labels([], found.labels)[2:] == (["abnormal", "normal"], False)


def test_the_runners_manifest_format_with_multi_label_rows(stripes):
    images = _pngs(stripes)
    manifest = stripes / "m.csv"
    manifest.write_text("path,labels,split\n" + "".join(
        f"{p},{'a|b' if i == 0 else 'a'},{'test' if i % 2 else 'train'}\n" for i, p in enumerate(images)))
    found = read_label_csv(manifest)
    assert found.labels[0] == ("a", "b") and found.labels[1] == ("a",)
    train, test = labelled_splits(get_adapter("image"), {"name": "m", "manifest": str(manifest)}, stripes)
    y_train, y_test, classes, multilabel = encode_labels(train.labels, test.labels)
    assert multilabel and classes == ["a", "b"] and len(y_train) + len(y_test) == len(images)
    np.testing.assert_array_equal(y_train[0], [1, 1])


def test_single_label_encoding_and_forced_multilabel():
    y_train, y_test, classes, multilabel = encode_labels(["x", "y", "x"], ["y"])
    assert (y_train, y_test, classes, multilabel) == ([0, 1, 0], [1], ["x", "y"], False)
    forced = encode_labels(["x", "y"], ["y"], multilabel=True)
    assert forced[3] and np.stack(forced[0]).tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="do not occur in the training set"):
        encode_labels(["x"], ["z"])


def test_a_manifest_without_a_usable_split_column_is_an_error(stripes):
    manifest = stripes / "nosplit.csv"
    manifest.write_text("path,labels\n" + "".join(f"{p},a\n" for p in _pngs(stripes)))
    with pytest.raises(ValueError, match="split column"):
        labelled_splits(get_adapter("image"), {"name": "m", "manifest": str(manifest)}, stripes)
    bad = stripes / "badsplit.csv"
    bad.write_text("path,labels,split\n" + "".join(f"{p},a,val\n" for p in _pngs(stripes)))
    with pytest.raises(ValueError, match="val"):
        labelled_splits(get_adapter("image"), {"name": "m", "manifest": str(bad)}, stripes)
