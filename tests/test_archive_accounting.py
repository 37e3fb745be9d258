"""Every file is accounted for: files discovery leaves out (a structured report, a slice without its
position) are listed in the run's ``skipped.csv`` and in ``embed``'s ``skipped_sources``; the start-up
summary counts files, scenes and samples as they are; cine frames keep one id each without repeating
the file name."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from mae_domains.cli import main
from mae_domains.engine import pretrain
from mae_domains.engine.reporting import StartupSummary
from mae_domains.engine.run_files import read_csv
from tests.engine.conftest import make_config
from tests.medical import dicom_files as F
from tests.test_embed import write_run


def cine_archive(root):
    """3 ultrasound cines of 4 frames each and one structured report (no pixel data)."""
    for k in range(3):
        F.rle_cine(root / "us" / f"echo{k}.dcm", frames=4)
    F.structured_report(root / "reports" / "sr.dcm")
    return root


def test_training_lists_left_out_files_in_skipped_csv_and_counts_files_not_frames(tmp_path, caplog):
    archive = cine_archive(tmp_path / "archive")
    cfg = make_config(archive, "adapter=medical.ultrasound", "engine.batch_size=4", "engine.max_steps=1",
                      "data.num_workers=0", "engine.figure_every=0")
    run = tmp_path / "run"
    run.mkdir()  # an empty folder given --overwrite replaces nothing
    with caplog.at_level(logging.INFO, logger="mae_domains.engine"):
        pretrain(cfg, run, overwrite=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "mae_domains.engine"]
    assert f"run folder {run.resolve()} (new run)" in lines
    data = next(line for line in lines if line.startswith("data: "))
    assert data.startswith("data: 12 samples from 3 files (adapter medical.ultrasound); 0 skipped so far; "
                           "1 file left out"), data
    rows = read_csv(run / "skipped.csv")
    assert [(r["step"], r["source"], r["reason"]) for r in rows] == [
        ("0", str(archive / "reports" / "sr.dcm"), "no pixel data (Basic Text SR Storage, modality SR)")]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mae_domains.engine"):
        pretrain(cfg, run, overwrite=True)  # now there is a run to replace
    assert any(r.getMessage().endswith("(new run, replacing the previous one)") for r in caplog.records)


def test_embed_lists_left_out_files_and_gives_cine_frames_plain_ids(tmp_path, capsys):
    archive = cine_archive(tmp_path / "archive")
    run = write_run(tmp_path / "run", "medical.ultrasound")
    out = tmp_path / "emb.npz"
    assert main(["-q", "embed", "--run", str(run), "--data", str(archive), "--out", str(out), "--device", "cpu"]) == 0
    emb = np.load(out, allow_pickle=False)
    assert list(emb["sample_ids"]) == [f"us/echo{k}.dcm#frame={f}" for k in range(3) for f in range(4)]
    assert list(emb["skipped_sources"]) == [str(archive / "reports" / "sr.dcm")]
    assert "no pixel data" in emb["skipped_reasons"][0]
    rows = list(csv.DictReader((tmp_path / "emb.skipped.csv").open()))
    assert [r["source"] for r in rows] == [str(archive / "reports" / "sr.dcm")]
    assert "0 of 12 samples skipped; 1 file(s) left out" in capsys.readouterr().out


def test_summary_counts_a_band_folder_as_one_scene_of_twelve_files(tmp_path):
    from mae_domains.registry import get_adapter
    from tests.remote_sensing.test_readers import write_band_files

    folder = write_band_files(tmp_path / "safe")
    adapter = get_adapter("remote_sensing.multispectral")
    refs = adapter.discover([folder])
    files = {f for ref in refs for f in adapter.sample_files(ref)}
    scenes = {adapter.sample_scene(ref) for ref in refs}
    assert len(files) == 12 and all(Path(f).parent == folder for f in files) and len(scenes) == 1
    summary = StartupSummary(tmp_path, "new run", adapter.name, len(files), len(refs), 0, "cpu", "fp32", 2, 0,
                             1, 1, 0, 1, 1, 4, 100, None, 0, scenes=len(scenes))
    assert len(refs) == 1  # a 96 px scene: one chip
    assert summary.data_line() == ("data: 1 sample from 1 scene (12 files) (adapter remote_sensing.multispectral); "
                                   "0 skipped so far")


def test_summary_counts_per_channel_microscopy_files_not_crops(tmp_path):
    from tests.microscopy.conftest import make_adapter
    from tests.microscopy.files import write_channel_plate

    write_channel_plate(tmp_path / "plate", wells=[(1, 1), (1, 2)], fields=1, channels=3, size=64)
    adapter = make_adapter(img_size=32)
    refs = adapter.discover([tmp_path / "plate"])
    files = {f for ref in refs for f in adapter.sample_files(ref)}
    assert len(refs) > 2 and len(files) == 6  # 2 wells x 3 channel files, several crops each
    assert files == {str(p) for p in (tmp_path / "plate").iterdir()}
