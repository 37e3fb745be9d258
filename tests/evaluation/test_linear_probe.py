import numpy as np
import pytest
import torch

from mae_domains.evaluation.linear_probe import (
    LinearProbeConfig, LinearProbeHead, linear_probe, linear_probe_accuracy, train_linear_probe,
)
from tests.evaluation.helpers import separable_features


def test_batchnorm_has_no_affine_parameters():
    head = LinearProbeHead(16, 3)
    assert head.norm.affine is False
    assert head.norm.weight is None and head.norm.bias is None
    assert [name for name, _ in head.named_parameters()] == ["linear.weight", "linear.bias"]


# LARS scales each update by 0.001 x |w| / |g|: with few small batches it needs a much larger base lr.
@pytest.mark.parametrize("optimizer, base_lr", [("sgd", None), ("lars", 10.0), ("adamw", None)])
def test_probe_reaches_high_accuracy_on_separable_features(optimizer, base_lr):
    features, labels = separable_features(60, 4, seed=3)
    config = LinearProbeConfig(epochs=30, batch_size=32, optimizer=optimizer, base_lr=base_lr, warmup_epochs=2, device="cpu")
    acc = linear_probe_accuracy(features[:180], labels[:180], features[180:], labels[180:], config)
    assert acc > 0.95


def test_probe_is_seeded():
    features, labels = separable_features(20, 3, seed=4)
    config = LinearProbeConfig(epochs=5, batch_size=16, device="cpu", seed=7)
    a = train_linear_probe(features, labels, config)
    b = train_linear_probe(features, labels, config)
    torch.testing.assert_close(a.head.linear.weight, b.head.linear.weight)
    assert a.loss_per_epoch == b.loss_per_epoch
    c = train_linear_probe(features, labels, LinearProbeConfig(epochs=5, batch_size=16, device="cpu", seed=8))
    assert not torch.equal(a.head.linear.weight, c.head.linear.weight)


def test_multilabel_probe_uses_sigmoid_scores():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((120, 6)).astype(np.float32)
    targets = np.stack([features[:, 0] > 0, features[:, 1] > 0], axis=1).astype(np.float32)
    result = linear_probe(features[:90], targets[:90], features[90:], LinearProbeConfig(epochs=40, batch_size=30, device="cpu"))
    scores = result.test_scores.numpy()
    assert scores.shape == (30, 2) and (scores >= 0).all() and (scores <= 1).all()
    assert ((scores > 0.5) == (targets[90:] > 0.5)).mean() > 0.9


def test_config_checks():
    with pytest.raises(ValueError, match="unknown optimizer"):
        LinearProbeConfig(optimizer="rmsprop")
    assert "device" not in LinearProbeConfig().settings()


def test_last_batch_of_one_is_avoided():
    features, labels = separable_features(11, 3, seed=5)  # 33 samples, batch 16 -> last batch of 1
    result = train_linear_probe(features, labels, LinearProbeConfig(epochs=2, batch_size=16, device="cpu"))
    assert len(result.loss_per_epoch) == 2
