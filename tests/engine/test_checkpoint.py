"""Checkpoints: atomic writes, and runs that stop on non-finite values keep the last good one."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mae_domains.engine import TrainingStopped, pretrain
from mae_domains.engine.checkpoint import capture_rng, restore_rng, save_atomic
from mae_domains.engine.disk import DiskFull
from mae_domains.runs import CHECKPOINT_NAME
from mae_domains.weights import safe_torch_load
from mae_image import ImageAdapter

from .conftest import load_checkpoint, make_config

RUN = ("engine.batch_size=4", "engine.max_steps=6", "data.num_workers=0")


def finite_weights(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def failing_save(real_save):
    """A torch.save that writes half of the real bytes, then fails (disk full, killed mid-write)."""

    def save(obj, fh, *args, **kwargs):
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer)
        fh.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    return save


def test_save_atomic_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_atomic({"step": 1, "w": torch.ones(3)}, path)
    monkeypatch.setattr(torch, "save", failing_save(torch.save))
    with pytest.raises(OSError):
        save_atomic({"step": 2, "w": torch.zeros(3)}, path)
    state = safe_torch_load(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no half-written temp file left


def test_failed_checkpoint_during_a_run_keeps_the_previous_one(png_archive, tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def second_save_fails(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            return failing_save(real_save)(obj, fh)
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(torch, "save", second_save_fails)
    cfg = make_config(png_archive, *RUN, "engine.checkpoint_every=2")
    with pytest.raises(DiskFull, match=r"disk full: .*the last good checkpoint \(step 2\) is intact"):
        pretrain(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["step"] == 2
    monkeypatch.setattr(torch, "save", real_save)
    assert pretrain(cfg, tmp_path / "run", resume=True).steps == 6  # and the run resumes from it


def test_rng_capture_restores_every_generator():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


class NanInputsFrom(ImageAdapter):
    """Feeds NaN images from the ``start``-th batch on: the loss becomes NaN."""

    start = 5

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.calls = 0

    def model_inputs(self, batch, device):
        self.calls += 1
        inputs = super().model_inputs(batch, device)
        if self.calls >= self.start:
            inputs["images"].images = inputs["images"].images * float("nan")
        return inputs


def test_non_finite_loss_stops_and_keeps_last_checkpoint(png_archive, tmp_path):
    cfg = make_config(png_archive, *RUN, "engine.checkpoint_every=2")
    with pytest.raises(TrainingStopped) as info:
        pretrain(cfg, tmp_path / "run", adapter=NanInputsFrom(cfg.data.options))
    message = str(info.value)
    assert "non-finite loss at step 5" in message
    assert f"(step 4) is kept in {tmp_path / 'run' / CHECKPOINT_NAME}" in message
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 4 and finite_weights(state)
    assert pretrain(cfg, tmp_path / "run", resume=True).steps == 6  # the kept checkpoint resumes


class InfGradientAt(ImageAdapter):
    """The loss stays finite, but one parameter's gradient becomes inf at the 3rd backward pass."""

    def build_model(self, model, mask):
        mae = super().build_model(model, mask)
        calls = []

        def hook(grad):
            calls.append(1)
            return grad * float("inf") if len(calls) == 3 else grad

        mae.head.pred.weight.register_hook(hook)
        return mae


def test_non_finite_gradient_stops_before_the_weights_change(png_archive, tmp_path):
    """Without the gradient check AdamW would write NaN weights into the step-3 checkpoint."""
    cfg = make_config(png_archive, *RUN, "engine.checkpoint_every=1")
    with pytest.raises(TrainingStopped, match="non-finite gradients .*at step 3"):
        pretrain(cfg, tmp_path / "run", adapter=InfGradientAt(cfg.data.options))
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 2 and finite_weights(state)


def test_stop_before_any_checkpoint_says_so(png_archive, tmp_path):
    cfg = make_config(png_archive, *RUN, "engine.checkpoint_every=100")
    adapter = NanInputsFrom(cfg.data.options)
    adapter.start = 1
    with pytest.raises(TrainingStopped, match="no checkpoint was written yet"):
        pretrain(cfg, tmp_path / "run", adapter=adapter)
