"""The scene_segmentation protocol from a benchmark spec: its own dataset builder reads scene / label pair
CSVs; records carry mIoU with an interval and IoU per named class; the scores equal those of the
``segment --truth`` path (class GeoTIFF written, then scored) for the same trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from mae_domains.data.sample import NormStats
from mae_domains.evaluation.loading import LoadedCheckpoint
from mae_domains.evaluation.runner import run_benchmark, run_protocol
from mae_domains.evaluation.scene_scores import mean_iou, score_rasters
from mae_domains.evaluation.scene_segmentation import segment_scene
from mae_domains.evaluation.scene_segmentation_protocol import build_scene_loaders
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import write_raster
from tests.remote_sensing.test_scene_segmentation import BANDS, SPECTRA, write_scene

ORIGIN = (600000.0, 5900000.0)
NAMES = {"0": "water", "1": "forest", "2": "urban"}


@pytest.fixture
def scene_pairs(tmp_path):
    """The striped scene; training labels on its left part, truth on its right part (a 8 px gap)."""
    scene, label = write_scene(tmp_path)
    with rasterio.open(label) as src:
        labels = src.read(1)
    cols = np.arange(labels.shape[1])[None, :]
    tags = {"classes": json.dumps(NAMES)}
    train = np.where(cols < 40, labels, 255).astype(np.uint8)
    test = np.where(cols >= 48, labels, 255).astype(np.uint8)
    write_raster(tmp_path / "train.tif", train, nodata=255, origin=ORIGIN, tags=tags)
    write_raster(tmp_path / "test.tif", test, nodata=255, origin=ORIGIN, tags=tags)
    (tmp_path / "pairs_train.csv").write_text("image,label\nscene.tif,train.tif\n")
    (tmp_path / "pairs_test.csv").write_text("image,label\nscene.tif,test.tif\n")
    return tmp_path, train, test


def checkpoint_loader():
    adapter = make_adapter("multispectral", img_size=32, bands=BANDS, groups=[BANDS])
    torch.manual_seed(0)
    mae = adapter.build_model(adapter.config.model, adapter.config.mask)
    stats = NormStats(mean=SPECTRA.mean(0).tolist(), std=SPECTRA.std(0).tolist())
    return lambda entry, root, loaded: LoadedCheckpoint(
        name=entry["name"], checkpoint_id="tiny", adapter_name=adapter.name, adapter=adapter, model=mae,
        stats=stats, config={"model": {"img_size": 32, "patch_size": 8}})


SETTINGS = {"steps": 3, "batch_size": 2, "bootstrap_block": 16, "bootstrap_resamples": 50}


def test_a_benchmark_runs_scene_segmentation_with_its_own_dataset_builder(scene_pairs):
    root, train, test = scene_pairs

    def labelled_samples_only(*args):
        raise AssertionError("the runner's default builder must not read scene pairs")

    spec = {"name": "map", "seeds": [0, 1], "checkpoints": [{"name": "tiny"}],
            "datasets": [{"name": "map", "train": "pairs_train.csv", "test": "pairs_test.csv"}],
            "protocols": [{"name": "scene_segmentation", **SETTINGS}]}
    records = run_benchmark(spec, root / "out", labelled_samples_only, checkpoint_loader(), root=root, plots=False)
    summary = [r for r in records if r.class_name is None]
    assert [(r.metric, r.seed) for r in summary] == [("miou", 0), ("miou", 1)]
    for r in summary:
        assert r.ci_low <= r.value <= r.ci_high and 0 <= r.value <= 1
        assert r.n_train == int((train != 255).sum())  # labelled training pixels
        assert r.n_test == int((test != 255).sum())  # every truth pixel scored (the right part is all valid)
    per_class = {r.class_name for r in records if r.metric == "iou"}
    assert {"water", "forest", "urban"} & per_class and per_class <= {"water", "forest", "urban"}
    assert (root / "out" / "results.jsonl").is_file()


def test_the_protocol_scores_equal_the_segment_truth_path_for_the_same_model(scene_pairs, tmp_path):
    root, _, test = scene_pairs
    checkpoint = checkpoint_loader()({"name": "tiny"}, root, {})
    data = build_scene_loaders({"name": "map", "train": "pairs_train.csv", "test": ["pairs_test.csv"]},
                               checkpoint, {}, root)
    assert data.class_names == ["water", "forest", "urban"] and len(data.train) == len(data.test) == 1
    details = {}
    records = run_protocol("scene_segmentation", data.train, data.test, encoder=checkpoint.encoder,
                           settings=SETTINGS, seed=3, details=details)
    scores = details["scores"]
    confusion = np.array(scores["confusion"]["counts"])
    assert records[0].value == pytest.approx(mean_iou(confusion)) == pytest.approx(scores["miou"])
    truth_counts = np.bincount(test[test != 255], minlength=3)
    named = dict(zip(scores["confusion"]["classes"], confusion.sum(1)))
    assert {k: named.get(v, 0) for k, v in zip(range(3), NAMES.values())} == dict(enumerate(truth_counts))
    # the same model through segment_scene (GeoTIFF) and score_rasters (strips) gives the same scores
    reader = data.test.adapter.open_scene(root / "scene.tif", data.test.stats)
    out = tmp_path / "classes.tif"
    segment_scene(details["model"], data.test.adapter, reader, out, details["config"], torch.device("cpu"))
    again = score_rasters([(out, root / "test.tif")], block=16, resamples=50, seed=3)
    assert again.to_dict() == scores


def test_class_names_of_the_entry_win_and_a_dataset_without_pairs_is_a_one_line_error(scene_pairs):
    root, _, _ = scene_pairs
    load = checkpoint_loader()({"name": "tiny"}, root, {})
    data = build_scene_loaders({"name": "map", "train": "pairs_train.csv", "test": "pairs_test.csv",
                                "classes": ["open water", "trees", "built"]}, load, {}, root)
    assert data.train.names == {0: "open water", 1: "trees", 2: "built"}
    with pytest.raises(ValueError, match="dataset chips: scene_segmentation needs test: a CSV of image,label pairs"):
        build_scene_loaders({"name": "chips", "train": "pairs_train.csv"}, load, {}, root)
    (root / "bad.csv").write_text("path,labels\na.tif,forest\n")
    with pytest.raises(ValueError, match="bad.csv: needs columns image and label") as err:
        build_scene_loaders({"name": "chips", "train": "bad.csv", "test": "pairs_test.csv"}, load, {}, root)
    assert "\n" not in str(err.value)
