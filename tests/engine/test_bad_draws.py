"""Bad draws end a run in one line and are all listed in skipped.csv; the bad-sample limit counts
samples (chips), not files; a file name that is not UTF-8 and failing bookkeeping never stop a run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from mae_domains.config import load_config
from mae_domains.data.sample import BadSampleError
from mae_domains.engine import TrainingStopped, pretrain
from mae_domains.engine.run_files import CsvLog, read_csv
from mae_image import ImageAdapter
from tests.remote_sensing.conftest import MICRO as RS_MICRO
from tests.remote_sensing.rasters import write_raster

from .conftest import load_checkpoint, make_config, write_pngs

BANDS = ["B2", "B3", "B4", "B8"]


class UnreadableForTraining(ImageAdapter):
    """Statistics read the files; every training read fails (as for an archive that is all bad)."""

    def read_training(self, ref, seed):
        raise BadSampleError(str(ref), "cannot decode (test)")


@pytest.mark.parametrize("workers", [0, 2])
def test_no_good_draw_left_stops_in_one_line_and_lists_the_draws(png_archive, tmp_path, workers):
    cfg = make_config(png_archive, "engine.batch_size=4", "engine.max_steps=3", f"data.num_workers={workers}",
                      "data.max_bad_fraction=1.0")
    with pytest.raises(TrainingStopped) as info:
        pretrain(cfg, tmp_path / "run", adapter=UnreadableForTraining(cfg.data.options))
    message = str(info.value)
    assert "\n" not in message and message.startswith("17 draws in a row were bad samples (last: ")
    assert "cannot decode (test)" in message and str(png_archive) in message
    assert f"see {tmp_path / 'run' / 'skipped.csv'}" in message and "no checkpoint was written yet" in message
    rows = read_csv(tmp_path / "run" / "skipped.csv")
    assert len(rows) == 4 * 17 and {r["reason"] for r in rows} == {"cannot decode (test)"}


def scene(path: Path, nodata_left_half: bool) -> Path:
    rng = np.random.default_rng(len(path.name))
    data = rng.integers(200, 3000, (4, 64, 128)).astype(np.uint16)
    if nodata_left_half:
        data[:, :, :64] = 0
    return write_raster(path, data, nodata=0, descriptions=BANDS)


def test_bad_chips_count_as_samples_not_files(tmp_path):
    """Half the 8 chips of one of two scenes are all nodata: 4 of 16 samples (25%) are bad, from 1 of 2
    files. With data.max_bad_fraction=0.2 the run must stop; counting files (1 <= 3.2) it never would."""
    archive = tmp_path / "archive"
    scene(archive / "half_bad.tif", True)
    scene(archive / "good.tif", False)
    cfg = load_config(None, ["adapter=remote_sensing.multispectral", "model.img_size=32", *RS_MICRO,
                             "engine.batch_size=4", "engine.max_steps=8", "engine.device=cpu", "data.num_workers=0",
                             "data.max_bad_fraction=0.2", "data.stats_samples=16"],
                      base={"data": {"sources": [str(archive)],
                                     "options": {"groups": [BANDS], "file_bands": BANDS, "sampling": "grid"}}})
    with pytest.raises(TrainingStopped, match=r"4 of 16 samples are bad \(from 1 files\), more than "
                                              r"data.max_bad_fraction=0.2"):
        pretrain(cfg, tmp_path / "run")
    rows = read_csv(tmp_path / "run" / "skipped.csv")
    assert len(rows) >= 4 and all(r["source"].startswith(str(archive / "half_bad.tif")) for r in rows)


def test_a_bad_file_with_a_non_utf8_name_is_listed_losslessly(tmp_path):
    archive = tmp_path / "archive"
    write_pngs(archive, 15)
    raw = os.path.join(os.fsencode(archive), b"bad_\xff\xfe.png")
    with open(raw, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n not a png")
    cfg = make_config(archive, "engine.batch_size=4", "engine.max_steps=4", "data.num_workers=0",
                      "data.max_bad_fraction=0.2", "engine.checkpoint_every=2")
    assert pretrain(cfg, tmp_path / "run").steps == 4
    rows = read_csv(tmp_path / "run" / "skipped.csv")
    assert [r["source"] for r in rows] == [os.fsdecode(raw)]
    assert raw in (tmp_path / "run" / "skipped.csv").read_bytes()  # the file's own bytes
    assert load_checkpoint(tmp_path / "run")["bad_sources"] == [os.fsdecode(raw)]
    resumed = pretrain(make_config(archive, "engine.batch_size=4", "engine.max_steps=8", "data.num_workers=0",
                                   "data.max_bad_fraction=0.2", "engine.checkpoint_every=2"), tmp_path / "run",
                       resume=True)
    assert resumed.steps == 8 and resumed.skipped == 1


class FailingFigures(ImageAdapter):
    def render_reconstruction(self, model, batch, output, path):
        raise RuntimeError("no display (test)")


def test_bookkeeping_errors_are_logged_never_fatal(png_archive, tmp_path, monkeypatch, caplog):
    real_write = CsvLog.write

    def failing_write(self, row):
        if self.path.name == "metrics.csv" and int(row["step"]) >= 2:
            raise OSError(5, "Input/output error")
        return real_write(self, row)

    monkeypatch.setattr(CsvLog, "write", failing_write)
    cfg = make_config(png_archive, "engine.batch_size=4", "engine.max_steps=4", "data.num_workers=0",
                      "engine.figure_every=2")
    with caplog.at_level(logging.WARNING, logger="mae_domains.engine"):
        result = pretrain(cfg, tmp_path / "run", adapter=FailingFigures(cfg.data.options))
    assert result.steps == 4 and load_checkpoint(tmp_path / "run")["step"] == 4
    assert "could not write figure at step 2 (RuntimeError: no display (test)); the run goes on" in caplog.text
    assert "could not write metrics.csv at step 2" in caplog.text
    assert caplog.text.count("could not write figure") == 1  # once per kind, not every step
