"""A protocol run shorter than its warmup (``epochs=3`` with the default ``warmup_epochs: 10``) warms up for the
default recipe's share of the run instead, says so, and learns."""

from __future__ import annotations

import logging

import pytest

from mae_domains.evaluation.linear_probe import LinearProbeConfig, linear_probe_accuracy, train_linear_probe
from mae_domains.optim import warmup_within_run
from tests.evaluation.helpers import separable_features


def test_warmup_longer_than_the_run_is_clamped_with_a_warning(caplog):
    features, labels = separable_features(60, 4, seed=3)
    config = LinearProbeConfig(epochs=3, batch_size=32, device="cpu")
    with caplog.at_level(logging.WARNING, logger="mae_domains.optim"):
        result = train_linear_probe(features[:180], labels[:180], config)
    steps_per_epoch = 180 // 32 + 1
    assert result.warmup_steps == round(3 * 10 / 100 * steps_per_epoch)  # 0.3 of 3 epochs, not 2
    (message,) = [r.getMessage() for r in caplog.records if "warmup_epochs" in r.getMessage()]
    assert "linear_probe: warmup_epochs 10 is not shorter than epochs 3; warming up for 0.3 epochs" in message
    assert linear_probe_accuracy(features[:180], labels[:180], features[180:], labels[180:], config) > 0.9


def test_a_warmup_inside_the_run_is_kept_silently(caplog):
    with caplog.at_level(logging.WARNING, logger="mae_domains.optim"):
        assert warmup_within_run(2, 3, 10, 100, "linear_probe") == 2
        assert warmup_within_run(5, 5, 5, 50, "finetune") == pytest.approx(0.5)
    assert len(caplog.records) == 1 and "finetune: warmup_epochs 5 is not shorter than epochs 5" in caplog.text
