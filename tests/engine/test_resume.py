"""Exact resume: stop mid-epoch, resume, and get bitwise the weights of an uninterrupted run.

Random crops and flips (per-sample seeds), random masks (per-sample seeds), drop path (torch's global
RNG) and 2 loader workers are all on, so every source of randomness has to be restored.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mae_domains.data.loaders as loaders_module
import mae_domains.engine.trainer as trainer_module
from mae_domains.engine import pretrain
from mae_domains.engine.run_files import read_csv

from .conftest import (StopAfter, assert_optimizer_equal, assert_tensors_equal, crash_at, load_checkpoint,
                       make_config, write_pngs)

STEPS = 8  # 6 steps per epoch: the run crosses an epoch boundary after the resume point
SETTINGS = ("engine.batch_size=4", f"engine.max_steps={STEPS}", "engine.checkpoint_every=3", "engine.log_every=1",
            "data.num_workers=2", "model.drop_path_rate=0.2", "optim.warmup_steps=2", "engine.seed=3")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume") / "archive"
    write_pngs(folder, 24, seed=1)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(archive: Path, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "full"
    result = pretrain(make_config(archive, *SETTINGS), run_dir)
    assert result.steps == STEPS
    return run_dir


def interrupted_then_resumed(archive: Path, run_dir: Path) -> dict:
    """Crash after step 4 (the checkpoint is from step 3, mid-epoch), then resume to the end."""
    cfg = make_config(archive, *SETTINGS)
    with pytest.raises(StopAfter):
        pretrain(cfg, run_dir, on_step=crash_at(4))
    assert load_checkpoint(run_dir)["step"] == 3
    result = pretrain(cfg, run_dir, resume=True)
    assert result.steps == STEPS
    return load_checkpoint(run_dir)


def test_resume_is_bitwise_identical(archive, uninterrupted, tmp_path):
    full = load_checkpoint(uninterrupted)
    resumed = interrupted_then_resumed(archive, tmp_path / "resumed")
    assert resumed["step"] == full["step"] == STEPS
    assert_tensors_equal(full["model"], resumed["model"], exact=True)
    assert_optimizer_equal(full["optimizer"], resumed["optimizer"], exact=True)
    # metrics.csv: the rows replayed after the checkpoint are replaced, not duplicated, and match
    full_rows = [(r["step"], r["loss"], r["lr"]) for r in read_csv(uninterrupted / "metrics.csv")]
    resumed_rows = [(r["step"], r["loss"], r["lr"]) for r in read_csv(tmp_path / "resumed" / "metrics.csv")]
    assert [int(s) for s, _, _ in full_rows] == list(range(1, STEPS + 1))
    assert resumed_rows == full_rows


def test_negative_control_without_rng_restore(archive, uninterrupted, tmp_path, monkeypatch):
    """Resuming without the checkpoint's RNG state changes the drop-path draws, hence the weights."""
    monkeypatch.setattr(trainer_module, "restore_rng", lambda state: None)
    resumed = interrupted_then_resumed(archive, tmp_path / "no-rng")
    full = load_checkpoint(uninterrupted)
    assert any(not torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])


def test_negative_control_without_sampler_position(archive, uninterrupted, tmp_path, monkeypatch):
    """Resuming with the sampler back at step 0 replays the first batches: different weights."""
    original = loaders_module.SeededBatchSampler

    def from_the_start(*args, **kwargs):
        kwargs["start_step"] = 0
        return original(*args, **kwargs)

    monkeypatch.setattr(loaders_module, "SeededBatchSampler", from_the_start)
    resumed = interrupted_then_resumed(archive, tmp_path / "no-sampler")
    full = load_checkpoint(uninterrupted)
    assert any(not torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])


def test_worker_count_does_not_change_the_run(archive, uninterrupted, tmp_path):
    """0 loader workers (everything in the main process) give bitwise the weights of 2 workers, with the
    default thread count: it follows the cores, not the workers (a thread count that followed the
    workers would change the float summation order, hence the weights)."""
    for workers in (0, 2):
        pretrain(make_config(archive, *SETTINGS, f"data.num_workers={workers}"), tmp_path / f"w{workers}")
    assert_tensors_equal(load_checkpoint(tmp_path / "w0")["model"], load_checkpoint(tmp_path / "w2")["model"])
    assert_tensors_equal(load_checkpoint(uninterrupted)["model"], load_checkpoint(tmp_path / "w0")["model"])


def test_resume_with_accumulation_is_bitwise_identical(archive, tmp_path):
    """With 2 micro-batches per step the sampler resumes at micro-step 2 x step."""
    settings = [s for s in SETTINGS if not s.startswith(("engine.batch_size", "engine.max_steps"))]
    cfg = make_config(archive, *settings, "engine.batch_size=2", "optim.accum_steps=2", "engine.max_steps=8")
    pretrain(cfg, tmp_path / "full")
    with pytest.raises(StopAfter):
        pretrain(cfg, tmp_path / "resumed", on_step=crash_at(4))
    pretrain(cfg, tmp_path / "resumed", resume=True)
    full, resumed = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "resumed")
    assert full["step"] == resumed["step"] == 8
    assert_tensors_equal(full["model"], resumed["model"], exact=True)
    assert_optimizer_equal(full["optimizer"], resumed["optimizer"], exact=True)
