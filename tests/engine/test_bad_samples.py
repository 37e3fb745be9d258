"""Bad files are replaced by another draw, listed in skipped.csv, and the batch stays full; too many
stop the run with a message naming skipped.csv, keeping the last good checkpoint loadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from mae_domains.data.sampler import SeededBatchSampler
from mae_domains.engine import TrainingStopped, pretrain
from mae_domains.engine.run_files import read_csv
from mae_image import ImageAdapter

from .conftest import load_checkpoint, make_config, write_pngs


def bad_archive(folder: Path) -> dict[str, str]:
    """21 good PNGs + a corrupt PNG, a truncated PNG and a float TIFF holding NaNs: 24 files, so every
    file is drawn in each epoch at batch 4. Returns ``{bad file: expected reason fragment}``."""
    good = write_pngs(folder, 21, seed=4)
    corrupt = folder / "bad_corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)))
    truncated = folder / "bad_truncated.png"
    data = good[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    nan_tiff = folder / "bad_nan.tif"
    image = np.random.default_rng(1).random((40, 40, 3), dtype=np.float32)
    image[5:9, 5:9, 1] = np.nan
    tifffile.imwrite(nan_tiff, image, photometric="rgb")
    return {str(corrupt): "cannot decode", str(truncated): "cannot decode", str(nan_tiff): "NaN"}


class BatchRecorder(ImageAdapter):
    """Records the size of every batch the model sees."""

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.batch_sizes: list[int] = []

    def model_inputs(self, batch, device):
        self.batch_sizes.append(int(batch["image"].shape[0]))
        return super().model_inputs(batch, device)


def test_bad_files_are_replaced_and_listed(tmp_path):
    bad = bad_archive(tmp_path / "archive")
    cfg = make_config(tmp_path / "archive", "engine.batch_size=4", "engine.max_steps=6", "data.num_workers=2",
                      "data.max_bad_fraction=0.2", "engine.checkpoint_every=3",
                      "data.stats_samples=64")  # statistics read every file, the NaN TIFF too
    adapter = BatchRecorder(cfg.data.options)
    result = pretrain(cfg, tmp_path / "run", adapter=adapter)
    assert result.steps == 6 and np.isfinite(result.final_loss)
    assert adapter.batch_sizes == [4] * 6  # every batch full: bad samples replaced, never dropped
    rows = read_csv(tmp_path / "run" / "skipped.csv")
    listed = {row["source"]: row["reason"] for row in rows}
    assert set(listed) == set(bad), listed  # one epoch draws every file once
    for source, fragment in bad.items():
        assert fragment in listed[source], listed[source]
    assert result.skipped == 3
    state = load_checkpoint(tmp_path / "run")
    assert sorted(state["bad_sources"]) == sorted(bad)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # the NaN TIFF did not poison the normalization statistics either
    assert np.isfinite(state["stats"]["mean"]).all() and np.isfinite(state["stats"]["std"]).all()


def first_bad_steps(archive: Path, bad: set[str], batch: int, seed: int, steps: int) -> list[int]:
    """1-based steps whose batch (first draws) holds a bad file."""
    refs = sorted(str(p) for p in archive.iterdir())
    sampler = SeededBatchSampler(len(refs), batch, seed)
    return [s + 1 for s in range(steps) if any(refs[i] in bad for i, _ in sampler.batch_for_step(s))]


def test_too_many_bad_files_stop_the_run(tmp_path):
    archive = tmp_path / "archive"
    bad = bad_archive(archive)
    # a seed whose first two steps are clean, so checkpoints exist before the run has to stop
    seed = next(s for s in range(100) if first_bad_steps(archive, set(bad), 4, s, 6)[0] >= 3)
    cfg = make_config(archive, "engine.batch_size=4", "engine.max_steps=6", "data.num_workers=2",
                      "data.max_bad_fraction=0.05", "engine.checkpoint_every=1", f"engine.seed={seed}")
    with pytest.raises(TrainingStopped) as info:
        pretrain(cfg, tmp_path / "run")
    message = str(info.value)
    assert "skipped.csv" in message and "max_bad_fraction" in message and "checkpoint" in message
    assert len(read_csv(tmp_path / "run" / "skipped.csv")) >= 2
    state = load_checkpoint(tmp_path / "run")  # the last good checkpoint stays loadable
    assert 2 <= state["step"] < 6
    assert f"step {state['step']}" in message
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_file_name_with_a_line_break_cannot_forge_a_log_line(tmp_path, caplog):
    """The name is data: its line break is escaped in every log record (statistics and skip warnings),
    and skipped.csv still holds it exactly."""
    import logging

    from mae_domains.cli import main

    folder = tmp_path / "archive"
    write_pngs(folder, 12, seed=5)
    forged = "bad\n12:00:00 INFO mae_domains.engine: step 9 of 9, loss 0.0001.png"
    (folder / forged).write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    with caplog.at_level(logging.INFO):
        assert main(["pretrain", "--adapter", "image", "--data", str(folder), "--out", str(tmp_path / "run"),
                     "model.preset=micro", "model.img_size=32", "model.patch_size=8", "engine.batch_size=4",
                     "engine.max_steps=3", "data.num_workers=0", "data.max_bad_fraction=0.5", "engine.device=cpu"]) == 0
    about_it = [r.getMessage() for r in caplog.records if "bad\\n12:00:00" in r.getMessage()]
    assert about_it, [r.getMessage() for r in caplog.records]
    assert not any("\n12:00:00" in r.getMessage() for r in caplog.records)
    assert [Path(r["source"]).name for r in read_csv(tmp_path / "run" / "skipped.csv")][:1] == [forged]
