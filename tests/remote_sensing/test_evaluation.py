"""Remote sensing through the shared protocols: kNN / linear probe on a EuroSAT-style archive, multi-label
mAP on a BigEarthNet-style manifest, and scene embeddings that keep each chip's CRS and bounds."""

from __future__ import annotations

import numpy as np
import torch

from mae_domains.evaluation.runner import run_protocol
from mae_remote_sensing.evaluation import embed_scenes, labelled_loaders
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import write_raster

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
# per class: reflectance x 10000 per band (vegetation, water, urban)
SPECTRA = {"Forest": [300, 600, 300, 4200, 2000, 900], "SeaLake": [700, 600, 300, 100, 50, 30],
           "Industrial": [1300, 1500, 1700, 2100, 2600, 2400]}


def write_eurosat(root, per_class, seed):
    rng = np.random.default_rng(seed)
    for name, spectrum in SPECTRA.items():
        for i in range(per_class):
            data = np.asarray(spectrum, np.float32)[:, None, None] * rng.uniform(0.8, 1.2, (6, 32, 32))
            write_raster(root / name / f"{name}_{i}.tif", data.astype(np.uint16), descriptions=BANDS)
    return root


def micro_model(adapter):
    torch.manual_seed(0)
    return adapter.build_model(adapter.config.model, adapter.config.mask)


def evaluate(adapter, data, protocols, settings):
    """Records of the shared protocols with the adapter's embedding and grid batches."""
    model = micro_model(adapter)
    records = []
    for protocol in protocols:
        records += run_protocol(protocol, data.train, data.test, encoder=model.encoder,
                                embed_batch=lambda batch, device: adapter.embed(model, batch, device, "cls"),
                                grid_batch=adapter.grid_batch, class_names=data.classes, device="cpu",
                                settings=settings[protocol], adapter=adapter.name)
    return records


def test_knn_and_linear_probe_on_eurosat_style_archive(tmp_path):
    train = write_eurosat(tmp_path / "train", 6, 0)
    test = write_eurosat(tmp_path / "test", 3, 1)
    adapter = make_adapter("multispectral", bands=BANDS, groups=[BANDS[:4], BANDS[4:]], chips_per_scene=1)
    stats = adapter.compute_stats(adapter.discover([train]))
    data = labelled_loaders(adapter, [train], [test], stats, batch_size=8)
    assert not data.multilabel and data.classes == sorted(SPECTRA)
    probe = {"epochs": 30, "batch_size": 18, "optimizer": "adamw"}
    records = evaluate(adapter, data, ("knn", "linear_probe"), {"knn": {"k": 5}, "linear_probe": probe})
    summary = {(r.protocol, r.metric): r.value for r in records if r.class_name is None}
    assert {("knn", "top1"), ("linear_probe", "top1"), ("knn", "macro_f1")} <= set(summary)
    assert all(np.isfinite(v) for v in summary.values())
    assert summary[("knn", "top1")] >= 0.6  # spectra differ strongly: even a random encoder separates them
    assert {r.class_name for r in records if r.class_name} == set(SPECTRA)
    assert all(r.n_train == 18 and r.n_test == 9 for r in records)


def test_multilabel_map_on_bigearthnet_style_manifest(tmp_path):
    rng = np.random.default_rng(3)
    names = list(SPECTRA)
    combos = [[n] for n in names] + [[a, b] for i, a in enumerate(names) for b in names[i + 1:]]
    for split in ("train", "test"):
        lines = ["path,label"]
        for i in range(12 if split == "train" else 6):
            labels = combos[i % len(combos)]
            data = sum(np.asarray(SPECTRA[n], np.float32) for n in labels)[:, None, None] / len(labels)
            data = data * rng.uniform(0.9, 1.1, (6, 32, 32))
            write_raster(tmp_path / split / f"patch_{i}.tif", data.astype(np.uint16), descriptions=BANDS)
            lines.append(f"{split}/patch_{i}.tif,{';'.join(labels)}")
        (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
    adapter = make_adapter("multispectral", bands=BANDS, groups=[BANDS[:4], BANDS[4:]], chips_per_scene=1)
    data = labelled_loaders(adapter, [tmp_path / "train.csv"], [tmp_path / "test.csv"], None, batch_size=8)
    records = evaluate(adapter, data, ("knn", "multilabel_map"),
                       {"knn": {"k": 5}, "multilabel_map": {"epochs": 20, "batch_size": 12, "optimizer": "adamw"}})
    summary = {(r.protocol, r.metric) for r in records if r.class_name is None}
    assert summary == {(p, m) for p in ("knn", "multilabel_map") for m in ("mAP", "mean_roc_auc")}
    assert {(r.metric, r.class_name) for r in records if r.protocol == "multilabel_map" and r.class_name} <= {
        (m, c) for m in ("average_precision", "roc_auc") for c in SPECTRA}
    assert data.multilabel and adapter.multilabel and adapter.classes == sorted(SPECTRA)
    assert all(np.isfinite(r.value) for r in records if r.class_name is None)
    assert all(r.n_train == 12 and r.n_test == 6 for r in records)


def test_scene_embeddings_keep_crs_and_bounds(tmp_path):
    data = np.random.default_rng(0).integers(100, 3000, (6, 96, 80)).astype(np.uint16)
    path = write_raster(tmp_path / "scene.tif", data, descriptions=BANDS)
    adapter = make_adapter("multispectral", bands=BANDS, groups=[BANDS[:4], BANDS[4:]])
    result = embed_scenes(adapter, micro_model(adapter), [path], None, stride=32, pool="avg")
    assert result.features.shape == (9, 64)  # 3 rows x 3 columns of 32 px chips (last column moved inward)
    assert {c["crs"] for c in result.chips} == {"EPSG:32633"}
    assert result.chips[0]["bounds"] == [500000.0, 5800000.0 - 320, 500000.0 + 320, 5800000.0]
    assert adapter.options["sampling"] == "random"  # restored
