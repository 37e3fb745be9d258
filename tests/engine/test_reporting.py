"""A run says what it is doing: a start-up summary, progress rows often enough that a short run shows
them, and reconstruction figures through the run by default."""

from __future__ import annotations

import logging
import os

import pytest

from mae_domains.config import EngineConfig
from mae_domains.engine import pretrain
from mae_domains.engine.reporting import figure_interval, should_log
from mae_domains.engine.run_files import read_csv

from .conftest import make_config


def test_start_up_summary_progress_and_figures(png_archive, tmp_path, caplog):
    """12 steps with the default log_every (20): a row at least every tenth of the run; with
    figure_every unset a short run draws one figure, at its end."""
    cfg = make_config(png_archive, "engine.batch_size=4", "engine.max_steps=12", "data.num_workers=0")
    cfg.engine.log_every = EngineConfig().log_every
    cfg.engine.figure_every = None  # auto: a tenth of the run
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="mae_domains.engine"):
        pretrain(cfg, run)
    lines = [r.getMessage() for r in caplog.records if r.name == "mae_domains.engine"]
    threads = len(os.sched_getaffinity(0))
    for expected in (f"run folder {run.resolve()} (new run)", "data: 24 samples from 24 files (adapter image); 0 skipped",
                     f"compute: cpu, fp32 (requested), {threads} threads, 0 loader workers", "model: 133,728 parameters",
                     "steps: 0 -> 12 (6 per epoch, global batch 4)"):
        assert any(line.startswith(expected) for line in lines), (expected, lines[:8])
    assert len(read_csv(run / "metrics.csv")) >= 10
    assert sum(line.startswith("step ") for line in lines) >= 10
    figures = sorted(p.name for p in (run / "figures").iterdir())
    assert figures == ["step0000012.png"]


@pytest.mark.parametrize("total", [12, 50, 300, 5000])
def test_a_run_logs_at_least_ten_times(total):
    logged = [s for s in range(1, total + 1) if should_log(s, total, EngineConfig().log_every)]
    assert len(logged) >= 10 and logged[0] == 1 and logged[-1] == total
    assert max(b - a for a, b in zip(logged, logged[1:])) <= max(1, -(-total // 10))


def test_figure_interval():
    assert figure_interval(None, 3000) == 300 and figure_interval(None, 300) == 50 and figure_interval(None, 5) == 50
    assert figure_interval(0, 300) == 0 and figure_interval(7, 300) == 7


def test_figures_are_on_by_default():
    assert EngineConfig().figure_every is None or EngineConfig().figure_every > 0
