"""Protocols as registered objects: the registry, a custom protocol through the shared runner, the
``multilabel_map`` protocol against scikit-learn, and one record builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from mae_domains.evaluation.linear_probe import LinearProbeConfig, linear_probe
from mae_domains.evaluation.loading import DownstreamData, LoadedCheckpoint
from mae_domains.evaluation.records import records_from_result
from mae_domains.evaluation.runner import protocol_defaults, run_benchmark, run_protocol
from mae_domains.grid import GridBatch
from mae_domains.protocols import (
    EvaluationProtocol, ProtocolContext, ProtocolResult, get_protocol, protocol_names, register_protocol,
    unregister_protocol,
)
from tests.evaluation.helpers import (
    GRID_KINDS, class_signal, dict_loader, micro_encoder, micro_grid_mae, pattern_images, separable_features,
)


class NearestCentroid(EvaluationProtocol):
    """Test protocol: the class whose mean training feature is the most cosine-similar."""

    name = "nearest_centroid"
    seeded = False

    def defaults(self) -> dict:
        return {"pool": "avg", "normalize": True}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        train, test = context.split_features("train"), context.split_features("test")
        features, queries = torch.from_numpy(train.features), torch.from_numpy(test.features)
        if context.settings["normalize"]:
            features, queries = (torch.nn.functional.normalize(x, dim=1) for x in (features, queries))
        labels = torch.from_numpy(train.labels)
        centroids = torch.stack([features[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
        predicted = (queries @ centroids.T).argmax(1).numpy()
        hits = predicted == test.labels
        names = list(context.class_names or [])
        per_class = {names[c]: float(hits[test.labels == c].mean()) for c in range(len(names))}
        return ProtocolResult(summary={"top1": float(hits.mean())}, per_class={"recall": per_class},
                              n_train=len(train), n_test=len(test), details={"centroids": centroids})


@pytest.fixture
def centroid_protocol():
    register_protocol(NearestCentroid)
    yield
    unregister_protocol("nearest_centroid")


def test_builtins_are_registered_and_unknown_names_suggest():
    assert {"knn", "linear_probe", "finetune", "multilabel_map"} <= set(protocol_names())
    assert get_protocol("finetune").trains_encoder and not get_protocol("knn").seeded
    assert protocol_defaults("multilabel_map")["pool"] == "cls" and "bootstrap_resamples" in protocol_defaults("knn")
    with pytest.raises(ValueError, match="did you mean 'multilabel_map'"):
        get_protocol("multilabel_mAP")


def test_a_second_protocol_under_a_taken_name_is_refused(centroid_protocol):
    class Other(NearestCentroid):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_protocol(Other)
    register_protocol(NearestCentroid)  # the same class again (a module imported twice) is fine
    with pytest.raises(TypeError):
        register_protocol(object())  # type: ignore[arg-type]


def test_custom_protocol_runs_through_run_protocol(centroid_protocol, tmp_path):
    train_images, train_labels = pattern_images(12, seed=0)
    test_images, test_labels = pattern_images(6, seed=1)
    train, test = dict_loader(train_images, train_labels, 8), dict_loader(test_images, test_labels, 8)
    records = run_protocol("nearest_centroid", train, test, encoder=micro_encoder(), class_names=["h", "v"],
                           settings={"normalize": False}, checkpoint="micro", dataset="stripes", device="cpu",
                           feature_cache=tmp_path, seed=3)
    summary = [r for r in records if r.class_name is None]
    assert [r.metric for r in summary] == ["top1"] and 0.0 <= summary[0].value <= 1.0
    assert summary[0].settings == {"pool": "avg", "normalize": False, "bootstrap_resamples": "auto", "confidence": 0.95}
    assert summary[0].n_train == 24 and summary[0].n_test == 12 and summary[0].seed == 3
    assert {r.class_name for r in records if r.class_name} == {"h", "v"}
    assert len(list(tmp_path.glob("*.json"))) == 2  # its frozen features went through the shared cache
    with pytest.raises(ValueError, match="did you mean 'normalize'"):
        run_protocol("nearest_centroid", train, test, encoder=micro_encoder(), settings={"normalise": True})


def test_custom_protocol_in_a_benchmark_runs_once_when_unseeded(centroid_protocol, tmp_path):
    def load(spec, root, loaded):
        return LoadedCheckpoint(name=spec["name"], checkpoint_id="micro", model=micro_encoder())

    def loaders(spec, checkpoint, options, root):
        train_images, train_labels = pattern_images(8, seed=0)
        test_images, test_labels = pattern_images(4, seed=1)
        return DownstreamData(train=dict_loader(train_images, train_labels, 8), test=dict_loader(test_images, test_labels, 8),
                              class_names=["h", "v"], dataset_id="stripes")

    spec = {"seeds": [0, 1], "checkpoints": [{"name": "micro"}], "datasets": [{"name": "stripes"}],
            "protocols": [{"name": "centroid", "protocol": "nearest_centroid"}]}
    records = run_benchmark(spec, tmp_path, loaders, load, device="cpu", plots=False)
    assert {(r.protocol, r.seed) for r in records} == {("nearest_centroid", 0)}
    assert (tmp_path / "results.md").read_text().count("nearest_centroid") >= 1


def test_multilabel_map_matches_sklearn():
    features, classes = separable_features(20, 4, dim=12, seed=2, spread=0.8)
    # multi-hot: the own class, plus class (c + 1) % 4 for every third sample
    targets = np.zeros((len(classes), 4), np.float32)
    targets[np.arange(len(classes)), classes] = 1
    extra = np.arange(len(classes)) % 3 == 0
    targets[np.nonzero(extra)[0], (classes[extra] + 1) % 4] = 1
    train = dict_loader(torch.from_numpy(features[:60]), torch.from_numpy(targets[:60]), 16)
    test = dict_loader(torch.from_numpy(features[60:]), torch.from_numpy(targets[60:]), 16)
    settings = {"epochs": 15, "batch_size": 20, "optimizer": "adamw", "base_lr": 0.2, "warmup_epochs": 1,
                "bootstrap_resamples": 0}
    names = ["a", "b", "c", "d"]
    records = run_protocol("multilabel_map", train, test, embed_fn=lambda x: x, settings=settings, class_names=names,
                           seed=5, device="cpu")
    summary = {r.metric: r.value for r in records if r.class_name is None}
    assert set(summary) == {"mAP", "mean_roc_auc"}
    # The same probe by hand: same seed, same settings, so the same scores.
    config = LinearProbeConfig(epochs=15, batch_size=20, optimizer="adamw", base_lr=0.2, warmup_epochs=1, seed=5,
                              device="cpu")
    scores = linear_probe(features[:60], targets[:60], features[60:], config, 4).test_scores.numpy()
    assert summary["mAP"] == pytest.approx(average_precision_score(targets[60:], scores, average="macro"), abs=1e-6)
    assert summary["mean_roc_auc"] == pytest.approx(roc_auc_score(targets[60:], scores, average="macro"), abs=1e-6)
    per_class_ap = {r.class_name: r.value for r in records if r.metric == "average_precision"}
    expected = average_precision_score(targets[60:], scores, average=None)
    assert per_class_ap == pytest.approx(dict(zip(names, expected)), abs=1e-6)
    assert {r.class_name for r in records if r.metric == "roc_auc"} == set(names)
    assert summary["mAP"] > 0.7  # the clusters are learnable


def test_multilabel_map_one_hot_encodes_single_labels():
    features, classes = separable_features(10, 3, dim=8, seed=1)
    train = dict_loader(torch.from_numpy(features[:20]), torch.from_numpy(classes[:20]), 10)
    test = dict_loader(torch.from_numpy(features[20:]), torch.from_numpy(classes[20:]), 10)
    records = run_protocol("multilabel_map", train, test, embed_fn=lambda x: x, device="cpu",
                           settings={"epochs": 5, "batch_size": 10, "bootstrap_resamples": 0})
    assert {r.metric for r in records if r.class_name is None} == {"mAP", "mean_roc_auc"}
    assert {r.class_name for r in records if r.metric == "average_precision"} == {"0", "1", "2"}


def test_records_from_result_is_the_one_record_builder():
    result = ProtocolResult(summary={"top1": 0.5, "mAP": float("nan")}, per_class={"f1": {"cat": 0.25}},
                            intervals={"top1": (0.4, 0.6)}, n_train=10, n_test=4)
    records = records_from_result(result, protocol="knn", settings={"k": 3}, seed=2, adapter="image",
                                  checkpoint="ck", dataset="ds", step=7)
    assert [(r.metric, r.class_name) for r in records] == [("top1", None), ("mAP", None), ("f1", "cat")]
    assert records[0].ci_low == 0.4 and records[0].ci_high == 0.6 and records[1].ci_low is None
    assert all(r.n_train == 10 and r.n_test == 4 and r.step == 7 and r.seed == 2 for r in records)
    assert records[0].config_hash == records[2].config_hash
    assert records[1].to_dict()["value"] is None  # NaN is stored as null


@pytest.mark.parametrize("kind", sorted(GRID_KINDS))
def test_frozen_feature_protocols_for_every_grid_encoder(kind):
    make_embedding, shape, batch_fn = GRID_KINDS[kind]
    torch.manual_seed(0)
    encoder = micro_grid_mae(make_embedding()).encoder
    images, labels = class_signal(16, shape, seed=0)
    test_images, test_labels = class_signal(8, shape, seed=1)
    train, test = dict_loader(images, labels, 8), dict_loader(test_images, test_labels, 8)
    calls = []

    def grid_batch(batch, device):
        calls.append(len(batch["label"]))
        return batch_fn(batch, device) if batch_fn else GridBatch(batch["image"].to(device))

    common = dict(encoder=encoder, grid_batch=grid_batch, class_names=["down", "up"], device="cpu")
    knn = run_protocol("knn", train, test, settings={"k": 5, "pool": "avg", "bootstrap_resamples": 0}, **common)
    probe = run_protocol("linear_probe", train, test, settings={"epochs": 3, "batch_size": 8, "bootstrap_resamples": 0},
                         **common)
    assert sum(calls) == 2 * (16 + 8)  # each protocol embedded both splits through the batch function
    for records in (knn, probe):
        summary = {r.metric: r.value for r in records if r.class_name is None}
        assert set(summary) == {"top1", "balanced_accuracy", "macro_f1", "mean_roc_auc"} and all(np.isfinite(list(summary.values())))
