"""What a run leaves in its directory, and how it reports progress."""

from __future__ import annotations

import logging
import os

import yaml

import mae_domains.engine.trainer as trainer_module
from mae_domains.engine import pretrain
from mae_domains.engine.run_files import METRIC_FIELDS, read_csv

from .conftest import make_config


def test_run_directory_contents_and_logging(png_archive, tmp_path, caplog, capsys):
    cfg = make_config(png_archive, "engine.batch_size=4", "engine.max_steps=6", "engine.log_every=2",
                      "engine.figure_every=3", "data.num_workers=1", "engine.tensorboard=true")
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="mae_domains.engine"):
        result = pretrain(cfg, run)
    assert result.steps == 6
    assert yaml.safe_load((run / "config.yaml").read_text())["engine"]["max_steps"] == 6
    assert (run / "stats.json").is_file() and (run / "checkpoint.pt").is_file()
    rows = read_csv(run / "metrics.csv")
    assert list(rows[0]) == METRIC_FIELDS
    assert [int(r["step"]) for r in rows] == [1, 2, 4, 6]  # first step, every log_every, last step
    assert all(float(r["samples_per_s"]) > 0 and float(r["data_time"]) >= 0 for r in rows)
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["step0000003.png", "step0000006.png"]
    # periodic log lines; no progress bar when stderr is not a terminal (pytest captures it)
    lines = [r.getMessage() for r in caplog.records if r.name == "mae_domains.engine"]
    assert sum(line.startswith("step ") for line in lines) == 4
    assert "pretrain:" not in capsys.readouterr().err


def test_thread_count_leaves_cores_to_workers(png_archive, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        check_thread_counts(png_archive, monkeypatch)
    finally:
        torch.set_num_threads(before)


def check_thread_counts(png_archive, monkeypatch):
    cores = len(os.sched_getaffinity(0))
    cfg = make_config(png_archive, "data.num_workers=1")
    assert trainer_module.configure_threads(cfg) == max(1, cores - 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # torchrun: one process per core
    assert trainer_module.configure_threads(cfg) == 1
    assert trainer_module.configure_threads(make_config(png_archive, "engine.threads=3")) == 3
