"""Gradient accumulation: batch 4 x 2 micro-batches equals batch 8 in one step."""

from __future__ import annotations

from mae_domains.engine import pretrain
from mae_domains.engine.run_files import read_csv

from .conftest import assert_optimizer_equal, assert_tensors_equal, load_checkpoint, make_config

COMMON = ("engine.max_steps=4", "data.num_workers=0", "optim.warmup_steps=1", "optim.clip_grad=0.5",
          "engine.log_every=1", "engine.seed=4")


def test_accumulation_matches_the_large_batch(png_archive, tmp_path):
    big = make_config(png_archive, "engine.batch_size=8", "optim.accum_steps=1", *COMMON)
    acc = make_config(png_archive, "engine.batch_size=4", "optim.accum_steps=2", *COMMON)
    pretrain(big, tmp_path / "big")
    result = pretrain(acc, tmp_path / "acc")
    assert result.steps == 4  # optimizer steps, not micro-batches
    a, b = load_checkpoint(tmp_path / "big"), load_checkpoint(tmp_path / "acc")
    assert_tensors_equal(a["model"], b["model"], exact=False, atol=1e-5)
    assert_optimizer_equal(a["optimizer"], b["optimizer"], exact=False, atol=1e-5)
    rows_a, rows_b = read_csv(tmp_path / "big" / "metrics.csv"), read_csv(tmp_path / "acc" / "metrics.csv")
    assert [r["lr"] for r in rows_a] == [r["lr"] for r in rows_b]  # same effective batch -> same lr
    assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert abs(float(ra["loss"]) - float(rb["loss"])) < 1e-4
