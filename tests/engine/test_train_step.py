"""The train step and the after-step bookkeeping of the trainer, each on its own."""

from __future__ import annotations

import torch

from mae_domains.engine.health import TrainingHealth
from mae_domains.engine.trainer import Trainer
from mae_domains.runs.layout import CHECKPOINT_NAME, METRICS_NAME

from .conftest import make_config


def prepared(png_archive, run, *overrides):
    trainer = Trainer(make_config(png_archive, "engine.batch_size=4", "data.num_workers=0", *overrides), run)
    trainer.prepare()
    trainer.ddp_model.train()
    trainer.health = TrainingHealth(trainer.device)
    trainer.loss_sum = torch.zeros(())
    return trainer


def test_train_step_updates_weights_and_writes_nothing(png_archive, tmp_path):
    trainer = prepared(png_archive, tmp_path / "run", "engine.max_steps=3", "optim.accum_steps=2")
    try:
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        batches = iter(trainer.loader)
        assert trainer.train_step(next(batches), sync=False) is None  # accumulating: no step yet
        assert trainer.step == 0 and all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
        step = trainer.train_step(next(batches), sync=True)
        assert trainer.step == 1 and step.loss > 0 and torch.isfinite(step.grad_norm) and not step.stop_requested
        assert not all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
        assert trainer.loss_sum.item() == 0.0
        assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()
        assert (tmp_path / "run" / METRICS_NAME).read_text().count("\n") == 1  # the header only
    finally:
        trainer.close()


def test_after_step_reports_checkpoints_and_ends_the_run(png_archive, tmp_path):
    rows = []
    trainer = prepared(png_archive, tmp_path / "run", "engine.max_steps=2", "engine.checkpoint_every=100")
    trainer.on_step = lambda step, row: rows.append(row)
    try:
        batches = iter(trainer.loader)
        batch = next(batches)
        first = trainer.train_step(batch, sync=True)
        assert trainer.after_step(batch, first) is False
        assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()  # not due before the last step
        batch = next(batches)
        last = trainer.train_step(batch, sync=True)
        assert trainer.after_step(batch, last) is True  # the last step
        assert (tmp_path / "run" / CHECKPOINT_NAME).is_file()
        assert [r["step"] for r in rows] == [1, 2] and rows[1]["loss"] == f"{last.loss:.6f}"
        assert "recon_psnr" in rows[1]  # health statistics on a logged row
        assert (tmp_path / "run" / "figures" / "step0000002.png").is_file()  # the last step's figure
    finally:
        trainer.close()
