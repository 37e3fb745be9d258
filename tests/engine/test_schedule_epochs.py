"""Schedules given in epochs or steps: warmup in epochs against MAE's per-iteration formula
(facebookresearch/mae ``util/lr_sched.py``), the conflicts refused, and the resolved schedule logged in
the run's config.yaml."""

from __future__ import annotations

import math

import pytest
import yaml

from mae_domains.config import ConfigError, load_config
from mae_domains.engine import pretrain
from mae_domains.engine.run_files import read_csv
from mae_domains.optim import resolve_schedule, warmup_steps_for

from .conftest import make_config


def mae_lr(epoch: float, lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """``adjust_learning_rate`` of MAE's util/lr_sched.py, ``epoch`` fractional (iteration / len(loader) + epoch)."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


@pytest.mark.parametrize("loader_len, accum, epochs, warmup_epochs", [(20, 1, 10, 2), (24, 4, 8, 1.5), (30, 2, 5, 2)])
def test_warmup_in_epochs_is_maes_per_iteration_schedule(loader_len, accum, epochs, warmup_epochs):
    peak, floor = 2.4e-3, 1e-6
    schedule = resolve_schedule(peak, loader_len, accum, epochs=epochs, warmup_epochs=warmup_epochs, min_lr=floor)
    assert schedule.total_steps == epochs * loader_len // accum
    assert schedule.warmup_steps == warmup_epochs * loader_len / accum
    assert schedule.lr(0) == 0.0  # MAE trains its first step with lr 0
    # MAE sets the lr at every accum-th iteration: optimizer step k sits at epoch k * accum / len(loader)
    for k in range(schedule.total_steps):
        expected = mae_lr(k * accum / loader_len, peak, floor, warmup_epochs, epochs)
        assert schedule.lr(k) == pytest.approx(expected, rel=1e-12, abs=1e-15), k


def test_maes_vit_base_recipe_in_steps():
    """800 epochs, 40 warmup, batch 4096 (here 256 x 16 accumulation) on ImageNet-1k's 1,281,167 images."""
    micro_batches = 1_281_167 // 256  # drop_last, as MAE's loader
    schedule = resolve_schedule(1.5e-4 * 4096 / 256, micro_batches, 16, epochs=800, warmup_epochs=40)
    assert schedule.peak_lr == pytest.approx(2.4e-3)
    assert schedule.steps_per_epoch == pytest.approx(5004 / 16)
    assert schedule.warmup_steps == round(40 * 5004 / 16) == 12510
    assert schedule.total_steps == 800 * 5004 // 16 == 250200


def test_warmup_in_steps_and_max_steps_win_as_given():
    schedule = resolve_schedule(1e-3, 10, 1, epochs=4, max_steps=7, warmup_steps=3)
    assert (schedule.total_steps, schedule.warmup_steps) == (7, 3)
    assert resolve_schedule(1e-3, 10).warmup_steps == 0  # neither given: no warmup
    with pytest.raises(ValueError, match="not both"):
        warmup_steps_for(1.0, 5, 10.0)


@pytest.mark.parametrize("overrides, message", [
    (["optim.warmup_steps=10", "optim.warmup_epochs=1"],
     r"optim.warmup_steps \(10\) and optim.warmup_epochs \(1.0\) are both set"),
    (["engine.epochs=5", "optim.warmup_epochs=5"], r"optim.warmup_epochs \(5.0\) must be shorter than engine.epochs"),
    (["optim.warmup_epochs=-1"], "optim.warmup_epochs must not be negative"),
])
def test_conflicting_schedules_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_the_trainer_follows_and_records_the_resolved_schedule(png_archive, tmp_path):
    # 24 images at batch 4 x 2 accumulation: 6 micro-batches, 3 optimizer steps per epoch
    config = make_config(png_archive, "engine.batch_size=4", "optim.accum_steps=2", "engine.epochs=4",
                         "optim.warmup_epochs=1", "optim.base_lr=1e-3", "data.num_workers=0", "engine.log_every=1")
    result = pretrain(config, tmp_path / "run")
    assert result.steps == 12
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    lrs = [float(r["lr"]) for r in rows]
    peak = 1e-3 * 8 / 256
    expected = [mae_lr(k * 2 / 6, peak, 0.0, 1, 4) for k in range(12)]
    assert lrs == pytest.approx(expected, rel=1e-5, abs=1e-12)
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert text.startswith("# resolved schedule: peak lr 3.125e-05, warmup 3 steps (1 epochs), total 12 steps")
    saved = yaml.safe_load(text)
    assert saved["optim"]["warmup_epochs"] == 1 and saved["optim"]["warmup_steps"] is None
    assert load_config(tmp_path / "run" / "config.yaml") == config  # the comment line is no setting
