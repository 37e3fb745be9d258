"""Weighted k-nearest-neighbour classification on frozen features (DINO / Scale-MAE protocol).

Features are L2-normalized; each test sample takes its ``k`` most cosine-similar training samples and
weights them by ``exp(sim / T)``. A class score is the weighted share of neighbours with that label
(multi-label: the weighted mean of their multi-hot vectors). The shares are DINO's weighted votes divided
by their sum, so the ranking is the same and the scores can feed ROC-AUC and mAP directly.
``class_weight: balanced`` divides each class's share by its training frequency and renormalizes (the
prior correction for uneven classes: with 20 neighbours and a 9:1 split, the unweighted vote is almost
always the majority class); single-label only.

Similarities are computed chunk by chunk over both the test and the train set, keeping a running top-k,
so memory stays at ``test_chunk x train_chunk`` whatever the archive size (:mod:`mae_domains.labelled.weighted_knn`).
Registered as the ``knn`` protocol (:class:`KnnProtocol`).
"""

from __future__ import annotations

import torch

from mae_domains.evaluation.metrics import class_count, score_result
from mae_domains.labelled.class_balance import balanced_class_weights, check_class_weight
# The math lives one floor down (the engine's online kNN uses it too); these names stay importable here.
from mae_domains.labelled.weighted_knn import (  # noqa: F401
    DEFAULT_K, DEFAULT_TEMPERATURE, as_tensor, knn_accuracy, knn_predict, knn_scores, nearest_neighbours,
    prepare_labels,
)
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult


class KnnProtocol(EvaluationProtocol):
    """``knn``: weighted kNN on frozen features (cosine, ``k``, ``temperature``); deterministic, so it
    runs once whatever the seeds."""

    name = "knn"
    description = "weighted k-nearest neighbours on frozen features"
    seeded = False

    def defaults(self) -> dict:
        return {"k": DEFAULT_K, "temperature": DEFAULT_TEMPERATURE, "pool": "cls", "class_weight": "none"}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        train, test = context.split_features("train"), context.split_features("test")
        num_classes = class_count(context.class_names, train.labels, test.labels)
        scores = knn_scores(train.features, train.labels, test.features, int(context.settings["k"]),
                            float(context.settings["temperature"]), num_classes, device=context.device)
        if check_class_weight(context.settings.get("class_weight", "none")) == "balanced":
            scores = scores * balanced_class_weights(train.labels, num_classes).to(scores)
            scores = scores / scores.sum(dim=1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
        return score_result(scores, test.labels, context, n_train=len(train),
                            sample_ids=getattr(test, "sample_ids", None))
