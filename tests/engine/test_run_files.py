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
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]  # a 6-step run: every step is a tenth of it
    assert all(float(r["samples_per_s"]) > 0 and float(r["data_time"]) >= 0 for r in rows)
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["step0000003.png", "step0000006.png"]
    # periodic log lines; no progress bar when stderr is not a terminal (pytest captures it)
    lines = [r.getMessage() for r in caplog.records if r.name == "mae_domains.engine"]
    assert sum(line.startswith("step ") for line in lines) == 6
    assert "pretrain:" not in capsys.readouterr().err


def test_thread_count_ignores_loader_workers(png_archive, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        check_thread_counts(png_archive, monkeypatch)
    finally:
        torch.set_num_threads(before)


def check_thread_counts(png_archive, monkeypatch):
    """Compute threads follow the cores and the processes per machine, never data.num_workers (a thread
    count that followed the workers would change the weights with them)."""
    cores = len(os.sched_getaffinity(0))
    for workers in (0, 1, 4):
        assert trainer_module.configure_threads(make_config(png_archive, f"data.num_workers={workers}")) == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # torchrun: one process per core
    assert trainer_module.configure_threads(make_config(png_archive, "data.num_workers=2")) == 1
    assert trainer_module.configure_threads(make_config(png_archive, "engine.threads=3")) == 3
