"""Class balancing for uneven label sets: the weights, the weighted fine-tuning loss, the balanced kNN vote,
and ``min_steps`` for fine-tuning on a handful of labels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mae_domains.evaluation.finetune import FinetuneConfig, classification_loss, finetune
from mae_domains.evaluation.knn import KnnProtocol
from mae_domains.evaluation.linear_probe import LinearProbeConfig, linear_probe
from mae_domains.labelled.class_balance import balanced_class_weights
from mae_domains.protocols import ProtocolContext
from tests.evaluation.helpers import dict_loader, micro_encoder, pattern_images


def test_balanced_weights_are_n_over_k_times_count_and_zero_for_an_absent_class():
    weights = balanced_class_weights([0, 0, 0, 1], num_classes=3)
    # two classes present, 4 labels: 4 / (2 * 3) and 4 / (2 * 1); class 2 has no sample
    torch.testing.assert_close(weights, torch.tensor([2 / 3, 2.0, 0.0]))
    with pytest.raises(ValueError, match="single-label"):
        balanced_class_weights(np.eye(2), num_classes=2)
    with pytest.raises(ValueError, match="class_weight must be one of none, balanced"):
        FinetuneConfig(class_weight="inverse")


def test_weighted_loss_is_the_weighted_mean_of_per_sample_cross_entropy_for_hard_and_soft_targets():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    weights = torch.tensor([0.75, 1.5])
    per_sample = -F.log_softmax(logits, dim=1)[torch.arange(3), labels]
    expected = (per_sample * weights[labels]).sum() / weights[labels].sum()
    torch.testing.assert_close(classification_loss(logits, labels, class_weights=weights), expected)
    one_hot = F.one_hot(labels, 2).float()
    torch.testing.assert_close(classification_loss(logits, one_hot, soft=True, class_weights=weights), expected)
    torch.testing.assert_close(classification_loss(logits, labels), per_sample.mean())  # unweighted as before


def test_min_steps_lengthens_a_run_of_one_step_per_epoch():
    images, labels = pattern_images(2, seed=0)  # 4 images, one batch: one step per epoch
    config = FinetuneConfig(epochs=2, warmup_epochs=1, min_steps=7, device="cpu")
    result = finetune(micro_encoder(), dict_loader(images, labels, 4, shuffle=True), None, 2, config)
    assert len(result.loss_per_epoch) == 7
    plain = finetune(micro_encoder(), dict_loader(images, labels, 4, shuffle=True), None, 2,
                     FinetuneConfig(epochs=2, warmup_epochs=1, device="cpu"))
    assert len(plain.loss_per_epoch) == 2


def test_balanced_fine_tuning_stops_predicting_only_the_majority_class():
    images, labels = pattern_images(12, seed=0)
    keep = torch.cat([torch.nonzero(labels == 0).flatten(), torch.nonzero(labels == 1).flatten()[:2]])  # 12:2
    test_images, test_labels = pattern_images(10, seed=1)

    def recall_of_minority(class_weight: str) -> float:
        config = FinetuneConfig(epochs=4, base_lr=0.05, warmup_epochs=1, device="cpu", class_weight=class_weight)
        result = finetune(micro_encoder(), dict_loader(images[keep], labels[keep], 14, shuffle=True),
                          dict_loader(test_images, test_labels, 20), 2, config)
        predicted = result.test_scores.argmax(1)
        return (predicted[test_labels == 1] == 1).float().mean().item()

    assert recall_of_minority("none") < recall_of_minority("balanced")


def test_balanced_knn_divides_each_vote_by_the_class_frequency():
    # eight class-0 points and two class-1 points; the query's three nearest are two class-0 and one class-1
    # at the same similarity, so the plain vote is 2/3 : 1/3 and the balanced one 2/3 * 10/16 : 1/3 * 10/4.
    train = np.array([[1.0, 0.0]] * 2 + [[-1.0, 0.0]] * 6 + [[1.0, 0.0]] + [[0.0, -1.0]], dtype=np.float32)
    train_labels = np.array([0] * 8 + [1] * 2)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    split = {"train": SimpleNamespace(features=train, labels=train_labels),
             "test": SimpleNamespace(features=query, labels=np.array([1]))}

    def scores(class_weight: str) -> np.ndarray:
        context = ProtocolContext(train=[], test=[], features=lambda s: _Split(split[s]), device="cpu",
                                  settings={"k": 3, "temperature": 1.0, "class_weight": class_weight})
        return KnnProtocol().run(context).summary

    assert scores("none")["top1"] == 0.0  # the majority wins the plain vote ...
    assert scores("balanced")["top1"] == 1.0  # ... and loses the balanced one (0.42 : 0.83)


class _Split:
    def __init__(self, ns: SimpleNamespace) -> None:
        self.features, self.labels = ns.features, ns.labels

    def __len__(self) -> int:
        return len(self.labels)


def test_balanced_linear_probe_recovers_the_minority_class():
    rng = np.random.default_rng(0)
    # 40 majority and 4 minority points whose classes overlap: the plain probe favours the majority
    train = np.concatenate([rng.normal(0.0, 1.0, (40, 4)), rng.normal(1.0, 1.0, (4, 4))]).astype(np.float32)
    labels = np.array([0] * 40 + [1] * 4)
    test = np.concatenate([rng.normal(0.0, 1.0, (50, 4)), rng.normal(1.0, 1.0, (50, 4))]).astype(np.float32)

    def minority_recall(class_weight: str) -> float:
        config = LinearProbeConfig(epochs=30, batch_size=44, warmup_epochs=0, device="cpu", class_weight=class_weight)
        scores = linear_probe(train, labels, test, config, num_classes=2).test_scores
        return float((scores[50:].argmax(1) == 1).float().mean())

    assert minority_recall("none") + 0.2 < minority_recall("balanced")
