"""A run's progress reads the same on a terminal and in a log file: every log line carries elapsed time,
rate and time left; on a terminal the log lines print above the progress bar, never inside it."""

from __future__ import annotations

import io
import logging
import re

import mae_domains.engine.trainer as trainer_module
from mae_domains.engine import pretrain
from mae_domains.progress import ProgressClock, format_duration

from .conftest import make_config

CLOCK = re.compile(r"\(elapsed \d+s, [0-9.e+]+ steps/s, (\d+s left|time left unknown)\)$")


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 45, 725, 10920)] == ["0s", "45s", "12m05s", "3h02m"]


def test_clock_rate_and_time_left(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("mae_domains.progress.time.monotonic", lambda: now[0])
    clock = ProgressClock(total=100, done=20)  # resumed at 20
    assert clock.describe(20) == "elapsed 0s, 0 steps/s, time left unknown"
    now[0] = 110.0
    assert clock.describe(40) == "elapsed 10s, 2 steps/s, 30s left"


def test_log_lines_carry_elapsed_rate_and_time_left(png_archive, tmp_path, caplog):
    cfg = make_config(png_archive, "engine.batch_size=4", "engine.max_steps=4", "engine.log_every=1",
                      "data.num_workers=0", "engine.figure_every=0")
    with caplog.at_level(logging.INFO, logger="mae_domains.engine"):
        pretrain(cfg, tmp_path / "run")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 4 and all(CLOCK.search(line) for line in lines), lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_print_above_the_terminal_progress_bar(png_archive, tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(trainer_module.sys, "stderr", terminal)
    monkeypatch.setattr("sys.stderr", terminal)
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        cfg = make_config(png_archive, "engine.batch_size=4", "engine.max_steps=4", "engine.log_every=1",
                          "data.num_workers=0", "engine.figure_every=0")
        pretrain(cfg, tmp_path / "run")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    text = terminal.getvalue()
    assert "pretrain:" in text  # the bar was drawn
    logged = [line for line in text.split("\n") if "LOG step " in line]
    assert len(logged) == 4
    for line in logged:  # what is left on screen of that line, after the last carriage return
        assert line.split("\r")[-1].startswith("LOG step "), repr(line)
