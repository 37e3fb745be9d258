"""The long steps of other commands log their progress with elapsed time, rate and time left too:
fine-tuning per epoch, normalization statistics at each tenth."""

from __future__ import annotations

import logging
import re

from mae_domains.evaluation.finetune import FinetuneConfig, finetune
from mae_domains.registry import get_adapter
from tests.evaluation.helpers import dict_loader, micro_encoder, pattern_images

CLOCK = r"elapsed \d+s, [0-9.e+]+ {unit}/s, (\d+s|\d+m\d\ds) left\)"


def test_finetune_logs_each_epoch_with_time_left(caplog):
    images, labels = pattern_images(8, seed=0)
    config = FinetuneConfig(epochs=2, base_lr=1e-3, warmup_epochs=0, device="cpu", seed=3)
    with caplog.at_level(logging.INFO, logger="mae_domains.evaluation.finetune"):
        finetune(micro_encoder(), dict_loader(images, labels, 8), None, 2, config)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("finetune: epoch")]
    assert [line.split(",")[0] for line in lines] == ["finetune: epoch 1/2", "finetune: epoch 2/2"]
    assert all(re.search(CLOCK.format(unit="epochs"), line) for line in lines), lines


def test_statistics_log_time_left(tmp_path, caplog):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    adapter = get_adapter("image")
    with caplog.at_level(logging.INFO, logger="mae_domains.adapter_api"):
        adapter.compute_stats(adapter.discover([tmp_path]), max_samples=60)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("normalization statistics: ")]
    assert len(lines) >= 5 and all(re.search(CLOCK.format(unit="samples"), line) for line in lines), lines
