"""``multilabel_map``: multi-label classification on frozen features, scored by mean average precision.

A linear probe (BatchNorm without affine + linear head, binary cross-entropy per label) is trained on
the frozen training features with multi-hot targets; its sigmoid scores on the test split give
mAP (mean per-class average precision over the labels with a positive test sample, scikit-learn's
definition) and mean ROC-AUC, and per label ``average_precision`` and ``roc_auc``. This is the
BigEarthNet-style protocol the remote-sensing adapters declare. Integer labels are one-hot encoded, so
on a single-label archive it gives one-vs-rest AP.
"""

from __future__ import annotations

import numpy as np

from mae_domains.evaluation.linear_probe import linear_probe, probe_config, probe_defaults
from mae_domains.evaluation.metrics import class_count, one_hot, score_result
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult


def multi_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, K)`` float32 targets: multi-hot labels as they are, integer labels one-hot."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise ValueError(f"multi-hot labels have {labels.shape[1]} columns for {num_classes} classes")
        return labels.astype(np.float32)
    return one_hot(labels, num_classes)


class MultilabelMapProtocol(EvaluationProtocol):
    """Linear probe with binary cross-entropy, then mAP / mean ROC-AUC and per-label AP / ROC-AUC."""

    name = "multilabel_map"
    description = "multi-label linear probe (BCE) scored by mean average precision"

    def defaults(self) -> dict:
        return probe_defaults()

    def run(self, context: ProtocolContext) -> ProtocolResult:
        train, test = context.split_features("train"), context.split_features("test")
        num_classes = class_count(context.class_names, train.labels, test.labels)
        train_targets, test_targets = multi_hot(train.labels, num_classes), multi_hot(test.labels, num_classes)
        config = probe_config(context.settings, context.seed, context.device)
        result = linear_probe(train.features, train_targets, test.features, config, num_classes)
        return score_result(result.test_scores, test_targets, context, n_train=len(train),
                            details={"loss_per_epoch": result.loss_per_epoch},
                            sample_ids=getattr(test, "sample_ids", None))
