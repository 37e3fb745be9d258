"""The cell-biology workflow against direct computations: aggregation, batch correction, replicate mAP,
relationship recall, 1-NN macro-F1, and the registered protocols on a small plate archive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score, f1_score
from sklearn.neighbors import KNeighborsClassifier

from mae_microscopy.aggregation import ProfileTable, aggregate, embed_archive, select_channels
from mae_microscopy.batch_correction import (
    CorrectionSettings, batch_correct, center_scale_by_batch, coral_align, pca_on_controls,
)
from mae_microscopy.bio_metrics import (
    average_precision, cosine_similarity_matrix, one_nn_macro_f1, read_relationships, relationship_recall,
    replicate_map,
)
from tests.microscopy.conftest import make_adapter
from tests.microscopy.files import PAINTING, write_cells_ome


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores, relevant = rng.normal(size=15), rng.random(15) < 0.3
        if relevant.any():
            assert average_precision(scores, relevant) == pytest.approx(average_precision_score(relevant, scores))


def test_replicate_map_against_a_direct_computation():
    rng = np.random.default_rng(1)
    groups = np.array(["DMSO"] * 4 + ["a"] * 3 + ["b"] * 3 + ["c"] * 1)
    features = rng.normal(size=(len(groups), 6))
    result = replicate_map(features, groups, controls=["DMSO"])
    sims = cosine_similarity_matrix(features)
    expected = {}
    for g in ("a", "b"):
        aps = []
        for i in np.flatnonzero(groups == g):
            others = np.arange(len(groups)) != i
            aps.append(average_precision_score(groups[others] == g, sims[i, others]))
        expected[g] = np.mean(aps)
    assert set(result.per_group) == {"a", "b"}  # controls and single replicates are not queried
    assert result.per_group["a"] == pytest.approx(expected["a"]) and result.map == pytest.approx(np.mean(list(expected.values())))
    only_controls = replicate_map(features, groups, controls=["DMSO"], negatives="controls")
    i = np.flatnonzero(groups == "a")[0]
    candidates = ((groups == "a") | (groups == "DMSO")) & (np.arange(len(groups)) != i)
    assert only_controls.per_query[i] == pytest.approx(average_precision_score(groups[candidates] == "a", sims[i, candidates]))
    tight = np.repeat(np.eye(3), 3, axis=0) + 0.01 * rng.normal(size=(9, 3))  # replicates agree: mAP 1
    assert replicate_map(tight, np.repeat(["x", "y", "z"], 3)).map == pytest.approx(1.0)


def test_relationship_recall_against_a_direct_computation(tmp_path):
    rng = np.random.default_rng(2)
    names = [f"g{i}" for i in range(12)]
    features = rng.normal(size=(12, 8))
    features[1] = features[0] + 0.01 * rng.normal(size=8)  # a strong positive relationship
    features[3] = -features[2]  # a strong anti-correlation counts too
    pairs = [("g0", "g1"), ("g2", "g3"), ("g4", "g5"), ("g0", "unknown"), ("g6", "g6")]
    (tmp_path / "rel.csv").write_text("entity_a,entity_b,source\n" + "\n".join(f"{a},{b},CORUM" for a, b in pairs) + "\n")
    result = relationship_recall(features, names, read_relationships(tmp_path / "rel.csv"))
    sims = cosine_similarity_matrix(features)
    low, high = np.percentile(sims[np.triu_indices(12, 1)], [5, 95])
    in_tail = [s <= low or s >= high for s in (sims[0, 1], sims[2, 3], sims[4, 5])]
    assert result.missing == 2 and len(result.pairs) == 3
    assert result.recall == pytest.approx(np.mean(in_tail)) and in_tail[:2] == [True, True]
    assert (result.lower, result.upper) == pytest.approx((low, high))


def test_one_nn_macro_f1_matches_sklearn():
    rng = np.random.default_rng(3)
    train_x, test_x = rng.normal(size=(40, 5)), rng.normal(size=(25, 5))
    train_y, test_y = rng.integers(0, 4, 40), rng.integers(0, 4, 25)
    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(train_x, train_y)
    expected = f1_score(test_y, knn.predict(test_x), average="macro")
    assert one_nn_macro_f1(train_x, train_y, test_x, test_y) == pytest.approx(expected)


def plates_with_batch_effects(seed: int = 4):
    """Two plates x (12 control + 2 x 4 treated) wells in 6 dimensions; plate 2 has a per-dimension scale
    and shift (a batch effect larger than the treatments)."""
    rng = np.random.default_rng(seed)
    d = 6
    effect = {"DMSO": np.zeros(d), "a": np.eye(d)[0] * 2, "b": np.eye(d)[2] * 2}
    rows, plates, groups = [], [], []
    for plate in ("P1", "P2"):
        shift = rng.normal(size=d) * 4 if plate == "P2" else np.zeros(d)
        scale = rng.uniform(0.3, 3, size=d) if plate == "P2" else np.ones(d)
        for group, count in (("DMSO", 12), ("a", 4), ("b", 4)):
            for _ in range(count):
                rows.append((effect[group] + rng.normal(size=d) * 0.5 + 1.0) * scale + shift)
                plates.append(plate)
                groups.append(group)
    return np.array(rows), np.array(plates), np.array(groups)


def test_batch_correction_steps():
    x, plates, groups = plates_with_batch_effects()
    controls = groups == "DMSO"
    centred = center_scale_by_batch(x, plates, controls)
    for p in ("P1", "P2"):
        ctrl = centred[(plates == p) & controls]
        np.testing.assert_allclose(ctrl.mean(0), 0, atol=1e-9)
        np.testing.assert_allclose(ctrl.std(0), 1, rtol=1e-9)
    projected, pca = pca_on_controls(x, controls, 3)
    np.testing.assert_allclose(projected, PCA(3, svd_solver="full").fit(x[controls]).transform(x), atol=1e-8)
    y = np.random.default_rng(5).normal(size=(60, 3)) @ np.array([[2, 0, 0], [1, 1, 0], [0, 0, 0.5]])
    y_plates, y_ctrl = np.repeat(["A", "B"], 30), np.tile([True, True, False], 20)
    aligned = coral_align(y, y_plates, y_ctrl, eps=1e-9)
    for p in ("A", "B"):
        ctrl = aligned[(y_plates == p) & y_ctrl]
        np.testing.assert_allclose(np.cov(ctrl, rowvar=False, bias=True), np.eye(3), atol=1e-6)
    recolored = coral_align(y, y_plates, y_ctrl, eps=1e-9, recolor=True)
    pooled = np.cov(y[y_ctrl], rowvar=False, bias=True)
    np.testing.assert_allclose(np.cov(recolored[(y_plates == "A") & y_ctrl], rowvar=False, bias=True), pooled, atol=1e-6)
    with pytest.raises(ValueError, match="batch 'B' has no control wells"):
        center_scale_by_batch(y, y_plates, y_plates == "A")


def test_batch_correction_makes_replicates_across_plates_agree():
    x, plates, groups = plates_with_batch_effects()
    raw = replicate_map(x, groups, controls=["DMSO"]).map  # about 0.49
    for coral in (False, True):
        corrected = batch_correct(x, plates, groups == "DMSO", CorrectionSettings(pca_components=5, coral=coral))
        assert corrected.shape == (len(x), 5)
        assert replicate_map(corrected, groups, controls=["DMSO"]).map > raw + 0.25  # about 0.87 and 0.84


def test_aggregate_per_image_and_well(tmp_path):
    features = np.arange(12, dtype=np.float32).reshape(6, 2)
    ids = {"plate": ["P"] * 6, "well": ["A01", "A01", "A01", "A02", "A02", "B01"], "site": ["1", "1", "2", "1", "1", "1"],
           "perturbation": ["DMSO", "DMSO", "DMSO", "x", "x", "y"], "sample_id": [f"c{i}" for i in range(6)]}
    table = ProfileTable(features, ids)
    wells = aggregate(table, ["plate", "well"])
    np.testing.assert_allclose(wells.features, [features[:3].mean(0), features[3:5].mean(0), features[5]])
    assert wells.column("perturbation").tolist() == ["DMSO", "x", "y"] and wells.column("count").tolist() == ["3", "2", "1"]
    assert "sample_id" not in wells.ids and "site" not in wells.ids  # not constant within a well
    images = aggregate(table, ["plate", "well", "site"], how="median")
    np.testing.assert_allclose(images.features[0], np.median(features[:2], axis=0))
    back = ProfileTable.read(wells.write(tmp_path / "wells.npz"))
    np.testing.assert_array_equal(back.features, wells.features)
    assert back.column("well").tolist() == ["A01", "A02", "B01"]
    assert (tmp_path / "wells.csv").read_text().splitlines()[0] == "plate,well,perturbation,count"


def plate_archive(folder):
    """A manifest of 2 plates x 3 wells (DMSO, drugA, drugB) x 2 sites of 5-channel OME-TIFFs."""
    folder.mkdir()
    rows = ["path,plate,well,site,perturbation,label"]
    k = 0
    for plate in ("P1", "P2"):
        for well, pert in (("A01", "DMSO"), ("A02", "drugA"), ("A03", "drugB"), ("B01", "DMSO"), ("B02", "drugA"), ("B03", "drugB")):
            for site in ("1", "2"):
                name = f"{plate}_{well}_{site}.ome.tif"
                write_cells_ome(folder / name, PAINTING, k, size=32)
                k += 1
                rows.append(f"{name},{plate},{well},{site},{pert},{pert}")
    (folder / "plates.csv").write_text("\n".join(rows) + "\n")
    return folder / "plates.csv"


@pytest.mark.slow
def test_embed_archive_aggregates_with_ids(tmp_path):
    manifest = plate_archive(tmp_path / "plates")
    adapter = make_adapter(32, sampling="grid")
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    crops = embed_archive(adapter, model, [manifest], None, pool="avg", batch_size=8)
    assert len(crops) == 24 and crops.features.shape == (24, 64)
    assert set(crops.column("perturbation")) == {"DMSO", "drugA", "drugB"}
    wells = aggregate(crops, ["plate", "well"])
    assert len(wells) == 12 and set(wells.column("count")) == {"2"}
    first = (crops.column("plate") == "P1") & (crops.column("well") == "A01")
    np.testing.assert_allclose(wells.features[0], crops.features[first].mean(0), rtol=1e-5)
    subset = embed_archive(adapter, model, [manifest], None, pool="avg", channels=["DNA", "Mito"])
    assert subset.features.shape == (24, 64) and not np.allclose(subset.features, crops.features)


@pytest.mark.slow
def test_registered_protocols_run_on_a_plate_archive(tmp_path):
    from mae_domains.data.loaders import evaluation_loader
    from mae_domains.evaluation import run_protocol

    manifest = plate_archive(tmp_path / "plates")
    (tmp_path / "rel.csv").write_text("entity_a,entity_b\ndrugA,drugB\n")
    adapter = make_adapter(32, sampling="grid")
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask).eval()
    refs = adapter.discover([manifest])
    labels = [adapter.classes.index(adapter.label_of(r)) for r in refs]
    loader = evaluation_loader(adapter, refs, None, batch_size=8, labels=labels)
    common = dict(encoder=model.encoder, grid_batch=adapter.grid_batch, device="cpu")
    records = run_protocol("microscopy.replicate_map", loader, loader, settings={"pool": "avg", "pca_components": 4}, **common)
    value = {r.metric: r.value for r in records if r.class_name is None}
    crops = embed_archive(adapter, model, [manifest], None, pool="avg")
    wells = aggregate(crops, ["plate", "well"])
    groups = wells.column("perturbation")
    corrected = batch_correct(wells.features, wells.column("plate"), groups == "DMSO", CorrectionSettings(pca_components=4))
    assert value["replicate_map"] == pytest.approx(replicate_map(corrected, groups, ["DMSO"]).map, rel=1e-4)
    recall = run_protocol("microscopy.relationship_recall", loader, loader,
                          settings={"relationships": str(tmp_path / "rel.csv"), "correct": False}, **common)
    assert {r.metric for r in recall} == {"recall", "pairs", "missing_pairs"}
    chammi = run_protocol("microscopy.chammi", loader, loader, settings={"pool": "avg", "train_channels": PAINTING,
                                                                         "test_channels": ["DNA", "ER", "Mito"]}, **common)
    full = embed_archive(adapter, model, [manifest], None, pool="avg")
    part = embed_archive(adapter, model, [manifest], None, pool="avg", channels=["DNA", "ER", "Mito"])
    y = np.array([adapter.classes.index(p) for p in full.column("label")])
    assert chammi[0].value == pytest.approx(one_nn_macro_f1(full.features, y, part.features, y), rel=1e-5)
    knn = run_protocol("microscopy.one_nn_f1", loader, loader, **common)
    assert knn[0].metric == "macro_f1" and knn[0].value == pytest.approx(1.0)  # train == test: its own neighbour
    batch = next(iter(loader))
    assert select_channels(batch, ["Mito", "DNA"])["image"].shape[1] == 2
