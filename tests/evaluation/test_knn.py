import numpy as np
import pytest
import torch

from mae_domains.evaluation.knn import knn_accuracy, knn_predict, knn_scores, nearest_neighbours
from tests.evaluation.helpers import separable_features


def test_knn_hand_made_set():
    # Train points on the unit circle; the query at 10 degrees is closest to class 0 (0 deg) then class 1.
    angles = np.deg2rad([0, 30, 90, 180])
    train = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    labels = np.array([0, 1, 1, 2])
    query = np.array([[np.cos(np.deg2rad(10)), np.sin(np.deg2rad(10))]], dtype=np.float32)
    scores = knn_scores(train, labels, query, k=2, temperature=0.1, device="cpu")
    sims = np.cos(np.deg2rad([10, 20]))  # to 0 deg (class 0) and to 30 deg (class 1)
    weights = np.exp(sims / 0.1)
    expected = np.array([weights[0], weights[1], 0.0]) / weights.sum()
    np.testing.assert_allclose(scores.numpy()[0], expected, rtol=1e-5)
    assert knn_predict(train, labels, query, k=2, temperature=0.1, device="cpu").tolist() == [0]
    # With k=3 the two class-1 neighbours (30 and 90 deg) outvote class 0 at a high temperature.
    assert knn_predict(train, labels, query, k=3, temperature=100.0, device="cpu").tolist() == [1]


def test_chunked_neighbours_equal_unchunked():
    rng = torch.Generator().manual_seed(0)
    train = torch.nn.functional.normalize(torch.randn(103, 8, generator=rng), dim=1)
    query = torch.nn.functional.normalize(torch.randn(9, 8, generator=rng), dim=1)
    full_sims, full_ids = nearest_neighbours(train, query, k=5, train_chunk=1000)
    chunk_sims, chunk_ids = nearest_neighbours(train, query, k=5, train_chunk=7)
    torch.testing.assert_close(full_sims, chunk_sims)
    assert torch.equal(full_ids, chunk_ids)
    a = knn_scores(train, torch.arange(103) % 4, query, k=5, train_chunk=7, test_chunk=2, device="cpu")
    b = knn_scores(train, torch.arange(103) % 4, query, k=5, device="cpu")
    torch.testing.assert_close(a, b)


def test_knn_separable_features_high_accuracy():
    features, labels = separable_features(40, 5, seed=1)
    acc = knn_accuracy(features[:150], labels[:150], features[150:], labels[150:], device="cpu")
    assert acc > 0.95


def test_knn_multilabel_is_weighted_label_mean():
    train = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    targets = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    scores = knn_scores(train, targets, query, k=2, temperature=1.0, device="cpu").numpy()[0]
    w = np.exp(np.array([1.0, 0.0]))
    w /= w.sum()
    np.testing.assert_allclose(scores, [w[0], 1.0, w[1]], rtol=1e-6)


def test_small_temperature_does_not_overflow():
    features, labels = separable_features(10, 3, seed=2)
    scores = knn_scores(features, labels, features, k=20, temperature=1e-4, device="cpu")
    assert torch.isfinite(scores).all()
    assert torch.allclose(scores.sum(dim=1), torch.ones(len(features)))


def test_k_larger_than_train_set():
    scores = knn_scores(np.eye(3, dtype=np.float32), np.array([0, 1, 2]), np.eye(3, dtype=np.float32), k=20, device="cpu")
    assert scores.argmax(dim=1).tolist() == [0, 1, 2]


def test_bad_arguments():
    with pytest.raises(ValueError):
        knn_scores(np.eye(2), np.array([0, 1]), np.eye(2), k=0)
